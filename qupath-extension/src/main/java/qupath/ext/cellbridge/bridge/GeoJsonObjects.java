package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import org.locationtech.jts.geom.Coordinate;
import org.locationtech.jts.geom.Geometry;
import org.locationtech.jts.geom.GeometryCollection;
import org.locationtech.jts.geom.GeometryFactory;
import org.locationtech.jts.geom.LineString;
import org.locationtech.jts.geom.LinearRing;
import org.locationtech.jts.geom.MultiLineString;
import org.locationtech.jts.geom.MultiPoint;
import org.locationtech.jts.geom.MultiPolygon;
import org.locationtech.jts.geom.Point;
import org.locationtech.jts.geom.Polygon;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * CellBridge's own QuPath GeoJSON ↔ {@link DetectedObject}s and JTS geometries, with Gson and JTS only, for clients
 * without QuPath (inside QuPath, results are read by QuPath's own reader: see {@code ResultObjects}).
 * <p>
 * Reads what CellBridge writes (the server's result chunks, the files of {@code cellbridge nuclei} and the other
 * commands; the format is fixed by {@code tests/fixtures/qupath_geojson/cellbridge_written.geojson}): a
 * FeatureCollection of Features with an {@code id}, a {@code geometry} (Point, MultiPoint, LineString,
 * MultiLineString, Polygon or MultiPolygon), a {@code nucleusGeometry} for cells, and {@code properties} with
 * {@code objectType}, {@code classification} (a string, or {@code {"name" | "names", "color": [r, g, b]}}) and
 * {@code measurements} (name → number, or {@code "NaN"}, {@code "Infinity"}, {@code "-Infinity"}). Other files
 * QuPath reads (legacy forms, nested child objects) are for QuPath's reader, and Python's
 * {@code cellbridge.io.qupath_geojson}. Any problem gives a {@link CellBridgeException} naming the feature, e.g.
 * {@code "feature 3: geometry.coordinates: Polygon ring 0 is not closed ..."}. Writes the geometry of a request's
 * ROI ({@link #toGeoJson}).
 * <pre>{@code
 * List<DetectedObject> cells = GeoJsonObjects.parse(chunkJson);
 * JsonObject roi = GeoJsonObjects.toGeoJson(geometry);
 * }</pre>
 */
public final class GeoJsonObjects {

    private static final GeometryFactory FACTORY = new GeometryFactory();

    private static final Set<String> OBJECT_TYPES = Set.of("annotation", "detection", "cell", "tile", "tmaCore");

    private static final List<String> GEOMETRY_TYPES = List.of("Point", "MultiPoint", "LineString",
            "MultiLineString", "Polygon", "MultiPolygon");

    private GeoJsonObjects() {
    }

    /**
     * Objects from GeoJSON text as CellBridge writes it.
     * @param json a FeatureCollection
     * @return the objects in document order
     * @throws CellBridgeException naming the feature and the problem
     */
    public static List<DetectedObject> parse(String json) {
        return fromJson(Json.parse(json, "GeoJSON"));
    }

    /**
     * Objects from a GeoJSON file (UTF-8) as CellBridge writes it.
     * @param file a .geojson file
     * @return the objects in document order
     * @throws CellBridgeException naming the file, the feature and the problem
     */
    public static List<DetectedObject> read(Path file) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new CellBridgeException(file + ": cannot read: " + e.getMessage(), e);
        }
        try {
            return parse(text);
        } catch (CellBridgeException e) {
            throw new CellBridgeException(file + ": " + e.getMessage(), e);
        }
    }

    /**
     * A GeoJSON geometry object for a JTS geometry (for a request's ROI).
     * @param geometry a Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon or collection
     * @return {@code {"type": ..., "coordinates": ...}} (or {@code "geometries"} for a collection)
     */
    public static JsonObject toGeoJson(Geometry geometry) {
        JsonObject result = new JsonObject();
        if (geometry instanceof GeometryCollection collection && !(geometry instanceof MultiPoint)
                && !(geometry instanceof MultiLineString) && !(geometry instanceof MultiPolygon)) {
            result.addProperty("type", "GeometryCollection");
            JsonArray parts = new JsonArray();
            for (int i = 0; i < collection.getNumGeometries(); i++)
                parts.add(toGeoJson(collection.getGeometryN(i)));
            result.add("geometries", parts);
            return result;
        }
        String type = geometry instanceof LinearRing ? "LineString" : geometry.getGeometryType();
        result.addProperty("type", type);
        result.add("coordinates", coordinates(geometry));
        return result;
    }

    // ------------------------------------------------------------------------------------------- reading

    private static List<DetectedObject> fromJson(JsonElement data) {
        if (!data.isJsonObject() || !"FeatureCollection".equals(typeOf(data.getAsJsonObject())))
            throw new CellBridgeException("expected a GeoJSON FeatureCollection, not " + Json.kind(data));
        JsonElement features = data.getAsJsonObject().get("features");
        if (features == null || !features.isJsonArray())
            throw new CellBridgeException("FeatureCollection 'features' must be an array, not " + Json.kind(features));
        JsonArray array = features.getAsJsonArray();
        List<DetectedObject> objects = new ArrayList<>(array.size());
        for (int i = 0; i < array.size(); i++)
            objects.add(feature(array.get(i), "feature " + i));
        return objects;
    }

    private static DetectedObject feature(JsonElement element, String label) {
        if (!element.isJsonObject())
            throw new CellBridgeException(label + ": a feature must be a JSON object, not " + Json.kind(element));
        JsonObject feature = element.getAsJsonObject();
        JsonElement propsElement = feature.get("properties");
        if (!Json.isMissing(propsElement) && !propsElement.isJsonObject())
            throw new CellBridgeException(label + ": properties must be a JSON object, not " + Json.kind(propsElement));
        JsonObject props = Json.isMissing(propsElement) ? new JsonObject() : propsElement.getAsJsonObject();
        String id = Json.isString(feature.get("id")) ? feature.get("id").getAsString() : null;
        JsonElement type = props.get("objectType");
        String objectType = Json.isString(type) ? type.getAsString() : null;
        if (objectType == null || !OBJECT_TYPES.contains(objectType))
            throw new CellBridgeException(label + ": properties.objectType must be one of " + OBJECT_TYPES + ", not "
                    + Json.kind(type));
        if (!feature.has("geometry"))
            throw new CellBridgeException(label + ": missing geometry");
        Geometry geometry = geometry(feature.get("geometry"), label + ": geometry");
        Geometry nucleus = Json.isMissing(feature.get("nucleusGeometry")) || !"cell".equals(objectType) ? null
                : geometry(feature.get("nucleusGeometry"), label + ": nucleusGeometry");
        JsonElement classification = props.get("classification");
        String where = label + ": properties.classification";
        return new DetectedObject(id, objectType, geometry, nucleus, className(classification, where),
                classColor(classification, where),
                measurements(props.get("measurements"), label + ": properties.measurements"));
    }

    private static String typeOf(JsonObject object) {
        JsonElement type = object.get("type");
        return Json.isString(type) ? type.getAsString() : null;
    }

    // ---------------------------------------------------------------------------------------- geometry

    private static Geometry geometry(JsonElement element, String label) {
        if (element == null || !element.isJsonObject())
            throw new CellBridgeException(label + ": must be a GeoJSON geometry object, not " + Json.kind(element));
        JsonObject object = element.getAsJsonObject();
        String type = typeOf(object);
        if (type == null || !GEOMETRY_TYPES.contains(type)) {
            String what = type == null ? "has no type" : "unknown geometry type '" + type + "'";
            throw new CellBridgeException(label + ": " + what + "; expected one of " + String.join(", ", GEOMETRY_TYPES));
        }
        if (!object.has("coordinates"))
            throw new CellBridgeException(label + ": " + type + " has no coordinates");
        JsonElement c = object.get("coordinates");
        String where = label + ".coordinates";
        switch (type) {
            case "Point": {
                if (c.isJsonArray() && c.getAsJsonArray().isEmpty())
                    return FACTORY.createPoint();
                return FACTORY.createPoint(position(c, where));
            }
            case "MultiPoint":
                return FACTORY.createMultiPointFromCoords(positions(c, where));
            case "LineString":
                return lineString(c, FACTORY, where, "LineString");
            case "MultiLineString": {
                JsonArray lines = Json.array(c, where);
                LineString[] parts = new LineString[lines.size()];
                for (int i = 0; i < parts.length; i++)
                    parts[i] = lineString(lines.get(i), FACTORY, where + "[" + i + "]", "MultiLineString part " + i);
                return FACTORY.createMultiLineString(parts);
            }
            case "Polygon":
                return polygon(c, FACTORY, where, "Polygon");
            default: {  // MultiPolygon
                JsonArray polygons = Json.array(c, where);
                Polygon[] parts = new Polygon[polygons.size()];
                for (int i = 0; i < parts.length; i++)
                    parts[i] = polygon(polygons.get(i), FACTORY, where + "[" + i + "]", "MultiPolygon part " + i);
                return FACTORY.createMultiPolygon(parts);
            }
        }
    }

    private static LineString lineString(JsonElement c, GeometryFactory factory, String where, String part) {
        Coordinate[] points = positions(c, where);
        if (points.length == 1)
            throw new CellBridgeException(where + ": " + part + " has 1 point; a line needs at least 2");
        return factory.createLineString(points);
    }

    private static Polygon polygon(JsonElement c, GeometryFactory factory, String where, String part) {
        JsonArray rings = Json.array(c, where);
        if (rings.isEmpty())
            return factory.createPolygon();
        LinearRing[] linearRings = new LinearRing[rings.size()];
        for (int r = 0; r < linearRings.length; r++) {
            Coordinate[] ring = positions(rings.get(r), where + "[" + r + "]");
            if (ring.length < 4)
                throw new CellBridgeException(where + ": " + part + " ring " + r + " has " + ring.length
                        + " points; a closed ring needs at least 4");
            if (!ring[0].equals2D(ring[ring.length - 1]))
                throw new CellBridgeException(where + ": " + part + " ring " + r + " is not closed (first point "
                        + xy(ring[0]) + " != last point " + xy(ring[ring.length - 1]) + ")");
            linearRings[r] = factory.createLinearRing(ring);
        }
        LinearRing[] holes = new LinearRing[linearRings.length - 1];
        System.arraycopy(linearRings, 1, holes, 0, holes.length);
        return factory.createPolygon(linearRings[0], holes);
    }

    private static Coordinate[] positions(JsonElement c, String where) {
        JsonArray array = Json.array(c, where);
        Coordinate[] result = new Coordinate[array.size()];
        for (int i = 0; i < result.length; i++)
            result[i] = position(array.get(i), where + "[" + i + "]");
        return result;
    }

    private static Coordinate position(JsonElement c, String where) {
        if (c == null || !c.isJsonArray() || c.getAsJsonArray().size() < 2)
            throw new CellBridgeException(where + ": a position must be [x, y], not " + Json.kind(c));
        JsonArray array = c.getAsJsonArray();
        double[] xy = new double[2];
        for (int i = 0; i < 2; i++) {
            JsonElement v = array.get(i);
            if (!Json.isNumber(v))
                throw new CellBridgeException(where + ": coordinate " + Json.kind(v) + " is not a number");
            xy[i] = v.getAsDouble();
            if (!Double.isFinite(xy[i]))
                throw new CellBridgeException(where + ": coordinate " + xy[i] + " is not finite");
        }
        return new Coordinate(xy[0], xy[1]);
    }

    private static String xy(Coordinate c) {
        return "[" + c.x + ", " + c.y + "]";
    }

    // -------------------------------------------------------------------------- classification, measurements

    /** A plain string (a class without a colour), or {"name": ..., "color"} / {"names": [...], "color"}. */
    private static String className(JsonElement value, String where) {
        if (Json.isMissing(value))
            return null;
        if (Json.isString(value))
            return value.getAsString();
        if (!value.isJsonObject())
            throw new CellBridgeException(where + " must be a string or an object with name/names and color, not "
                    + Json.kind(value));
        JsonObject object = value.getAsJsonObject();
        JsonElement name = object.get("name");
        if (Json.isString(name))
            return name.getAsString();
        JsonElement names = object.get("names");
        if (Json.isMissing(names))
            throw new CellBridgeException(where + " needs 'name' or 'names'");
        List<String> parts = new ArrayList<>();
        for (JsonElement part : Json.array(names, where + ".names")) {
            if (!Json.isString(part))
                throw new CellBridgeException(where + ".names must be an array of strings, not holding " + Json.kind(part));
            parts.add(part.getAsString());
        }
        return parts.isEmpty() ? null : String.join(": ", parts);
    }

    private static Integer classColor(JsonElement value, String where) {
        if (value == null || !value.isJsonObject() || Json.isMissing(value.getAsJsonObject().get("color")))
            return null;
        JsonElement color = value.getAsJsonObject().get("color");
        String message = where + ".color must be [r, g, b] with integers 0-255, not ";
        if (!color.isJsonArray() || color.getAsJsonArray().size() != 3)
            throw new CellBridgeException(message + Json.kind(color));
        int packed = 0;
        for (JsonElement v : color.getAsJsonArray()) {
            if (!Json.isNumber(v) || v.getAsDouble() != Math.rint(v.getAsDouble()) || v.getAsDouble() < 0
                    || v.getAsDouble() > 255)
                throw new CellBridgeException(message + color);
            packed = (packed << 8) | v.getAsInt();
        }
        return packed;
    }

    private static Map<String, Double> measurements(JsonElement value, String where) {
        Map<String, Double> result = new LinkedHashMap<>();
        if (Json.isMissing(value))
            return result;
        if (!value.isJsonObject())
            throw new CellBridgeException(where + " must be an object of name: number, not " + Json.kind(value));
        for (Map.Entry<String, JsonElement> entry : value.getAsJsonObject().entrySet())
            result.put(entry.getKey(), number(entry.getValue(), where + ": '" + entry.getKey() + "'"));
        return result;
    }

    /** A number, or the strings CellBridge writes for the others: "NaN", "Infinity", "-Infinity". */
    private static double number(JsonElement v, String where) {
        if (Json.isNumber(v))
            return v.getAsDouble();
        if (Json.isString(v)) {
            switch (v.getAsString()) {
                case "NaN":
                    return Double.NaN;
                case "Infinity":
                    return Double.POSITIVE_INFINITY;
                case "-Infinity":
                    return Double.NEGATIVE_INFINITY;
                default:
                    break;
            }
        }
        throw new CellBridgeException(where + ": " + Json.kind(v) + " is not a number");
    }

    // ----------------------------------------------------------------------------------------- writing

    private static JsonArray coordinates(Geometry geometry) {
        if (geometry instanceof Point point)
            return point.isEmpty() ? new JsonArray() : position(point.getCoordinate());
        if (geometry instanceof LineString line)
            return positions(line.getCoordinates());
        if (geometry instanceof Polygon polygon) {
            JsonArray rings = new JsonArray();
            if (polygon.isEmpty())
                return rings;
            rings.add(positions(polygon.getExteriorRing().getCoordinates()));
            for (int i = 0; i < polygon.getNumInteriorRing(); i++)
                rings.add(positions(polygon.getInteriorRingN(i).getCoordinates()));
            return rings;
        }
        if (geometry instanceof MultiPoint || geometry instanceof MultiLineString || geometry instanceof MultiPolygon) {
            JsonArray parts = new JsonArray();
            for (int i = 0; i < geometry.getNumGeometries(); i++)
                parts.add(coordinates(geometry.getGeometryN(i)));
            return parts;
        }
        throw new CellBridgeException("cannot write a " + geometry.getGeometryType() + " as GeoJSON");
    }

    private static JsonArray positions(Coordinate[] coordinates) {
        JsonArray array = new JsonArray();
        for (Coordinate c : coordinates)
            array.add(position(c));
        return array;
    }

    private static JsonArray position(Coordinate c) {
        JsonArray xy = new JsonArray();
        xy.add(plain(c.x));
        xy.add(plain(c.y));
        return xy;
    }

    /** Whole numbers as integers (as QuPath writes them), others as doubles. */
    private static JsonPrimitive plain(double value) {
        if (value == Math.rint(value) && Math.abs(value) < 1e15)
            return new JsonPrimitive((long) value);
        return new JsonPrimitive(value);
    }
}
