package qupath.ext.cellbridge;

import org.junit.jupiter.api.Test;
import qupath.ext.cellbridge.bridge.CellBridgeClient;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.CellBridgeService;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.WrappedBufferedImageServer;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.roi.ROIs;

import java.awt.image.BufferedImage;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A server reply that cannot be read leaves the hierarchy as it was: no object added, none replaced, no workflow
 * step, even when the reply for an earlier annotation of the same run was fine.
 */
class MalformedReplyTest {

    private static final String DETECTION = "{\"type\": \"FeatureCollection\", \"features\": [{\"type\": \"Feature\", "
            + "\"geometry\": {\"type\": \"Polygon\", \"coordinates\": [[[10, 10], [20, 10], [20, 20], [10, 20], "
            + "[10, 10]]]}, \"properties\": {\"objectType\": \"detection\", "
            + "\"classification\": {\"name\": \"Tumor\", \"color\": [200, 0, 0]}}}]}";

    /** Answers each job with the next of the given chunks; every job is done at once. */
    private static final class ScriptedServer implements CellBridgeService {

        private final List<String> chunks;
        private final List<String> submitted = new ArrayList<>();

        ScriptedServer(String... chunks) {
            this.chunks = List.of(chunks);
        }

        private static String ok(String value) {
            return "{\"ok\": true, \"value\": " + value + "}";
        }

        @Override
        public String ping() {
            return ok("\"pong\"");
        }

        @Override
        public String version() {
            return ok("{\"cellbridge\": \"0.1.0\", \"protocol\": 1, \"devices\": [\"cpu\"]}");
        }

        @Override
        public String listModels() {
            return ok("[{\"name\": \"m\", \"task\": \"nuclei\", \"classes\": [\"Tumor\"], \"mpp\": 0.5}]");
        }

        @Override
        public synchronized String submit(String requestJson) {
            submitted.add(requestJson);
            return ok("\"job" + submitted.size() + "\"");
        }

        @Override
        public String signature(String requestJson) {
            return ok("\"0123456789abcdef\"");
        }

        @Override
        public String putCountsRow(String csvPath, String rowJson) {
            return ok("true");
        }

        @Override
        public String status(String jobId) {
            return ok("{\"state\": \"done\", \"progress\": 1, \"message\": \"\", \"objects\": 1, \"chunks\": 1}");
        }

        @Override
        public String cancel(String jobId) {
            return ok("true");
        }

        @Override
        public String resultChunk(String jobId, int index) {
            if (index > 0)
                return ok("null");
            String chunk = chunks.get(Integer.parseInt(jobId.substring(3)) - 1);
            return ok(quote(chunk));
        }

        private static String quote(String text) {
            return new com.google.gson.JsonPrimitive(text).toString();
        }

        @Override
        public String shutdown() {
            return ok("true");
        }
    }

    private static ImageData<BufferedImage> image() {
        BufferedImage pixels = new BufferedImage(200, 100, BufferedImage.TYPE_INT_RGB);
        return new ImageData<>(new WrappedBufferedImageServer("plain", pixels), ImageData.ImageType.BRIGHTFIELD_H_E);
    }

    /**
     * An image with two annotations side by side and an earlier detection under the left one, and how many workflow
     * steps it had before the run.
     */
    private record TwoAnnotations(ImageData<BufferedImage> imageData, PathObject left, PathObject right,
                                  PathObject earlier, int steps) {

        static TwoAnnotations withAnEarlierDetection() {
            ImageData<BufferedImage> imageData = image();
            PathObject left = PathObjects.createAnnotationObject(ROIs.createRectangleROI(0, 0, 100, 100));
            PathObject right = PathObjects.createAnnotationObject(ROIs.createRectangleROI(100, 0, 100, 100));
            imageData.getHierarchy().addObjects(List.of(left, right));
            PathObject earlier = PathObjects.createDetectionObject(ROIs.createRectangleROI(40, 40, 5, 5));
            imageData.getHierarchy().addObjectBelowParent(left, earlier, true);
            return new TwoAnnotations(imageData, left, right, earlier, imageData.getHistoryWorkflow().size());
        }

        void assertUnchanged() {
            assertEquals(Set.of(earlier), Set.copyOf(imageData.getHierarchy().getDetectionObjects()));
            assertEquals(left, earlier.getParent(), "the earlier detection is still under its annotation");
            assertTrue(right.getChildObjects().isEmpty());
            assertEquals(steps, imageData.getHistoryWorkflow().size(), "no workflow step");
        }
    }

    @Test
    void aMalformedReplyForTheSecondAnnotationLeavesBothAsTheyWere() {
        TwoAnnotations scene = TwoAnnotations.withAnEarlierDetection();
        String broken = DETECTION.replace("[[[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]]]", "\"not a ring\"");
        ScriptedServer server = new ScriptedServer(DETECTION, broken);
        CellBridge cellbridge = CellBridge.builder("m").client(CellBridgeClient.of(server)).build();

        var e = assertThrows(CellBridgeException.class,
                () -> cellbridge.detectObjects(scene.imageData(), List.of(scene.left(), scene.right())));

        assertEquals(2, server.submitted.size(), "both annotations were sent");
        assertTrue(e.getMessage().startsWith("chunk 0 of job job2: feature 0 (Polygon): QuPath cannot read it"),
                e.getMessage());
        scene.assertUnchanged();
    }

    @Test
    void aReplyThatIsNotJsonLeavesTheHierarchyAsItWas() {
        TwoAnnotations scene = TwoAnnotations.withAnEarlierDetection();
        CellBridge cellbridge = CellBridge.builder("m").client(CellBridgeClient.of(
                new ScriptedServer("{\"type\": \"FeatureCollection\", \"features\": [{"))).build();

        assertThrows(CellBridgeException.class,
                () -> cellbridge.detectObjects(scene.imageData(), List.of(scene.left())));

        scene.assertUnchanged();
    }

    @Test
    void aWellFormedReplyDoesChangeTheHierarchy() {
        ImageData<BufferedImage> imageData = image();
        PathObject left = PathObjects.createAnnotationObject(ROIs.createRectangleROI(0, 0, 100, 100));
        imageData.getHierarchy().addObject(left);
        CellBridge cellbridge = CellBridge.builder("m").client(CellBridgeClient.of(new ScriptedServer(DETECTION)))
                .build();

        CellBridge.Result result = cellbridge.detectObjects(imageData, List.of(left));

        assertEquals(1, result.objects());
        PathObject found = left.getChildObjects().iterator().next();
        assertEquals("Tumor", found.getPathClass().getName());
        assertEquals(100.0, found.getROI().getArea(), 1e-9);
    }
}
