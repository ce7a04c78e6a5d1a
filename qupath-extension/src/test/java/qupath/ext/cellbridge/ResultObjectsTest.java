package qupath.ext.cellbridge;

import org.junit.jupiter.api.Test;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.DetectedObject;
import qupath.ext.cellbridge.bridge.GeoJsonObjects;
import qupath.lib.common.ColorTools;
import qupath.lib.objects.PathCellObject;
import qupath.lib.objects.PathObject;
import qupath.lib.regions.ImagePlane;
import qupath.lib.roi.interfaces.ROI;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.UUID;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A result chunk as the server writes it, read by QuPath's own reader: cells keep their nucleus, derived classes
 * their parent and colour, measurements their names (NaN too), objects their UUID, a region's annotations become
 * detections; moved objects keep all of it on the new position and plane; a chunk QuPath cannot read is one error
 * naming the feature.
 */
class ResultObjectsTest {

    private static final String CELL_ID = "4f0b4bb4-60f6-4c36-9ad6-3b1a4a4e4b1e";
    private static final String RING = "[[[10, 10], [30, 10], [30, 20], [10, 20], [10, 10]]]";

    /** A cell 20 × 10 px with a 6 × 4 px nucleus, classified "Tumor: Positive", and a plain detection. */
    private static final String CHUNK = "{\"type\": \"FeatureCollection\", \"features\": ["
            + "{\"type\": \"Feature\", \"id\": \"" + CELL_ID + "\", "
            + "\"geometry\": {\"type\": \"Polygon\", \"coordinates\": " + RING + "}, "
            + "\"nucleusGeometry\": {\"type\": \"Polygon\", \"coordinates\": "
            + "[[[12, 12], [18, 12], [18, 16], [12, 16], [12, 12]]]}, "
            + "\"properties\": {\"objectType\": \"cell\", "
            + "\"classification\": {\"names\": [\"Tumor\", \"Positive\"], \"color\": [200, 0, 10]}, "
            + "\"measurements\": {\"Nucleus: Area µm^2\": 6.0, \"Nucleus: DAB OD mean\": \"NaN\"}}},"
            + "{\"type\": \"Feature\", \"geometry\": {\"type\": \"Polygon\", \"coordinates\": "
            + "[[[40, 40], [44, 40], [44, 44], [40, 44], [40, 40]]]}, \"properties\": {\"objectType\": \"detection\"}}"
            + "]}";

    @Test
    void cellsKeepTheirNucleusClassMeasurementsAndId() {
        List<PathObject> objects = ResultObjects.read(CHUNK);

        assertEquals(2, objects.size());
        PathCellObject cell = (PathCellObject) objects.get(0);
        assertEquals(UUID.fromString(CELL_ID), cell.getID());
        assertEquals(200.0, cell.getROI().getArea(), 1e-9);
        assertEquals(24.0, cell.getNucleusROI().getArea(), 1e-9);
        assertEquals("Tumor: Positive", cell.getPathClass().toString());
        assertTrue(cell.getPathClass().isDerivedClass());
        assertEquals("Tumor", cell.getPathClass().getParentClass().getName());
        assertEquals(ColorTools.packRGB(200, 0, 10), cell.getPathClass().getColor());
        assertEquals(List.of("Nucleus: Area µm^2", "Nucleus: DAB OD mean"), cell.getMeasurementList().getNames());
        assertEquals(6.0, cell.getMeasurementList().get("Nucleus: Area µm^2"));
        assertTrue(Double.isNaN(cell.getMeasurementList().get("Nucleus: DAB OD mean")));
        PathObject detection = objects.get(1);
        assertTrue(detection.isDetection() && !detection.isCell());
        assertEquals(null, detection.getPathClass());
    }

    @Test
    void qupathsReaderAndTheBridgesAgreeOnWhatCellBridgeWrites() throws Exception {
        Path fixture = Path.of(System.getProperty("cellbridge.repo", ""),
                "tests/fixtures/qupath_geojson/cellbridge_written.geojson");
        List<PathObject> qupath = ResultObjects.read(Files.readString(fixture));
        List<DetectedObject> bridge = GeoJsonObjects.read(fixture);

        assertEquals(4, qupath.size());
        assertEquals(bridge.size(), qupath.size());
        for (int i = 0; i < qupath.size(); i++) {
            PathObject q = qupath.get(i);
            DetectedObject b = bridge.get(i);
            String where = "object " + i + " (" + q + ")";
            assertEquals(b.id(), q.getID().toString(), where);
            assertEquals(b.isCell(), q.isCell(), where);
            assertTrue(q.isDetection(), where);
            assertEquals(b.className(), q.getPathClass() == null ? null : q.getPathClass().toString(), where);
            if (b.color() != null)
                assertEquals(ColorTools.packRGB((b.color() >> 16) & 0xFF, (b.color() >> 8) & 0xFF, b.color() & 0xFF),
                        q.getPathClass().getColor(), where);
            assertEquals(b.geometry().getArea(), q.getROI().getArea(), 1e-9, where);
            // QuPath computes ROI centroids in float precision (a polygon with a hole: within 0.01 px)
            assertEquals(b.geometry().getCentroid().getX(), q.getROI().getCentroidX(), 0.01, where);
            assertEquals(b.geometry().getCentroid().getY(), q.getROI().getCentroidY(), 0.01, where);
            if (b.nucleusGeometry() != null)
                assertEquals(b.nucleusGeometry().getArea(), ((PathCellObject) q).getNucleusROI().getArea(), 1e-9);
            assertEquals(List.copyOf(b.measurements().keySet()), q.getMeasurementList().getNames(), where);
            for (String name : b.measurements().keySet())
                assertEquals(b.measurement(name), q.getMeasurementList().get(name), where + ": " + name);
        }
        assertTrue(qupath.get(0).getPathClass().isDerivedClass());
    }

