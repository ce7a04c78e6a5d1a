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
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * QuPath GeoJSON ↔ {@link DetectedObject}s and JTS geometries, with Gson and JTS only (no QuPath classes).
 * <p>
 * Reading accepts what QuPath 0.6 writes and reads: a FeatureCollection, an array of features (nested arrays and
 * collections are flattened), a single Feature or a bare geometry (read as an annotation, as QuPath does); nested
 * {@code childObjects} follow their parent, depth first. Classifications may be {@code {"name", "color"}},
 * {@code {"names": [...], "color"}}, a plain string or the pre-0.4 {@code {"name", "colorRGB", "parentClass"}};
 * measurements a name → number map (with {@code "NaN"}, {@code "Infinity"} strings) or the old list of
 * {@code {"name", "value"}}. Any problem gives a {@link CellBridgeException} naming the feature, e.g.
 * {@code "feature 3: geometry: Polygon ring 0 is not closed ..."}.
 * <pre>{@code
 * List<DetectedObject> cells = GeoJsonObjects.parse(chunkJson);
 * JsonObject roi = GeoJsonObjects.toGeoJson(geometry);
 * }</pre>
 */
public final class GeoJsonObjects {

    private static final Logger logger = LoggerFactory.getLogger(GeoJsonObjects.class);

    private static final GeometryFactory DEFAULT_FACTORY = new GeometryFactory();

    private static final Map<String, String> OBJECT_TYPES = Map.ofEntries(
            Map.entry("annotation", "annotation"), Map.entry("PathAnnotationObject", "annotation"),
            Map.entry("unknown", "annotation"),
            Map.entry("detection", "detection"), Map.entry("PathDetectionObject", "detection"),
            Map.entry("cell", "cell"), Map.entry("PathCellObject", "cell"),
            Map.entry("tile", "tile"), Map.entry("PathTileObject", "tile"),
            Map.entry("tmaCore", "tmaCore"), Map.entry("tma_core", "tmaCore"), Map.entry("TMACoreObject", "tmaCore"));

    private static final Set<String> ROOT_TYPES = Set.of("root", "PathRootObject");

    private static final Set<String> LEGACY_TYPE_IDS = Set.of("PathAnnotationObject", "PathDetectionObject",
            "PathCellObject", "PathTileObject", "TMACoreObject", "PathRootObject");

    private static final List<String> GEOMETRY_TYPES = List.of("Point", "MultiPoint", "LineString",
            "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection");

    private GeoJsonObjects() {
    }

    /**
     * Objects from GeoJSON text, using a default JTS {@link GeometryFactory}.
     * @param json a FeatureCollection, an array of features, a Feature or a geometry
     * @return the objects in document order
     * @throws CellBridgeException naming the feature and the problem
     */
    public static List<DetectedObject> parse(String json) {
        return parse(json, DEFAULT_FACTORY);
    }

    /**
     * Objects from GeoJSON text.
     * @param json a FeatureCollection, an array of features, a Feature or a geometry
     * @param factory the factory for the geometries (e.g. QuPath's own)
     * @return the objects in document order
     * @throws CellBridgeException naming the feature and the problem
     */
    public static List<DetectedObject> parse(String json, GeometryFactory factory) {
        return fromJson(Json.parse(json, "GeoJSON"), factory, "");
    }

