package qupath.ext.cellbridge;

import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.CliProcess;
import qupath.ext.cellbridge.bridge.DetectedObject;
import qupath.ext.cellbridge.bridge.GeoJsonObjects;
import qupath.ext.cellbridge.bridge.RunSettings;
import qupath.lib.images.ImageData;
import qupath.lib.io.PathIO;
import qupath.lib.io.PathIO.GeoJsonExportOptions;
import qupath.lib.measurements.MeasurementList;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.hierarchy.PathObjectHierarchy;
import qupath.lib.plugins.workflow.DefaultScriptableWorkflowStep;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;

/**
 * QuPath GeoJSON in and out of an image (with QuPath's own reader and writer, so every file QuPath exports loads and
 * every file CellBridge writes imports unchanged), and classifying detections through {@code cellbridge classify}.
 * Each call that changes an image records a workflow step.
 */
public final class ObjectFiles {

    private ObjectFiles() {
    }

    /**
     * Add the objects of a QuPath GeoJSON file to an image (placed in the hierarchy by their ROIs).
     * @param imageData the image
     * @param file a .geojson/.json file (as QuPath or {@code cellbridge} write them)
     * @return the objects added
     * @throws CellBridgeException if the file cannot be read
     */
    public static List<PathObject> importObjects(ImageData<?> imageData, Path file) {
        List<PathObject> objects;
        try {
            objects = PathIO.readObjects(file);
        } catch (IOException | RuntimeException e) {
            throw new CellBridgeException(file + ": cannot import objects: " + e.getMessage(), e);
        }
        imageData.getHierarchy().addObjects(objects);
        imageData.getHistoryWorkflow().addStep(new DefaultScriptableWorkflowStep("Import objects",
                Map.of("path", file.toString()), "importObjectsFromFile(" + RunSettings.groovyString(file.toString())
                + ")"));
        return objects;
    }

    /**
     * Write objects of an image as a QuPath GeoJSON FeatureCollection.
     * @param imageData the image
     * @param file the output file
     * @param detectionsOnly true for detections and cells only, false for every object
     * @return how many objects were written
     * @throws CellBridgeException if the file cannot be written
     */
    public static int exportObjects(ImageData<?> imageData, Path file, boolean detectionsOnly) {
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        Collection<PathObject> objects = detectionsOnly ? hierarchy.getDetectionObjects()
                : hierarchy.getAllObjects(false);
        try {
            PathIO.exportObjectsAsGeoJSON(file, objects, GeoJsonExportOptions.FEATURE_COLLECTION);
        } catch (IOException e) {
            throw new CellBridgeException(file + ": cannot export objects: " + e.getMessage(), e);
        }
        String objectsScript = detectionsOnly ? "getDetectionObjects()" : "getAllObjects(false)";
        imageData.getHistoryWorkflow().addStep(new DefaultScriptableWorkflowStep("Export objects as GeoJSON",
                Map.of("path", file.toString(), "detectionsOnly", detectionsOnly),
                "exportObjectsToGeoJson(" + objectsScript + ", " + RunSettings.groovyString(file.toString())
                        + ", 'FEATURE_COLLECTION')"));
        return objects.size();
    }

    /**
     * The classification part of {@link #classifyDetections}: runs {@code cellbridge classify} on the objects and
     * returns the classified objects by id, without changing the image.
     * @param objects detections or cells (with the measurements the classifier reads)
     * @param classifier a classifier JSON file (reference colours, or a trained measurement classifier)
     * @param lines told the command's output lines (may be null)
     * @param cancelled polled while it runs (may be null)
     * @return the classified objects by id
     * @throws CellBridgeException with the command's message if it fails
     */
    public static Map<String, DetectedObject> classify(Collection<PathObject> objects, Path classifier,
                                                       Consumer<String> lines, BooleanSupplier cancelled) {
        if (objects.isEmpty())
            throw new CellBridgeException("there are no detections to classify");
        if (!Files.isRegularFile(classifier))
            throw new CellBridgeException("classifier file " + classifier + " does not exist");
        Path dir;
        try {
            dir = Files.createTempDirectory("cellbridge-classify-");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        try {
            Path in = dir.resolve("objects.geojson");
            Path out = dir.resolve("classified.geojson");
            PathIO.exportObjectsAsGeoJSON(in, objects, GeoJsonExportOptions.FEATURE_COLLECTION);
            CliProcess.run(CellBridgeServer.python(), List.of("classify", in.toString(), "--classifier",
                    classifier.toString(), "--out", out.toString()), lines, cancelled);
            Map<String, DetectedObject> byId = new HashMap<>();
            for (DetectedObject object : GeoJsonObjects.read(out)) {
                if (object.id() != null)
                    byId.put(object.id(), object);
            }
            return byId;
        } catch (IOException e) {
            throw new CellBridgeException("cannot write the detections for classification: " + e.getMessage(), e);
        } finally {
            deleteQuietly(dir);
        }
    }

    /**
     * Set classes (and "Class probability: ..." measurements) from {@link #classify}'s output, one hierarchy event,
     * and a workflow step.
     * @param imageData the image
     * @param objects the objects that were classified
     * @param classified {@link #classify}'s result
     * @param classifier the classifier file (for the workflow step)
     * @return how many objects got a class
     */
    public static int applyClasses(ImageData<?> imageData, Collection<PathObject> objects,
                                   Map<String, DetectedObject> classified, Path classifier) {
        List<PathObject> changed = new ArrayList<>();
        for (PathObject object : objects) {
            DetectedObject result = classified.get(object.getID().toString());
            if (result == null)
                continue;
            object.setPathClass(PathObjectConverter.pathClass(result.className(), result.color()));
            try (MeasurementList measurements = object.getMeasurementList()) {
                for (Map.Entry<String, Double> entry : result.measurements().entrySet()) {
                    if (entry.getKey().startsWith("Class probability: "))
                        measurements.put(entry.getKey(), entry.getValue());
                }
            }
            changed.add(object);
        }
        imageData.getHierarchy().fireObjectClassificationsChangedEvent(ObjectFiles.class, changed);
        imageData.getHistoryWorkflow().addStep(new DefaultScriptableWorkflowStep("CellBridge classify detections",
                Map.of("classifier", classifier.toString()), CellBridge.class.getName() + ".classifyDetections("
                + "getCurrentImageData(), " + RunSettings.groovyString(classifier.toString()) + ")"));
        return changed.size();
    }

    /**
     * Classify the detections of an image (the selected ones, else all) with a classifier file.
     * @param imageData the image
     * @param classifier a classifier JSON file
     * @return how many objects got a class
     */
    public static int classifyDetections(ImageData<?> imageData, Path classifier) {
        List<PathObject> objects = targets(imageData);
        return applyClasses(imageData, objects, classify(objects, classifier, null, null), classifier);
    }

    /**
     * @param imageData an image
     * @return its selected detections, else all its detections
     */
    public static List<PathObject> targets(ImageData<?> imageData) {
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        List<PathObject> selected = hierarchy.getSelectionModel().getSelectedObjects().stream()
                .filter(PathObject::isDetection).toList();
        return selected.isEmpty() ? List.copyOf(hierarchy.getDetectionObjects()) : selected;
    }

    static void deleteQuietly(Path dir) {
        try (var paths = Files.walk(dir)) {
            paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException | UncheckedIOException e) {
            // a temporary folder: left for the OS to clean
        }
    }
}
