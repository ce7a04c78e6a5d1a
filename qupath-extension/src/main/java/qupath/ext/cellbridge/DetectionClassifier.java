package qupath.ext.cellbridge;

import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.CliProcess;
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
 * Classifying an image's detections with a CellBridge classifier file through {@code cellbridge classify}: the
 * detections go out and come back as QuPath GeoJSON (written and read by QuPath's own {@link PathIO}), and their
 * classes and class probabilities are set on the image's objects, with a workflow step. (Importing and exporting
 * objects is QuPath's own: File &gt; Import objects from file, File &gt; Export objects as GeoJSON, or
 * {@code importObjectsFromFile} / {@code exportObjectsToGeoJson} in scripts.)
 */
public final class DetectionClassifier {

    private DetectionClassifier() {
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
    public static Map<String, PathObject> classify(Collection<PathObject> objects, Path classifier,
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
            Map<String, PathObject> byId = new HashMap<>();
            for (PathObject object : readClassified(out))
                byId.put(object.getID().toString(), object);
            return byId;
        } catch (IOException e) {
            throw new CellBridgeException("cannot write the detections for classification: " + e.getMessage(), e);
        } finally {
            deleteQuietly(dir);
        }
    }

    private static List<PathObject> readClassified(Path file) {
        try {
            return PathIO.readObjects(file);
        } catch (IOException | RuntimeException e) {
            throw new CellBridgeException(file + ": cannot read the classified detections: " + e.getMessage(), e);
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
                                   Map<String, PathObject> classified, Path classifier) {
        List<PathObject> changed = new ArrayList<>();
        for (PathObject object : objects) {
            PathObject result = classified.get(object.getID().toString());
            if (result == null)
                continue;
            object.setPathClass(result.getPathClass());
            MeasurementList probabilities = result.getMeasurementList();
            try (MeasurementList measurements = object.getMeasurementList()) {
                for (String name : probabilities.getNames()) {
                    if (name.startsWith("Class probability: "))
                        measurements.put(name, probabilities.get(name));
                }
            }
            changed.add(object);
        }
        imageData.getHierarchy().fireObjectClassificationsChangedEvent(DetectionClassifier.class, changed);
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