    /**
     * Objects from a GeoJSON file (UTF-8), using a default JTS {@link GeometryFactory}.
     * @param file a .geojson or .json file
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
        if (text.startsWith("\uFEFF"))
            text = text.substring(1);
        try {
            return fromJson(Json.parse(text, "GeoJSON"), DEFAULT_FACTORY, file + ": ");
        } catch (CellBridgeException e) {
            if (e.getMessage().startsWith(file.toString()))
                throw e;
            throw new CellBridgeException(file + ": " + e.getMessage(), e);
        }
    }

    /**
     * A JTS geometry from a GeoJSON geometry object.
     * @param geometry {@code {"type": "Polygon", "coordinates": [...]}} or any other GeoJSON geometry
     * @param factory the factory to build it with
     * @return the geometry (a third coordinate is dropped: objects are 2D)
     * @throws CellBridgeException naming the problem
     */
    public static Geometry toGeometry(JsonElement geometry, GeometryFactory factory) {
        return geometry(geometry, factory, "geometry");
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

    private static List<DetectedObject> fromJson(JsonElement data, GeometryFactory factory, String prefix) {
        List<JsonElement> items = new ArrayList<>();
        topLevelItems(data, prefix, items);
        List<DetectedObject> objects = new ArrayList<>();
        for (int i = 0; i < items.size(); i++) {
            JsonElement item = items.get(i);
            String label = prefix + "feature " + i;
            if (item.isJsonObject() && isGeometryType(typeOf(item.getAsJsonObject()))) {
                objects.add(new DetectedObject(null, "annotation", geometry(item, factory, label + ": geometry"),
                        null, null, null, Map.of()));
            } else {
                readFeature(item, factory, label, objects);
            }
        }
        return objects;
    }

    private static void topLevelItems(JsonElement data, String prefix, List<JsonElement> items) {
        if (data.isJsonArray()) {
            for (JsonElement item : data.getAsJsonArray()) {
                if (item.isJsonArray() || (item.isJsonObject()
                        && "FeatureCollection".equals(typeOf(item.getAsJsonObject()))))
                    topLevelItems(item, prefix, items);
                else
                    items.add(item);
            }
            return;
        }
        if (data.isJsonObject()) {
            JsonObject object = data.getAsJsonObject();
            String type = typeOf(object);
            if ("FeatureCollection".equals(type) || (type == null && object.has("features"))) {
                JsonElement features = object.get("features");
                if (Json.isMissing(features))
                    return;
                if (!features.isJsonArray())
                    throw new CellBridgeException(prefix + "FeatureCollection 'features' must be an array, not "
                            + Json.kind(features));
                features.getAsJsonArray().forEach(items::add);
                return;
            }
            if ("Feature".equals(type) || isGeometryType(type) || object.has("geometry")) {
                items.add(object);
                return;
            }
        }
        throw new CellBridgeException(prefix + "expected a GeoJSON FeatureCollection, Feature or array of features, not "
                + Json.kind(data));
    }

    private static void readFeature(JsonElement element, GeometryFactory factory, String label,
                                    List<DetectedObject> out) {
        if (!element.isJsonObject())
            throw new CellBridgeException(label + ": a feature must be a JSON object, not " + Json.kind(element));
        JsonObject feature = element.getAsJsonObject();
        JsonElement propsElement = feature.get("properties");
        if (!Json.isMissing(propsElement) && !propsElement.isJsonObject())
            throw new CellBridgeException(label + ": properties must be a JSON object, not " + Json.kind(propsElement));
        JsonObject props = Json.isMissing(propsElement) ? new JsonObject() : propsElement.getAsJsonObject();

        String id = Json.isString(feature.get("id")) ? feature.get("id").getAsString() : null;
        String legacyType = null;
        if (id != null && LEGACY_TYPE_IDS.contains(id)) {  // QuPath v0.2 put the type in "id"
            legacyType = id;
            id = null;
        }
        String typeName = typeName(props, label);
        if (typeName == null)
            typeName = legacyType;
        if (typeName != null && ROOT_TYPES.contains(typeName)) {  // an image's root: only its children are objects
            readChildren(props, factory, label, out);
            return;
        }
        String objectType = OBJECT_TYPES.get(typeName == null ? "annotation" : typeName);
        if (objectType == null) {
            logger.warn("{}: unknown objectType '{}'; reading it as an annotation, as QuPath does", label, typeName);
            objectType = "annotation";
        }
        if (!feature.has("geometry"))
            throw new CellBridgeException(label + ": missing geometry");
        Geometry geometry = geometry(feature.get("geometry"), factory, label + ": geometry");
        Geometry nucleus = null;
        if (!Json.isMissing(feature.get("nucleusGeometry")) && "cell".equals(objectType))
            nucleus = geometry(feature.get("nucleusGeometry"), factory, label + ": nucleusGeometry");

        JsonElement classification = props.get("classification");
        String where = label + ": properties.classification";
        out.add(new DetectedObject(id, objectType, geometry, nucleus, className(classification, where),
                classColor(classification, where),
                measurements(props.get("measurements"), label + ": properties.measurements")));
        readChildren(props, factory, label, out);
    }

    private static void readChildren(JsonObject props, GeometryFactory factory, String label,
                                     List<DetectedObject> out) {
        String key = props.has("childObjects") ? "childObjects" : "children";
        JsonElement children = props.get(key);
        if (children == null || !children.isJsonArray())
            return;
        JsonArray array = children.getAsJsonArray();
        for (int i = 0; i < array.size(); i++)
            readFeature(array.get(i), factory, label + ": properties." + key + "[" + i + "]", out);
    }

    private static boolean isGeometryType(String type) {
        return type != null && GEOMETRY_TYPES.contains(type);
    }

    private static String typeOf(JsonObject object) {
        JsonElement type = object.get("type");
        return Json.isString(type) ? type.getAsString() : null;
    }

    /** {@code objectType}, else the legacy {@code object_type}, else the alias {@code type}. */
    private static String typeName(JsonObject props, String label) {
        for (String key : List.of("objectType", "object_type", "type")) {
            JsonElement value = props.get(key);
            if (Json.isMissing(value))
                continue;
            if (!value.isJsonPrimitive())
                throw new CellBridgeException(label + ": properties." + key + " must be a string, not " + Json.kind(value));
            return value.getAsString();
        }
        return null;
    }

    // ---------------------------------------------------------------------------------------- geometry

    private static Geometry geometry(JsonElement element, GeometryFactory factory, String label) {
        if (element == null || !element.isJsonObject())
            throw new CellBridgeException(label + ": must be a GeoJSON geometry object, not " + Json.kind(element));
        JsonObject object = element.getAsJsonObject();
        String type = typeOf(object);
        if (!isGeometryType(type)) {
            String what = type == null ? "has no type" : "unknown geometry type '" + type + "'";
            throw new CellBridgeException(label + ": " + what + "; expected one of " + String.join(", ", GEOMETRY_TYPES));
        }
        if (type.equals("GeometryCollection")) {
            JsonElement parts = object.get("geometries");
            if (parts == null || !parts.isJsonArray())
                throw new CellBridgeException(label + ": GeometryCollection needs a 'geometries' array");
            JsonArray array = parts.getAsJsonArray();
            Geometry[] geometries = new Geometry[array.size()];
            for (int i = 0; i < geometries.length; i++)
                geometries[i] = geometry(array.get(i), factory, label + ".geometries[" + i + "]");
            return factory.createGeometryCollection(geometries);
        }
        if (!object.has("coordinates"))
            throw new CellBridgeException(label + ": " + type + " has no coordinates");
        JsonElement c = object.get("coordinates");
        String where = label + ".coordinates";
        switch (type) {
            case "Point": {
                if (c.isJsonArray() && c.getAsJsonArray().isEmpty())
                    return factory.createPoint();
                return factory.createPoint(position(c, where));
            }
            case "MultiPoint": {
                Coordinate[] points = positions(c, where);
                return factory.createMultiPointFromCoords(points);
            }
            case "LineString":
                return lineString(c, factory, where, "LineString");
            case "MultiLineString": {
                JsonArray lines = Json.array(c, where);
                LineString[] parts = new LineString[lines.size()];
                for (int i = 0; i < parts.length; i++)
                    parts[i] = lineString(lines.get(i), factory, where + "[" + i + "]", "MultiLineString part " + i);
                return factory.createMultiLineString(parts);
            }
            case "Polygon":
                return polygon(c, factory, where, "Polygon");
            default: {  // MultiPolygon
                JsonArray polygons = Json.array(c, where);
                List<Polygon> parts = new ArrayList<>();
                for (int i = 0; i < polygons.size(); i++) {
                    Polygon polygon = polygon(polygons.get(i), factory, where + "[" + i + "]", "MultiPolygon part " + i);
                    if (!polygon.isEmpty())  // an empty part adds nothing
                        parts.add(polygon);
                }
                return factory.createMultiPolygon(parts.toArray(Polygon[]::new));
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

    private static String className(JsonElement value, String where) {
        if (Json.isMissing(value))
            return null;
        if (Json.isString(value))
            return joinClass(splitClass(value.getAsString()), where);
        if (!value.isJsonObject())
            throw new CellBridgeException(where + " must be a string or an object with name/names and color, not "
                    + Json.kind(value));
        JsonObject object = value.getAsJsonObject();
        if (object.size() == 0)  // QuPath's serialized NULL_CLASS
            return null;
        if (object.has("colorRGB") || object.has("parentClass")) {  // before QuPath 0.4
            List<String> names = new ArrayList<>();
            JsonElement node = object;
            while (node != null && node.isJsonObject() && Json.isString(node.getAsJsonObject().get("name"))) {
                names.add(0, node.getAsJsonObject().get("name").getAsString());
                node = node.getAsJsonObject().get("parentClass");
            }
            return names.isEmpty() ? null : joinClass(names, where);
        }
        JsonElement name = object.get("name");
        if (!Json.isMissing(name)) {
            if (!Json.isString(name))
                throw new CellBridgeException(where + ".name must be a string, not " + Json.kind(name));
            return joinClass(splitClass(name.getAsString()), where);
        }
        JsonElement names = object.get("names");
        if (Json.isMissing(names))
            throw new CellBridgeException(where + " needs 'name' or 'names'");
        List<String> parts = new ArrayList<>();
        for (JsonElement part : Json.array(names, where + ".names")) {
            if (!Json.isString(part))
                throw new CellBridgeException(where + ".names must be an array of strings, not holding " + Json.kind(part));
            parts.add(part.getAsString());
        }
        return parts.isEmpty() ? null : joinClass(parts, where);
    }

    /** QuPath's {@code PathClass.fromString} split: on ':', dropping trailing empty parts. */
    private static List<String> splitClass(String text) {
        return List.of(text.split(":"));
    }

    private static String joinClass(List<String> names, String where) {
        List<String> parts = new ArrayList<>();
        for (String name : names) {
            String stripped = name.strip();
            if (stripped.isEmpty())
                throw new CellBridgeException(where + ": class name parts cannot be blank: " + names);
            if (stripped.contains(":") || stripped.contains("\n") || stripped.contains("\r"))
                throw new CellBridgeException(where + ": class name '" + stripped + "' contains ':' or a line break");
            parts.add(stripped);
        }
        return String.join(": ", parts);
    }

    private static Integer classColor(JsonElement value, String where) {
        if (value == null || !value.isJsonObject())
            return null;
        JsonObject object = value.getAsJsonObject();
        if (object.has("colorRGB") && !Json.isMissing(object.get("colorRGB"))) {
            JsonElement packed = object.get("colorRGB");
            if (!isInteger(packed))
                throw new CellBridgeException(where + ".colorRGB must be a packed RGB integer, not " + Json.kind(packed));
            return (int) packed.getAsLong() & 0xFFFFFF;
        }
        JsonElement color = object.get("color");
        if (Json.isMissing(color))
            return null;
        String message = where + ".color must be [r, g, b] with integers 0-255, not ";
        if (!color.isJsonArray())
            throw new CellBridgeException(message + Json.kind(color));
        JsonArray rgb = color.getAsJsonArray();
        for (JsonElement v : rgb)
            if (!isInteger(v))
                throw new CellBridgeException(message + "an array holding " + Json.kind(v));
        switch (rgb.size()) {
            case 0:
                return null;
            case 1:
                return (int) rgb.get(0).getAsLong() & 0xFFFFFF;
            case 3:
            case 4: {  // [r, g, b, alpha]: alpha dropped, as QuPath does
                int packed = 0;
                for (int i = 0; i < 3; i++) {
                    long c = rgb.get(i).getAsLong();
                    if (c < 0 || c > 255)
                        throw new CellBridgeException(message + rgb);
                    packed = (packed << 8) | (int) c;
                }
                return packed;
            }
            default:
                throw new CellBridgeException(message + rgb);
        }
    }

    private static boolean isInteger(JsonElement e) {
        if (!Json.isNumber(e))
            return false;
        double d = e.getAsDouble();
        return d == Math.rint(d) && Math.abs(d) <= 0xFFFFFFFFL;
    }

    private static Map<String, Double> measurements(JsonElement value, String where) {
        Map<String, Double> result = new LinkedHashMap<>();
        if (Json.isMissing(value))
            return result;
        if (value.isJsonArray()) {  // before QuPath 0.4: [{"name": ..., "value": ...}]
            JsonArray list = value.getAsJsonArray();
            for (int i = 0; i < list.size(); i++) {
                JsonElement entry = list.get(i);
                if (!entry.isJsonObject() || !entry.getAsJsonObject().has("name")
                        || Json.isMissing(entry.getAsJsonObject().get("value")))
                    throw new CellBridgeException(where + "[" + i + "] must be {\"name\": ..., \"value\": number}, not "
                            + Json.kind(entry));
                JsonObject e = entry.getAsJsonObject();
                String name = e.get("name").isJsonPrimitive() ? e.get("name").getAsString() : e.get("name").toString();
                result.put(name, number(e.get("value"), where + "[" + i + "].value"));
            }
            return result;
        }
        if (!value.isJsonObject()) {
            logger.warn("{}: {} ignored, as QuPath does; expected an object", where, Json.kind(value));
            return result;
        }
        for (Map.Entry<String, JsonElement> entry : value.getAsJsonObject().entrySet()) {
            JsonElement v = entry.getValue();
            if (v.isJsonNull() || !v.isJsonPrimitive() || v.getAsJsonPrimitive().isBoolean()) {
                logger.debug("{}: '{}' = {} is not a number; skipped, as QuPath does", where, entry.getKey(), Json.kind(v));
                continue;
            }
            result.put(entry.getKey(), number(v, where + ": '" + entry.getKey() + "'"));
        }
        return result;
    }

    /** A number, or a string QuPath/Python write for one: "NaN", "Infinity", "-Infinity", "nan", "inf", " 2.5 ". */
    private static double number(JsonElement v, String where) {
        if (Json.isNumber(v))
            return v.getAsDouble();
        if (Json.isString(v)) {
            String text = v.getAsString().strip();
            switch (text.toLowerCase(Locale.ROOT)) {
                case "nan": case "+nan": case "-nan":
                    return Double.NaN;
                case "inf": case "+inf": case "infinity": case "+infinity":
                    return Double.POSITIVE_INFINITY;
                case "-inf": case "-infinity":
                    return Double.NEGATIVE_INFINITY;
                default:
                    break;
            }
            if (!text.isEmpty() && text.chars().noneMatch(ch -> Character.isLetter(ch) && ch != 'e' && ch != 'E')) {
                try {
                    return Double.parseDouble(text);
                } catch (NumberFormatException e) {
                    // fall through to the error
                }
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
