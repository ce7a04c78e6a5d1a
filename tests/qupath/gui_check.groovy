/**
 * Test helper: QuPath's startup script (-Dqupath.startup.script) for the GUI test, run inside the real QuPath window
 * (under Xvfb). It reads the menu Extensions > CellBridge, opens a slide, adds one annotation and selects it,
 * fires the menu item "Detect and segment nuclei" (the action a click runs), accepts its parameter dialog as it
 * opens, waits for the background task to put the nuclei under the annotation, fires "Check Python server..." and
 * reads its message, lists CellBridge's items in QuPath's preference pane, saves a screenshot of the window,
 * writes what it found as JSON, and exits QuPath.
 * System properties: cellbridge.gui.image, cellbridge.gui.region (x,y,w,h), cellbridge.gui.report (JSON),
 * cellbridge.gui.screenshot (PNG), cellbridge.gui.python (the Python preference).
 */
import javafx.application.Platform
import javafx.embed.swing.SwingFXUtils
import javafx.scene.control.ButtonType
import javafx.scene.control.DialogPane
import javafx.stage.Stage
import javafx.stage.Window
import qupath.ext.cellbridge.CellBridgePreferences
import qupath.fx.utils.FXUtils
import qupath.lib.gui.QuPathGUI
import qupath.lib.gui.prefs.PathPrefs
import qupath.lib.images.ImageData
import qupath.lib.io.GsonTools
import qupath.lib.objects.PathObjects
import qupath.lib.regions.ImagePlane
import qupath.lib.roi.ROIs

import javax.imageio.ImageIO

def qupath = QuPathGUI.getInstance()
def report = [steps: []]
def reportFile = new File(System.getProperty("cellbridge.gui.report"))
def title = "Detect and segment nuclei"

def waitFor = { String what, double seconds, Closure<Boolean> condition ->
    long end = System.nanoTime() + (long) (seconds * 1e9)
    while (System.nanoTime() < end) {
        if (condition())
            return
        Thread.sleep(200)
    }
    throw new IllegalStateException("timed out after ${seconds} s waiting for ${what}")
}
def onFx = { Closure work -> FXUtils.callOnApplicationThread(work) }

// a step that never returns (a modal dialog nobody closes) still ends QuPath, with the steps done so far
Thread.startDaemon("cellbridge-gui-watchdog") {
    Thread.sleep((long) (Double.parseDouble(System.getProperty("cellbridge.gui.timeout", "500")) * 1000))
    report.error = "timed out; windows open: " + Window.getWindows().findAll { it.isShowing() }.collect {
        it instanceof Stage ? it.getTitle() : it.getClass().getSimpleName() }
    reportFile.text = GsonTools.getInstance(true).toJson(report)
    System.exit(2)
}

