package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonObject;
import org.junit.jupiter.api.Test;
import org.locationtech.jts.geom.Coordinate;
import org.locationtech.jts.geom.Geometry;
import org.locationtech.jts.geom.GeometryFactory;
import org.locationtech.jts.geom.LinearRing;
import org.locationtech.jts.io.WKTReader;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The bridge's reader reads what CellBridge writes (the shared fixture written by Python's writer), and names the
 * feature and the problem in anything else; geometries it writes for requests read back equal.
 */
class GeoJsonObjectsTest {

    private static final GeometryFactory FACTORY = new GeometryFactory();

    @Test
    void readsWhatCellBridgeWrites() {
        List<DetectedObject> objects = GeoJsonObjects.read(Fixtures.geojson("cellbridge_written.geojson"));
        assertEquals(List.of("cell", "detection", "detection", "detection"),
                objects.stream().map(DetectedObject::objectType).toList());
        assertEquals(List.of("4f0b4bb4-60f6-4c36-9ad6-3b1a4a4e4b1e", "0d9c7a52-3f7e-4a38-b2a5-6f1d0c2e8b11",
                "7a3e2f90-1c55-4b6e-9d2a-08e4f1b3c6d7", "c2b8e6a4-95d1-4f0e-a7c3-5e9b2d4f6a80"),
                objects.stream().map(DetectedObject::id).toList());

        DetectedObject cell = objects.get(0);
        assertTrue(cell.isCell());
        assertEquals(200.0, cell.geometry().getArea(), 1e-12);
        assertEquals(24.0, cell.nucleusGeometry().getArea(), 1e-12);
        assertEquals(new Coordinate(15, 14), cell.centroid().getCoordinate(), "a cell is placed by its nucleus");
        assertEquals("Tumor: Positive", cell.className());
        assertEquals((200 << 16) | 10, cell.color());
        assertEquals(List.of("Nucleus: Area µm^2", "Nucleus: DAB OD mean", "Cell: Max"),
                List.copyOf(cell.measurements().keySet()));
        assertEquals(6.0, cell.measurement("Nucleus: Area µm^2"));
        assertTrue(Double.isNaN(cell.measurement("Nucleus: DAB OD mean")));
        assertEquals(Double.POSITIVE_INFINITY, cell.measurement("Cell: Max"));

        DetectedObject stroma = objects.get(1);
        assertEquals(375.0, stroma.geometry().getArea(), 1e-12, "the hole is cut out");
        assertEquals("Stroma", stroma.className());
        assertNull(stroma.color(), "a class written without a colour");
        assertEquals(Double.NEGATIVE_INFINITY, stroma.measurement("Min"));
        assertNull(stroma.nucleusGeometry());

        DetectedObject twoParts = objects.get(2);
        assertEquals("MultiPolygon", twoParts.geometry().getGeometryType());
        assertEquals(16 + 2.5, twoParts.geometry().getArea(), 1e-12);
        assertNull(twoParts.className());
        assertTrue(twoParts.measurements().isEmpty());

        DetectedObject point = objects.get(3);
        assertEquals(new Coordinate(7.25, 3.5), point.geometry().getCoordinate());
        assertEquals("Lymphocyte", point.className());
        assertEquals(0x0000FF, point.color());
        assertEquals(0.875, point.measurement("Score"));
    }

    @Test
    void emptyCollectionsAndGeometries() {
        assertEquals(0, GeoJsonObjects.parse("{\"type\":\"FeatureCollection\",\"features\":[]}").size());
        DetectedObject empty = GeoJsonObjects.parse(collection(
                "{\"type\":\"MultiPolygon\",\"coordinates\":[]}", "{\"objectType\":\"detection\"}")).get(0);
        assertTrue(empty.geometry().isEmpty());
    }