    @Test
    void aRegionModelsAnnotationsAreAddedAsDetections() {
        String region = "{\"type\": \"FeatureCollection\", \"features\": [{\"type\": \"Feature\", "
                + "\"id\": \"" + CELL_ID + "\", \"geometry\": {\"type\": \"Polygon\", \"coordinates\": " + RING + "}, "
                + "\"properties\": {\"objectType\": \"annotation\", \"classification\": {\"name\": \"Gland\", "
                + "\"color\": [0, 200, 0]}, \"measurements\": {\"Area µm^2\": 50.0}}}]}";

        PathObject object = ResultObjects.read(region).get(0);

        assertTrue(object.isDetection() && !object.isAnnotation(), object.toString());
        assertEquals(UUID.fromString(CELL_ID), object.getID());
        assertEquals("Gland", object.getPathClass().toString());
        assertEquals(200.0, object.getROI().getArea(), 1e-9);
        assertEquals(50.0, object.getMeasurementList().get("Area µm^2"));
    }

    @Test
    void movedObjectsKeepEverythingOnTheNewPositionAndPlane() {
        List<PathObject> read = ResultObjects.read(CHUNK);
        ImagePlane plane = ImagePlane.getPlane(2, 1);

        List<PathObject> moved = ResultObjects.moved(read, 100, 50, plane);

        PathCellObject cell = (PathCellObject) moved.get(0);
        ROI roi = cell.getROI();
        ROI nucleus = cell.getNucleusROI();
        assertEquals(110.0, roi.getBoundsX(), 1e-9);
        assertEquals(60.0, roi.getBoundsY(), 1e-9);
        assertEquals(112.0, nucleus.getBoundsX(), 1e-9);
        assertEquals(62.0, nucleus.getBoundsY(), 1e-9);
        assertEquals(200.0, roi.getArea(), 1e-9);
        assertEquals(plane, roi.getImagePlane());
        assertEquals(plane, nucleus.getImagePlane());
        assertEquals(UUID.fromString(CELL_ID), cell.getID());
        assertEquals("Tumor: Positive", cell.getPathClass().toString());
        assertEquals(6.0, cell.getMeasurementList().get("Nucleus: Area µm^2"));
        assertEquals(140.0, moved.get(1).getROI().getBoundsX(), 1e-9);
        assertEquals(10.0, read.get(0).getROI().getBoundsX(), 1e-9, "the objects read are unchanged");
        assertSame(read, ResultObjects.moved(read, 0, 0, ImagePlane.getDefaultPlane()), "nothing to move");
    }

    @Test
    void aChunkQuPathCannotReadIsOneErrorNamingTheFeature() {
        String brokenRing = CHUNK.replace("[[[40, 40], [44, 40], [44, 44], [40, 44], [40, 40]]]", "\"not a ring\"");
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> ResultObjects.read(brokenRing));
        assertTrue(e.getMessage().startsWith("feature 1 (Polygon): QuPath cannot read it"), e.getMessage());

        String openRing = CHUNK.replace(RING, "[[[10, 10], [30, 10], [30, 20]]]");
        e = assertThrows(CellBridgeException.class, () -> ResultObjects.read(openRing));
        assertTrue(e.getMessage().startsWith("feature 0 (Polygon): ") && e.getMessage().contains("closed"),
                e.getMessage());

        String noGeometry = "{\"type\": \"FeatureCollection\", \"features\": [{\"type\": \"Feature\", "
                + "\"properties\": {\"objectType\": \"detection\"}}]}";
        e = assertThrows(CellBridgeException.class, () -> ResultObjects.read(noGeometry));
        assertTrue(e.getMessage().startsWith("feature 0: "), e.getMessage());

        String notAFeature = "{\"type\": \"FeatureCollection\", \"features\": [{\"type\": \"Bogus\"}]}";
        e = assertThrows(CellBridgeException.class, () -> ResultObjects.read(notAFeature));
        assertEquals("feature 0: QuPath reads it as 0 objects, not one", e.getMessage());

        for (String notACollection : List.of("[1, 2]", "{\"features\": 3}", "{\"type\": \"FeatureCollection\"}")) {
            e = assertThrows(CellBridgeException.class, () -> ResultObjects.read(notACollection), notACollection);
            assertFalse(e.getMessage().isBlank());
        }
        e = assertThrows(CellBridgeException.class, () -> ResultObjects.read("{\"type\": \"FeatureCollection\", "));
        assertTrue(e.getMessage().startsWith("not JSON: "), e.getMessage());
        assertNotNull(ResultObjects.read("{\"type\": \"FeatureCollection\", \"features\": []}"));
    }
}