Thread.start("cellbridge-gui-check") {
    try {
        onFx {
            CellBridgePreferences.pythonProperty().set(System.getProperty("cellbridge.gui.python", ""))
            // no "Set image type" prompt (a modal dialog) when the image opens: the check sets the type itself
            PathPrefs.imageTypeSettingProperty().set(PathPrefs.ImageTypeSetting.NONE)
        }
        def menu = onFx { qupath.getMenu("Extensions>CellBridge", false) }
        if (menu == null)
            throw new IllegalStateException("no menu Extensions > CellBridge")
        report.menu = onFx { menu.getItems().collect { it.getText() }.findAll { it != null } }
        report.preferences = onFx {
            qupath.getPreferencePane().getPropertySheet().getItems().findAll { it.getCategory() == "CellBridge" }
                    .collect { it.getName() }
        }
        report.steps << "menu"

        def box = System.getProperty("cellbridge.gui.region").split(",").collect { it as double }
        def annotation = PathObjects.createAnnotationObject(
                ROIs.createRectangleROI(box[0], box[1], box[2], box[3], ImagePlane.getDefaultPlane()))
        annotation.setName("Region")
        onFx {
            if (!qupath.openImage(qupath.getViewer(), System.getProperty("cellbridge.gui.image"), false, false))
                throw new IllegalStateException("QuPath did not open the image")
            def imageData = qupath.getImageData()
            imageData.setImageType(ImageData.ImageType.BRIGHTFIELD_H_E)
            imageData.getHierarchy().addObject(annotation)
            imageData.getHierarchy().getSelectionModel().setSelectedObject(annotation)
        }
        report.steps << "image"

        def item = onFx { menu.getItems().find { it.getText() == title + "..." } }
        Platform.runLater { item.fire() }
        report.steps << "menu item fired"
        // the parameter dialog opens once the server listed its models (it starts first: Python imports PyTorch)
        Stage dialog = null
        waitFor("the dialog '${title}'", 300) {
            dialog = onFx { Window.getWindows().find { it instanceof Stage && it.isShowing() && it.getTitle() == title } }
            dialog != null
        }
        report.dialog = onFx {
            def pane = dialog.getScene().getRoot().lookup(".dialog-pane") as DialogPane
            pane.lookupButton(ButtonType.OK).fire()
            pane.getContent().lookupAll(".label").collect { it.getText() }.findAll { it }
        }
        report.steps << "dialog accepted"

        // the task is done when its objects are in the hierarchy and its step is in the image's workflow
        waitFor("the detection task to finish", 600) {
            onFx { qupath.getImageData().getHistoryWorkflow().getSteps().any { it.getName() == "CellBridge detect objects" } }
        }
        Thread.sleep(1000)  // the notification and a repaint
        def detections = onFx { new ArrayList(annotation.getChildObjects()) }
        report.detections = detections.size()
        report.unparented = onFx { qupath.getImageData().getHierarchy().getRootObject().getChildObjects().count { it.isDetection() } }
        report.classes = detections.countBy { it.getPathClass() == null ? "" : it.getPathClass().toString() }
        report.centroids = detections.collect { [it.getROI().getCentroidX(), it.getROI().getCentroidY()] }
        report.measurements = detections.isEmpty() ? [] : detections[0].getMeasurementList().getNames()
        report.workflow = onFx { qupath.getImageData().getHistoryWorkflow().getSteps().collect { it.getName() } }
        report.steps << "detections"

        // "Check Python server..." reports in a message dialog (the progress dialogs are titled CellBridge too)
        def check = onFx { menu.getItems().find { it.getText() == "Check Python server..." } }
        Platform.runLater { check.fire() }
        def labels = { Window window -> window.getScene().getRoot().lookupAll(".label").collect { it.getText() }.findAll { it } }
        Window message = null
        waitFor("the server check's message", 120) {
            message = onFx { Window.getWindows().find { it instanceof Stage && it.isShowing() && it.getTitle() == "CellBridge"
                    && labels(it).any { it.contains("\nModels: ") } } }
            message != null
        }
        report.serverCheck = onFx {
            def text = labels(message)
            def pane = message.getScene().getRoot().lookup(".dialog-pane") as DialogPane
            pane.getButtonTypes().collect { pane.lookupButton(it) }.find { it != null }?.fire()
            text
        }
        report.steps << "server check"

        onFx {
            qupath.getViewer().setSelectedObject(annotation)
            qupath.getViewer().zoomToFit()
        }
        Thread.sleep(1500)
        onFx {
            def image = qupath.getStage().getScene().snapshot(null)
            def file = new File(System.getProperty("cellbridge.gui.screenshot"))
            file.getParentFile().mkdirs()
            ImageIO.write(SwingFXUtils.fromFXImage(image, null), "png", file)
        }
        report.steps << "screenshot"
    } catch (Throwable e) {
        report.error = e.toString()
        report.windows = onFx { Window.getWindows().findAll { it.isShowing() }.collect { it instanceof Stage ? it.getTitle() : it.toString() } }
    } finally {
        reportFile.text = GsonTools.getInstance(true).toJson(report)
        System.exit(0)  // (the shutdown hook stops the Python server)
    }
}