    @Test
    void malformedInputNamesTheFeatureAndProblem() {
        String point = "{\"type\":\"Point\",\"coordinates\":[1,2]}";
        String detection = "{\"objectType\":\"detection\"}";
        String good = feature(point, detection);
        assertError("not valid JSON", "{\"type\": \"FeatureCollection\", \"features\": [");
        assertError("expected a GeoJSON FeatureCollection, not a number (42)", "42");
        assertError("expected a GeoJSON FeatureCollection, not an array", "[" + good + "]");
        assertError("FeatureCollection 'features' must be an array", "{\"type\":\"FeatureCollection\",\"features\":{}}");
        assertError("feature 1: missing geometry", "{\"type\":\"FeatureCollection\",\"features\":[" + good
                + ",{\"type\":\"Feature\",\"properties\":" + detection + "}]}");
        assertError("feature 1: a feature must be a JSON object, not a string",
                "{\"type\":\"FeatureCollection\",\"features\":[" + good + ",\"x\"]}");
        assertError("feature 0: properties.objectType must be one of",
                collection(point, "{\"objectType\":\"PathDetectionObject\"}"));
        assertError("feature 0: geometry: unknown geometry type 'Circle'",
                collection("{\"type\":\"Circle\",\"coordinates\":[1,2]}", detection));
        assertError("feature 0: geometry: unknown geometry type 'GeometryCollection'",
                collection("{\"type\":\"GeometryCollection\",\"geometries\":[]}", detection));
        assertError("feature 0: geometry.coordinates: Polygon ring 0 is not closed (first point [0.0, 0.0] != last point [1.0, 1.0])",
                collection("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[0,1],[1,1]]]}", detection));
        assertError("feature 0: geometry.coordinates: Polygon ring 0 has 3 points; a closed ring needs at least 4",
                collection("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[0,0]]]}", detection));
        assertError("feature 0: geometry.coordinates[1]: coordinate a string (\"b\") is not a number",
                collection("{\"type\":\"LineString\",\"coordinates\":[[0,0],[1,\"b\"]]}", detection));
        assertError("feature 0: geometry.coordinates: a position must be [x, y], not an array",
                collection("{\"type\":\"Point\",\"coordinates\":[1]}", detection));
        assertError("feature 0: geometry.coordinates: LineString has 1 point; a line needs at least 2",
                collection("{\"type\":\"LineString\",\"coordinates\":[[0,0]]}", detection));
        assertError("feature 0: nucleusGeometry: has no type", "{\"type\":\"FeatureCollection\",\"features\":["
                + "{\"type\":\"Feature\",\"geometry\":" + point + ",\"nucleusGeometry\":{},"
                + "\"properties\":{\"objectType\":\"cell\"}}]}");
        assertError("feature 0: properties.measurements: 'Area': a string (\"big\") is not a number",
                collection(point, "{\"objectType\":\"detection\",\"measurements\":{\"Area\":\"big\"}}"));
        assertError("feature 0: properties.measurements must be an object of name: number, not an array",
                collection(point, "{\"objectType\":\"detection\",\"measurements\":[]}"));
        assertError("feature 0: properties.classification must be a string or an object with name/names and color, not a number (3)",
                collection(point, "{\"objectType\":\"detection\",\"classification\":3}"));
        assertError("feature 0: properties.classification.color must be [r, g, b] with integers 0-255, not [300,0,0]",
                collection(point, "{\"objectType\":\"detection\",\"classification\":{\"name\":\"A\",\"color\":[300,0,0]}}"));
        assertError("feature 0: properties must be a JSON object, not an array", collection(point, "[]"));
    }

    @Test
    void fileErrorsNameTheFile() throws Exception {
        Path file = Files.createTempFile("bad", ".geojson");
        try {
            Files.writeString(file, "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\","
                    + "\"properties\":{\"objectType\":\"detection\"}}]}");
            CellBridgeException e = assertThrows(CellBridgeException.class, () -> GeoJsonObjects.read(file));
            assertEquals(file + ": feature 0: missing geometry", e.getMessage());
            Files.delete(file);
            e = assertThrows(CellBridgeException.class, () -> GeoJsonObjects.read(file));
            assertTrue(e.getMessage().startsWith(file + ": cannot read"), e.getMessage());
        } finally {
            Files.deleteIfExists(file);
        }
    }

    @Test
    void writesGeometriesThatReadBackEqual() throws Exception {
        WKTReader wkt = new WKTReader();
        for (String text : List.of("POINT (1.5 2)", "MULTIPOINT ((0 0), (1 2))", "LINESTRING (0 0, 10 5.25, 3 3)",
                "MULTILINESTRING ((0 0, 1 1), (2 2, 3 4))",
                "POLYGON ((0 0, 100 0, 100 100, 0 100, 0 0), (10 10, 20 10, 20 20, 10 10))",
                "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))", "POLYGON EMPTY")) {
            Geometry geometry = wkt.read(text);
            JsonObject json = GeoJsonObjects.toGeoJson(geometry);
            Geometry back = GeoJsonObjects.parse(collection(json.toString(), "{\"objectType\":\"detection\"}"))
                    .get(0).geometry();
            assertTrue(geometry.equalsExact(back), text + " -> " + json + " -> " + back);
        }
        JsonObject polygon = GeoJsonObjects.toGeoJson(wkt.read("POLYGON ((0 0, 2 0, 2 2.5, 0 0))"));
        assertEquals("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[2,0],[2,2.5],[0,0]]]}", polygon.toString());
        assertEquals("{\"type\":\"GeometryCollection\",\"geometries\":[{\"type\":\"Point\",\"coordinates\":[1,1]},"
                        + "{\"type\":\"LineString\",\"coordinates\":[[0,0],[1,1.5]]}]}",
                GeoJsonObjects.toGeoJson(wkt.read("GEOMETRYCOLLECTION (POINT (1 1), LINESTRING (0 0, 1 1.5))")).toString());
        LinearRing ring = FACTORY.createLinearRing(new Coordinate[]{
                new Coordinate(0, 0), new Coordinate(1, 0), new Coordinate(1, 1), new Coordinate(0, 0)});
        assertEquals("LineString", GeoJsonObjects.toGeoJson(ring).get("type").getAsString());
    }

    private static String feature(String geometry, String properties) {
        return "{\"type\":\"Feature\",\"geometry\":" + geometry + ",\"properties\":" + properties + "}";
    }

    private static String collection(String geometry, String properties) {
        return "{\"type\":\"FeatureCollection\",\"features\":[" + feature(geometry, properties) + "]}";
    }

    private static void assertError(String expected, String json) {
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> GeoJsonObjects.parse(json));
        assertTrue(e.getMessage().startsWith(expected) || e.getMessage().contains(expected),
                "expected '" + expected + "' in '" + e.getMessage() + "'");
    }
}
