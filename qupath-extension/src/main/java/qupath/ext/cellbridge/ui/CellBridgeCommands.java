package qupath.ext.cellbridge.ui;

import javafx.application.Platform;
import javafx.beans.property.BooleanProperty;
import javafx.beans.property.SimpleBooleanProperty;
import javafx.scene.control.Menu;
import javafx.scene.control.MenuItem;
import javafx.scene.control.SeparatorMenuItem;
import qupath.ext.cellbridge.CellBridge;
import qupath.ext.cellbridge.CellBridgePreferences;
import qupath.ext.cellbridge.CellBridgeServer;
import qupath.ext.cellbridge.ObjectFiles;
import qupath.ext.cellbridge.TrainingData;
import qupath.ext.cellbridge.bridge.DetectedObject;
import qupath.ext.cellbridge.bridge.ModelInfo;
import qupath.ext.cellbridge.bridge.RunSettings;
import qupath.fx.dialogs.Dialogs;
import qupath.fx.dialogs.FileChoosers;
import qupath.fx.utils.FXUtils;
import qupath.lib.color.ColorDeconvolutionStains;
import qupath.lib.gui.QuPathGUI;
import qupath.lib.gui.tools.GuiTools;
import qupath.lib.images.ImageData;
import qupath.lib.objects.PathObject;
import qupath.lib.plugins.parameters.ParameterList;
import qupath.lib.projects.Project;

import java.awt.image.BufferedImage;
import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * The Extensions &gt; CellBridge menu: each command gathers its input on the FX thread (dialogs, the current image
 * and selection), does its work in a {@link BackgroundTask}, and changes the image back on the FX thread.
 */
public final class CellBridgeCommands {

    private static final String TITLE = "CellBridge";

    private final QuPathGUI qupath;
    private final BooleanProperty running = new SimpleBooleanProperty(false);

    private CellBridgeCommands(QuPathGUI qupath) {
        this.qupath = qupath;
    }

    /**
     * Fill the menu.
     * @param qupath QuPath
     * @param menu the Extensions &gt; CellBridge menu
     */
    public static void install(QuPathGUI qupath, Menu menu) {
        CellBridgeCommands commands = new CellBridgeCommands(qupath);
        MenuItem status = new MenuItem("Server: " + CellBridgeServer.status());
        status.setDisable(true);
        MenuItem start = item("Start Python server", commands::startServer);
        MenuItem stop = item("Stop Python server", commands::stopServer);
        start.disableProperty().bind(commands.running);
        stop.disableProperty().bind(commands.running.not());
        CellBridgeServer.addStatusListener(() -> Platform.runLater(() -> {
            status.setText("Server: " + CellBridgeServer.status());
            commands.running.set(CellBridgeServer.isRunning());
        }));
        menu.getItems().addAll(status, start, stop, new SeparatorMenuItem(),
                item("Detect cells...", () -> commands.detect(false)),
                item("Detect and segment nuclei...", () -> commands.detect(true)),
                item("Detect and score IHC nuclei (DAB)...", commands::detectIhc),
                item("Classify detections...", commands::classify),
                new SeparatorMenuItem(),
                item("Export training tiles (COCO) from annotations...", commands::exportCoco),
                item("Train a model from the project's annotations...", commands::train),
                new SeparatorMenuItem(),
                item("Import QuPath GeoJSON...", commands::importGeoJson),
                item("Export QuPath GeoJSON...", commands::exportGeoJson),
                new SeparatorMenuItem(),
                item("Preferences...", commands::preferences));
    }

    private static final String STAINS_IMAGE = "The image's stain vectors";
    private static final String STAINS_ESTIMATE = "Estimate per image";
    private static final String STAINS_DEFAULT = "QuPath's default H-DAB";
    private static final String CLASSES_THREE = "Negative / 1+ / 2+ / 3+";
    private static final String CLASSES_ONE = "Negative / Positive";

