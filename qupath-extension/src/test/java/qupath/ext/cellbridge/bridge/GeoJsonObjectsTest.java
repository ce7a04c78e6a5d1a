package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;
import org.locationtech.jts.geom.Coordinate;
import org.locationtech.jts.geom.Geometry;
import org.locationtech.jts.geom.GeometryFactory;
import org.locationtech.jts.geom.LinearRing;
import org.locationtech.jts.geom.Polygon;
import org.locationtech.jts.io.WKTReader;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class GeoJsonObjectsTest {

    @Test
    void readsQuPathDetectionsAndCells() {
        List<DetectedObject> objects = GeoJsonObjects.read(Fixtures.geojson("qupath_written_detections.geojson"));
        assertEquals(7, objects.size());
        assertEquals(List.of("detection", "cell", "cell", "cell", "tile", "tmaCore", "detection"),
                objects.stream().map(DetectedObject::objectType).toList());

        DetectedObject tumor = objects.get(0);
        assertEquals("aaaaaaaa-0000-4000-8000-000000000001", tumor.id());
        assertEquals("Tumor", tumor.className());
        assertEquals(0xC80000, tumor.color());
        assertEquals("Polygon", tumor.geometry().getGeometryType());
        assertEquals(6, tumor.geometry().getNumPoints());
        assertNull(tumor.nucleusGeometry());
        assertEquals(160.5, tumor.measurement("Area"));
        assertTrue(Double.isNaN(tumor.measurements().get("Hematoxylin OD mean")));
        assertEquals(Double.POSITIVE_INFINITY, tumor.measurement("Ratio"));
        assertEquals(Double.NEGATIVE_INFINITY, tumor.measurement("Delta"));
        assertEquals(List.of("Area", "Circularity", "Hematoxylin OD mean", "Ratio", "Delta", "Count"),
                List.copyOf(tumor.measurements().keySet()));

        DetectedObject cell = objects.get(1);
        assertTrue(cell.isCell());
        assertEquals("Tumor: Positive", cell.className());
        assertEquals(0xFF6464, cell.color());
        assertNotNull(cell.nucleusGeometry());
        assertTrue(cell.geometry().covers(cell.nucleusGeometry()));
        assertEquals(cell.nucleusGeometry().getCentroid(), cell.centroid());
        assertEquals(112.0, cell.measurement("Nucleus: Area"));

        DetectedObject stroma = objects.get(2);
        assertEquals("Stroma: Negative", stroma.className());
        assertEquals((152 << 16) | (178 << 8) | 28, stroma.color());
        assertTrue(Double.isNaN(stroma.measurement("Nucleus: Eosin OD")));
        assertEquals(100.0, stroma.nucleusGeometry().getArea(), 1e-9);

        assertNull(objects.get(3).nucleusGeometry(), "a cell without nucleus");
        assertNull(objects.get(3).className());
        assertNull(objects.get(3).color());
        assertEquals(0.5, objects.get(4).measurement("Tissue fraction"));
        assertTrue(objects.get(5).geometry().getNumPoints() > 50, "TMA core ellipse");
        assertNull(objects.get(6).color(), "an object's own colour is not a class colour");
        assertTrue(Double.isNaN(objects.get(6).measurement("absent")));
    }

    @Test
    void readsAnnotationsOfEveryGeometryType() {
        List<DetectedObject> objects = GeoJsonObjects.read(Fixtures.geojson("qupath_written_annotations.geojson"));
        assertEquals(List.of("Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString", "Polygon"),
                objects.stream().map(o -> o.geometry().getGeometryType()).toList());
        assertTrue(objects.stream().allMatch(o -> o.objectType().equals("annotation")));
        Polygon withHole = (Polygon) objects.get(0).geometry();
        assertEquals(1, withHole.getNumInteriorRing());
        assertEquals(2, objects.get(1).geometry().getNumGeometries());
        assertEquals("Stroma: Positive", objects.get(1).className());
        assertEquals(new Coordinate(1234.5, 987.25), objects.get(2).geometry().getCoordinate());
        assertEquals("Immune cells", objects.get(2).className());
        assertEquals(3, objects.get(3).geometry().getNumPoints());
        assertNull(objects.get(4).className());
        assertEquals(20000.0, objects.get(5).measurement("Area px"));
        assertEquals(20000.0, objects.get(5).geometry().getArea(), 1e-9);
    }

    @Test
    void flattensHierarchyDepthFirst() {
        List<DetectedObject> objects = GeoJsonObjects.read(Fixtures.geojson("qupath_written_hierarchy.geojson"));
        assertEquals(List.of("bbbbbbbb-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002",
                        "bbbbbbbb-0000-4000-8000-000000000003", "bbbbbbbb-0000-4000-8000-000000000004",
                        "bbbbbbbb-0000-4000-8000-000000000005"),
                objects.stream().map(DetectedObject::id).toList());
        assertEquals("Region*", objects.get(0).className());
        assertEquals(0x0000B4, objects.get(0).color());
        assertTrue(objects.get(2).isCell());
        assertNotNull(objects.get(2).nucleusGeometry());
    }

    @Test
    void readsLegacyForms() {
        for (String name : List.of("qupath_written_legacy.geojson", "handwritten_legacy.geojson")) {
            List<DetectedObject> objects = GeoJsonObjects.read(Fixtures.geojson(name));
            assertEquals(11, objects.size(), name);
            assertEquals(List.of("detection", "cell", "tile", "tmaCore", "annotation", "annotation", "detection",
                            "annotation", "detection", "annotation", "annotation"),
                    objects.stream().map(DetectedObject::objectType).toList(), name);
            assertEquals("Tumor", objects.get(0).className(), name);
            assertEquals(95.5, objects.get(0).measurement("Area"), name);
            assertTrue(Double.isNaN(objects.get(0).measurement("Mean")), name);
            assertEquals(7.0, objects.get(0).measurement("Max"), name);
            DetectedObject cell = objects.get(1);
            assertEquals("Tumor: Positive", cell.className(), name);
            assertEquals((250 << 16) | (60 << 8) | 60, cell.color(), name);
            assertNotNull(cell.nucleusGeometry(), name);
            assertTrue(Double.isNaN(cell.measurement("a")), name);
            assertEquals(Double.POSITIVE_INFINITY, cell.measurement("b"), name);
            assertEquals(Double.NEGATIVE_INFINITY, cell.measurement("c"), name);
            assertTrue(Double.isNaN(cell.measurement("e")), name);
            assertEquals(2.5, cell.measurement("f"), name);
            assertEquals(1000.0, cell.measurement("g"), name);
            assertFalse(cell.measurements().containsKey("skipped"), name);
            assertEquals(7, cell.measurements().size(), name);
            assertEquals(new Coordinate(5.5, 6.25), objects.get(4).geometry().getCoordinate(), name);
            assertEquals("Stroma: Positive", objects.get(6).className(), name);
            assertEquals("Immune cells: Negative", objects.get(8).className(), name);
            assertEquals((10 << 16) | (20 << 8) | 30, objects.get(8).color(), name);
            assertEquals("MultiPoint", objects.get(10).geometry().getGeometryType(), name);
        }
        DetectedObject packed = GeoJsonObjects.read(Fixtures.geojson("handwritten_legacy.geojson")).get(6);
        assertEquals(0xFF0000, packed.color(), "pre-0.4 colorRGB -65536");
    }

    @Test
    void acceptsSingleFeatureArrayAndBareGeometry() {
        String feature = "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]},"
                + "\"properties\":{\"objectType\":\"detection\",\"classification\":\"Tumor:Positive\"}}";
        List<DetectedObject> one = GeoJsonObjects.parse(feature);
        assertEquals(1, one.size());
        assertEquals("detection", one.get(0).objectType());
        assertEquals("Tumor: Positive", one.get(0).className());
        assertNull(one.get(0).id());
        assertEquals(2, GeoJsonObjects.parse("[" + feature + "," + feature + "]").size());
        List<DetectedObject> bare = GeoJsonObjects.parse("{\"type\":\"LineString\",\"coordinates\":[[0,0],[3,4]]}");
        assertEquals("annotation", bare.get(0).objectType());
        assertEquals(5.0, bare.get(0).geometry().getLength(), 1e-12);
        assertEquals(0, GeoJsonObjects.parse("{\"type\":\"FeatureCollection\",\"features\":[]}").size());
        Geometry collection = GeoJsonObjects.parse("{\"type\":\"GeometryCollection\",\"geometries\":["
                + "{\"type\":\"Point\",\"coordinates\":[1,2]},{\"type\":\"Polygon\",\"coordinates\":[]}]}").get(0).geometry();
        assertEquals(2, collection.getNumGeometries());
    }

    @Test
    void usesTheGivenGeometryFactory() {
        GeometryFactory factory = new GeometryFactory(new org.locationtech.jts.geom.PrecisionModel(100), 7);
        String json = "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1.234,2]}}";
        Geometry point = GeoJsonObjects.parse(json, factory).get(0).geometry();
        assertEquals(7, point.getSRID());
        assertEquals(factory, point.getFactory());
    }

    @Test
    void malformedInputNamesTheFeatureAndProblem() {
        String good = "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]}}";
        assertError("not valid JSON", "{\"type\": \"FeatureCollection\", \"features\": [");
        assertError("expected a GeoJSON FeatureCollection, Feature or array of features, not a number (42)", "42");
        assertError("FeatureCollection 'features' must be an array", "{\"type\":\"FeatureCollection\",\"features\":{}}");
        assertError("feature 1: missing geometry", "[" + good + ",{\"type\":\"Feature\",\"properties\":{}}]");
        assertError("feature 1: a feature must be a JSON object, not a string", "[" + good + ",\"x\"]");
        assertError("feature 0: geometry: unknown geometry type 'Circle'",
                "[{\"type\":\"Feature\",\"geometry\":{\"type\":\"Circle\",\"coordinates\":[1,2]}}]");
        assertError("feature 1: geometry.coordinates: Polygon ring 0 is not closed (first point [0.0, 0.0] != last point [1.0, 1.0])",
                "[" + good + ",{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":"
                        + "[[[0,0],[1,0],[0,1],[1,1]]]}}]");
        assertError("feature 0: geometry.coordinates: Polygon ring 0 has 3 points; a closed ring needs at least 4",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[0,0]]]}}");
        assertError("feature 0: geometry.coordinates[1]: coordinate a string (\"b\") is not a number",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"LineString\",\"coordinates\":[[0,0],[1,\"b\"]]}}");
        assertError("feature 0: geometry.coordinates: a position must be [x, y], not an array",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1]}}");
        assertError("feature 0: geometry.coordinates: LineString has 1 point; a line needs at least 2",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"LineString\",\"coordinates\":[[0,0]]}}");
        assertError("feature 0: nucleusGeometry: has no type",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]},\"nucleusGeometry\":{},"
                        + "\"properties\":{\"objectType\":\"cell\"}}");
        assertError("feature 0: properties.measurements: 'Area': a string (\"big\") is not a number",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]},"
                        + "\"properties\":{\"measurements\":{\"Area\":\"big\"}}}");
        assertError("feature 0: properties.classification must be a string or an object with name/names and color, not a number (3)",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]},"
                        + "\"properties\":{\"classification\":3}}");
        assertError("feature 0: properties.classification.color must be [r, g, b] with integers 0-255, not [300,0,0]",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]},"
                        + "\"properties\":{\"classification\":{\"name\":\"A\",\"color\":[300,0,0]}}}");
        assertError("feature 0: properties must be a JSON object, not an array",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]},\"properties\":[]}");
        assertError("feature 0: properties.childObjects[0]: missing geometry",
                "{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]},"
                        + "\"properties\":{\"childObjects\":[{\"type\":\"Feature\"}]}}");
    }

    @Test
    void fileErrorsNameTheFile() throws Exception {
        Path file = Files.createTempFile("bad", ".geojson");
        try {
            Files.writeString(file, "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\"}]}");
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
                "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))",
                "GEOMETRYCOLLECTION (POINT (1 1), LINESTRING (0 0, 1 1))", "POLYGON EMPTY")) {
            Geometry geometry = wkt.read(text);
            JsonObject json = GeoJsonObjects.toGeoJson(geometry);
            Geometry back = GeoJsonObjects.toGeometry(JsonParser.parseString(json.toString()), new GeometryFactory());
            assertTrue(geometry.equalsExact(back), text + " -> " + json + " -> " + back);
        }
        JsonObject polygon = GeoJsonObjects.toGeoJson(wkt.read("POLYGON ((0 0, 2 0, 2 2.5, 0 0))"));
        assertEquals("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[2,0],[2,2.5],[0,0]]]}", polygon.toString());
        LinearRing ring = new GeometryFactory().createLinearRing(new Coordinate[]{
                new Coordinate(0, 0), new Coordinate(1, 0), new Coordinate(1, 1), new Coordinate(0, 0)});
        assertEquals("LineString", GeoJsonObjects.toGeoJson(ring).get("type").getAsString());
    }

    private static void assertError(String expected, String json) {
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> GeoJsonObjects.parse(json));
        assertTrue(e.getMessage().startsWith(expected) || e.getMessage().contains(expected),
                "expected '" + expected + "' in '" + e.getMessage() + "'");
    }
}
