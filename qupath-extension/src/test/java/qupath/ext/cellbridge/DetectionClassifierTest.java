package qupath.ext.cellbridge;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.io.TempDir;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.WrappedBufferedImageServer;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.plugins.workflow.WorkflowStep;
import qupath.lib.roi.ROIs;

import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The selected detections go through {@code cellbridge classify} and come back, read by QuPath's reader, as classes
 * and class probabilities on the image's own objects; unselected detections stay as they were.
 */
@Tag("e2e")
@EnabledIfEnvironmentVariable(named = "CELLBRIDGE_PYTHON", matches = ".+", disabledReason = QuPathFixtures.NO_PYTHON)
class DetectionClassifierTest {

    private static PathObject nucleus(double x, int red, int green, int blue) {
        PathObject detection = PathObjects.createDetectionObject(ROIs.createEllipseROI(x, 10, 12, 12, null));
        try (var measurements = detection.getMeasurementList()) {
            measurements.put("Red: Mean", red);
            measurements.put("Green: Mean", green);
            measurements.put("Blue: Mean", blue);
        }
        return detection;
    }

    @Test
    void selectedDetectionsGetTheNearestReferenceColoursClassAndProbabilities(@TempDir Path dir) throws Exception {
        QuPathFixtures.client();  // the extension's configuration: the test's Python
        BufferedImage pixels = new BufferedImage(100, 40, BufferedImage.TYPE_INT_RGB);
        ImageData<BufferedImage> imageData = new ImageData<>(new WrappedBufferedImageServer("plain", pixels),
                ImageData.ImageType.BRIGHTFIELD_H_DAB);
        PathObject brown = nucleus(0, 139, 69, 19);
        PathObject blue = nucleus(20, 70, 80, 160);
        PathObject unselected = nucleus(40, 139, 69, 19);
        imageData.getHierarchy().addObjects(List.of(brown, blue, unselected));
        imageData.getHierarchy().getSelectionModel().setSelectedObjects(List.of(brown, blue), brown);
        Path classifier = dir.resolve("refs.json");
        Files.writeString(classifier, "{\"classes\": {\"Positive\": \"#8b4513\", \"Negative\": [70, 80, 160]}}");

        int classified = DetectionClassifier.classifyDetections(imageData, classifier);

        assertEquals(2, classified);
        assertEquals("Positive", brown.getPathClass().toString());
        assertEquals("Negative", blue.getPathClass().toString());
        for (PathObject o : List.of(brown, blue)) {
            double positive = o.getMeasurementList().get("Class probability: Positive");
            double negative = o.getMeasurementList().get("Class probability: Negative");
            assertEquals(1.0, positive + negative, 1e-6);
            assertTrue(Math.max(positive, negative) > 0.9, o + ": " + positive + ", " + negative);
            assertEquals(139.0 == o.getMeasurementList().get("Red: Mean"), positive > negative);
        }
        assertNull(unselected.getPathClass(), "not selected: not classified");
        assertEquals(3, unselected.getMeasurementList().size());
        List<WorkflowStep> steps = imageData.getHistoryWorkflow().getSteps();
        assertEquals("CellBridge classify detections", steps.get(steps.size() - 1).getName());
    }
}