    private static MenuItem item(String text, Runnable action) {
        MenuItem item = new MenuItem(text);
        item.setOnAction(e -> action.run());
        return item;
    }

    // ------------------------------------------------------------------------------------------------- server

    private void startServer() {
        BackgroundTask.start(qupath, "Starting the CellBridge server", task -> {
            task.progress(-1, "Starting " + CellBridgeServer.python().executable());
            CellBridgeServer.start();
            return CellBridgeServer.status();
        }, status -> Dialogs.showInfoNotification(TITLE, "Server " + status));
    }

    private void stopServer() {
        BackgroundTask.start(qupath, "Stopping the CellBridge server", task -> {
            CellBridgeServer.stop();
            return null;
        }, none -> Dialogs.showInfoNotification(TITLE, "Server stopped"));
    }

    // ---------------------------------------------------------------------------------------------- detection

    private void detect(boolean nuclei) {
        detect(nuclei ? "Detect and segment nuclei" : "Detect cells", nuclei, null);
    }

    /** Nuclei with DAB positivity (Negative/1+/2+/3+): QuPath then shows Positive % and H-score per annotation. */
    private void detectIhc() {
        ImageData<BufferedImage> imageData = qupath.getImageData();
        ColorDeconvolutionStains stains = imageData == null ? null : imageData.getColorDeconvolutionStains();
        String imageStains = stains != null && stains.isH_DAB()
                ? ColorDeconvolutionStains.getColorDeconvolutionStainsAsString(stains, 5) : null;
        detect("Detect and score IHC nuclei", true, new IhcChoice(imageStains));
    }

    /** @param imageStains the image's H-DAB stain vectors as QuPath writes them, or null when it has none */
    private record IhcChoice(String imageStains) {
    }

    private void detect(String title, boolean nuclei, IhcChoice ihc) {
        ImageData<BufferedImage> imageData = qupath.getImageData();
        if (imageData == null) {
            GuiTools.showNoImageError(title);
            return;
        }
        List<PathObject> parents = CellBridge.defaultParents(imageData);
        BackgroundTask.<List<ModelInfo>>start(qupath, "Listing CellBridge models", task -> {
            task.progress(-1, "Connecting to the CellBridge server");
            return CellBridgeServer.listModels();
        }, models -> {
            List<ModelInfo> usable = nuclei ? models.stream().filter(m -> "nuclei".equals(m.task())).toList() : models;
            if (usable.isEmpty()) {
                Dialogs.showErrorNotification(title, "The server has no " + (nuclei ? "nuclei " : "") + "models; "
                        + "set a model folder in Extensions > CellBridge > Preferences");
                return;
            }
            RunSettings settings = askSettings(title, usable, nuclei, ihc);
            if (settings == null)
                return;
            CellBridge cellbridge = CellBridge.of(settings);
            String where = parents.get(0).isRootObject() ? "the whole image"
                    : parents.size() + " annotation" + (parents.size() == 1 ? "" : "s");
            BackgroundTask.<CellBridge.Detections>start(qupath, title + " (" + settings.model() + ", " + where + ")",
                    task -> cellbridge.compute(imageData, parents, task::progress, task::isCancelled),
                    detections -> {
                        CellBridge.Result result = cellbridge.apply(imageData, detections);
                        Dialogs.showInfoNotification(title, String.format(Locale.ROOT, "%d objects in %.1f s: %s",
                                result.objects(), result.seconds(), summary(result.classCounts())));
                    });
        });
    }

    private static RunSettings askSettings(String title, List<ModelInfo> models, boolean nuclei, IhcChoice ihc) {
        List<String> names = models.stream().map(ModelInfo::name).toList();
        String last = CellBridgePreferences.lastModelProperty().get();
        String chosen = names.contains(last) ? last : names.get(0);
        String help = models.stream().map(m -> m.name() + ": " + m.task() + ", " + m.architecture()
                        + (m.mpp() == null ? "" : ", " + m.mpp() + " µm/px") + ", classes " + String.join(", ", m.classes()))
                .collect(Collectors.joining("\n"));
        ParameterList params = new ParameterList()
                .addChoiceParameter("model", "Model", chosen, names, help)
                .addChoiceParameter("device", "Device", deviceChoice(), PreferencesDialog.devices(),
                        "auto: CUDA, else MPS, else CPU")
                .addIntParameter("tileSize", "Tile size", CellBridgePreferences.tileSizeProperty().get(), "px",
                        "Tile size in model pixels (0: the model's)")
                .addIntParameter("overlap", "Tile overlap", CellBridgePreferences.overlapProperty().get(), "px",
                        "Overlap between tiles in model pixels (-1: the model's)");
        if (nuclei)
            params.addDoubleParameter("cellExpansion", "Cell expansion",
                    CellBridgePreferences.cellExpansionProperty().get(), "µm",
                    "Grow cells this far around each nucleus (0: nuclei only)");
        List<String> stainChoices = new ArrayList<>();
        if (ihc != null) {
            if (ihc.imageStains() != null)
                stainChoices.add(STAINS_IMAGE);
            stainChoices.addAll(List.of(STAINS_ESTIMATE, STAINS_DEFAULT));
            params.addChoiceParameter("stains", "Stain vectors", stainChoices.get(0), stainChoices,
                            "The image's H-DAB vectors (Analyze > Preprocessing > Estimate stain vectors), an "
                                    + "estimate per image (Macenko), or QuPath's default H-DAB vectors")
                    .addChoiceParameter("classes", "Intensity classes", CLASSES_THREE, List.of(CLASSES_THREE, CLASSES_ONE),
                            "Three thresholds (1+, 2+, 3+: H-score) or the first only (Positive)")
                    .addDoubleParameter("t1", "Threshold 1+ (or Positive)", 0.2, "OD", "Mean nucleus DAB optical density")
                    .addDoubleParameter("t2", "Threshold 2+", 0.4, "OD", "Mean nucleus DAB optical density")
                    .addDoubleParameter("t3", "Threshold 3+", 0.6, "OD", "Mean nucleus DAB optical density");
        }
        params.addBooleanParameter("replace", "Replace earlier detections",
                        CellBridgePreferences.replaceExistingProperty().get(),
                        "Remove the detections already under each annotation (or the whole image) first")
                .addBooleanParameter("sendTiles", "Send pixels from QuPath", false,
                        "Send the pixels as tiles even when the Python side could read the image file itself");
        if (!GuiTools.showParameterDialog(title, params))
            return null;
        String model = (String) params.getChoiceParameterValue("model");
        String device = (String) params.getChoiceParameterValue("device");
        int tileSize = params.getIntParameterValue("tileSize");
        int overlap = params.getIntParameterValue("overlap");
        boolean replace = params.getBooleanParameterValue("replace");
        CellBridgePreferences.lastModelProperty().set(model);
        CellBridgePreferences.deviceProperty().set(device);
        CellBridgePreferences.tileSizeProperty().set(Math.max(0, tileSize));
        CellBridgePreferences.overlapProperty().set(Math.max(-1, overlap));
        CellBridgePreferences.replaceExistingProperty().set(replace);
        RunSettings.Builder builder = CellBridgePreferences.settingsFor(model)
                .sendTiles(params.getBooleanParameterValue("sendTiles"));
        if (nuclei) {
            double expansion = Math.max(0, params.getDoubleParameterValue("cellExpansion"));
            CellBridgePreferences.cellExpansionProperty().set(expansion);
            builder.task("nuclei");
            if (expansion > 0)
                builder.cellExpansion(expansion);
        }
        if (ihc != null) {
            String stains = (String) params.getChoiceParameterValue("stains");
            builder.stain("ihc-dab").stainVectors(switch (stains) {
                case STAINS_IMAGE -> ihc.imageStains();
                case STAINS_DEFAULT -> "default";
                default -> "estimate";
            });
            double t1 = params.getDoubleParameterValue("t1");
            if (CLASSES_ONE.equals(params.getChoiceParameterValue("classes")))
                builder.positivity(t1);
            else
                builder.positivity(t1, params.getDoubleParameterValue("t2"), params.getDoubleParameterValue("t3"));
        }
        try {
            return builder.build();
        } catch (IllegalArgumentException e) {
            Dialogs.showErrorNotification(title, e.getMessage());
            return null;
        }
    }

    private static String deviceChoice() {
        String device = CellBridgePreferences.deviceProperty().get();
        return device == null || device.isBlank() ? "auto" : device.strip();
    }

    private static String summary(Map<String, Integer> counts) {
        if (counts.isEmpty())
            return "nothing found";
        return counts.entrySet().stream().map(e -> e.getKey() + " " + e.getValue()).collect(Collectors.joining(", "));
    }

    // ----------------------------------------------------------------------------------------- classification

    private void classify() {
        String title = "Classify detections";
        ImageData<BufferedImage> imageData = qupath.getImageData();
        if (imageData == null) {
            GuiTools.showNoImageError(title);
            return;
        }
        List<PathObject> objects = ObjectFiles.targets(imageData);
        if (objects.isEmpty()) {
            Dialogs.showErrorNotification(title, "The image has no detections to classify");
            return;
        }
        File file = FileChoosers.promptForFile(qupath.getStage(), "Choose a CellBridge classifier (JSON)",
                FileChoosers.createExtensionFilter("Classifier JSON", "*.json"));
        if (file == null)
            return;
        Path classifier = file.toPath();
        BackgroundTask.<Map<String, DetectedObject>>start(qupath, title + " (" + objects.size() + " objects)", task -> {
            task.progress(-1, "Classifying with " + classifier.getFileName());
            return ObjectFiles.classify(objects, classifier, line -> task.progress(-1, line), task::isCancelled);
        }, classified -> {
            int n = ObjectFiles.applyClasses(imageData, objects, classified, classifier);
            Dialogs.showInfoNotification(title, n + " objects classified: "
                    + summary(CellBridge.countClasses(objects)));
        });
    }

    // ---------------------------------------------------------------------------------------------- training

    private void exportCoco() {
        String title = "Export training tiles";
        ImageData<BufferedImage> imageData = qupath.getImageData();
        if (imageData == null) {
            GuiTools.showNoImageError(title);
            return;
        }
        File dir = FileChoosers.promptForDirectory(qupath.getStage(), "Folder for the training tiles", null);
        if (dir == null)
            return;
        BackgroundTask.start(qupath, title, task -> {
            task.progress(-1, "Exporting annotations");
            return TrainingData.exportCoco(imageData, dir.toPath(), line -> task.progress(-1, line), task::isCancelled);
        }, coco -> Dialogs.showInfoNotification(title, "Training tiles and COCO JSON written: " + coco));
    }

    private void train() {
        String title = "Train a model";
        Project<BufferedImage> project = qupath.getProject();
        if (project == null) {
            Dialogs.showErrorNotification(title, "Open a project first: training uses the annotations of its images");
            return;
        }
        List<TrainingData.Kind> kinds = List.of(TrainingData.Kind.values());
        ParameterList params = new ParameterList()
                .addStringParameter("name", "Model name", "my-nuclei", "Letters, digits, '.', '_' or '-'")
                .addChoiceParameter("kind", "Model", TrainingData.Kind.NUCLEI, kinds,
                        "Nuclei: annotate nuclei as points or polygons; objects: boxes or polygons, by class")
                .addStringParameter("init", "Start from", CellBridgePreferences.lastModelProperty().get(),
                        "Nuclei: fine-tune this model (name or folder) on your annotations; blank: from scratch")
                .addIntParameter("epochs", "Epochs", CellBridgePreferences.trainEpochsProperty().get(), "",
                        "Training epochs (each saves a checkpoint; the best epoch is kept)")
                .addChoiceParameter("device", "Device", deviceChoice(), PreferencesDialog.devices(),
                        "auto: CUDA, else MPS, else CPU");
        if (!GuiTools.showParameterDialog(title, params))
            return;
        String name = params.getStringParameterValue("name").strip();
        TrainingData.Kind kind = (TrainingData.Kind) params.getChoiceParameterValue("kind");
        int epochs = Math.max(1, params.getIntParameterValue("epochs"));
        String device = (String) params.getChoiceParameterValue("device");
        String init = params.getStringParameterValue("init");
        CellBridgePreferences.trainEpochsProperty().set(epochs);
        String folder = CellBridgePreferences.modelFolderProperty().get();
        boolean setFolder = folder == null || folder.isBlank();
        Path outParent = setFolder ? project.getPath().getParent().resolve("cellbridge").resolve("models")
                : Path.of(folder.strip());
        BackgroundTask.start(qupath, title + " (" + name + ")", task -> {
            task.progress(-1, "Exporting training tiles");
            return TrainingData.train(project, name, kind, epochs, outParent, device, init,
                    line -> task.progress(-1, line), task::isCancelled);
        }, model -> {
            String note = "";
            if (setFolder) {
                CellBridgePreferences.modelFolderProperty().set(outParent.toString());
                note = "; the model folder preference is now " + outParent;
            }
            if (setFolder && CellBridgeServer.isRunning()) {
                note += " (the server restarts on the next command to find it)";
                BackgroundTask.start(qupath, "Stopping the CellBridge server", t -> {
                    CellBridgeServer.stop();
                    return null;
                }, null);
            }
            Dialogs.showInfoNotification(title, "Model " + name + " written to " + model + note);
        });
    }

    // ------------------------------------------------------------------------------------------------ GeoJSON

    private void importGeoJson() {
        String title = "Import QuPath GeoJSON";
        ImageData<BufferedImage> imageData = qupath.getImageData();
        if (imageData == null) {
            GuiTools.showNoImageError(title);
            return;
        }
        File file = FileChoosers.promptForFile(qupath.getStage(), title,
                FileChoosers.createExtensionFilter("QuPath GeoJSON", "*.geojson", "*.json"));
        if (file == null)
            return;
        BackgroundTask.start(qupath, title, task -> {
            task.progress(-1, "Reading " + file.getName());
            return ObjectFiles.importObjects(imageData, file.toPath()).size();
        }, n -> Dialogs.showInfoNotification(title, n + " objects imported from " + file.getName()));
    }

    private void exportGeoJson() {
        String title = "Export QuPath GeoJSON";
        ImageData<BufferedImage> imageData = qupath.getImageData();
        if (imageData == null) {
            GuiTools.showNoImageError(title);
            return;
        }
        List<String> choices = new ArrayList<>(List.of("Detections only", "All objects"));
        String what = Dialogs.showChoiceDialog(title, "Objects to export", choices, choices.get(0));
        if (what == null)
            return;
        File file = FileChoosers.promptToSaveFile(qupath.getStage(), title, null,
                FileChoosers.createExtensionFilter("QuPath GeoJSON", "*.geojson"));
        if (file == null)
            return;
        boolean detectionsOnly = choices.get(0).equals(what);
        BackgroundTask.start(qupath, title, task -> {
            task.progress(-1, "Writing " + file.getName());
            return ObjectFiles.exportObjects(imageData, file.toPath(), detectionsOnly);
        }, n -> Dialogs.showInfoNotification(title, n + " objects written to " + file.getName()));
    }

    // -------------------------------------------------------------------------------------------- preferences

    private void preferences() {
        if (PreferencesDialog.show() && CellBridgeServer.isRunning()) {
            BackgroundTask.start(qupath, "Restarting the CellBridge server", task -> {
                task.progress(-1, "Restarting with " + CellBridgeServer.python().executable());
                CellBridgeServer.restart();
                return CellBridgeServer.status();
            }, status -> FXUtils.runOnApplicationThread(() -> Dialogs.showInfoNotification(TITLE, "Server " + status)));
        }
    }
}
