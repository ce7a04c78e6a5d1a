package qupath.ext.cellbridge;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import qupath.ext.cellbridge.bridge.CellBridgeClient;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.lib.io.GsonTools;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjectTools;
import qupath.lib.objects.PathObjects;
import qupath.lib.regions.ImagePlane;

import java.awt.geom.AffineTransform;
import java.util.ArrayList;
import java.util.List;

/**
 * The server's results as QuPath objects, read by QuPath's own GeoJSON reader ({@link GsonTools}): detections,
 * cells with their nucleus ROI, classifications (derived ones too) with their colours, measurements and the
 * objects' UUIDs, exactly as File &gt; Import objects from file would read them. What CellBridge adds: a chunk that
 * QuPath cannot read, or reads as fewer objects than it has features, is one {@link CellBridgeException} naming the
 * feature; every object is a detection (a region model's annotations too, so that a later run replaces them with
 * the other detections); and the objects are moved into the image's coordinates and onto its plane.
 */
public final class ResultObjects {

    /** Reads a result chunk with QuPath's reader (for {@link CellBridgeClient#collect}). */
    public static final CellBridgeClient.ChunkReader<PathObject> READER = ResultObjects::read;

    private ResultObjects() {
    }

    /**
     * @param chunk a QuPath GeoJSON FeatureCollection (one result chunk of the server)
     * @return its objects, in order
     * @throws CellBridgeException naming the feature and the problem when QuPath cannot read one
     */
    public static List<PathObject> read(String chunk) {
        JsonElement json;
        try {
            json = GsonTools.getInstance().fromJson(chunk, JsonElement.class);
        } catch (JsonParseException e) {
            throw new CellBridgeException("not JSON: " + describe(e));
        }
        JsonArray features = features(json);
        List<PathObject> objects = null;
        try {
            objects = GsonTools.parseObjectsFromGeoJSON(json);
        } catch (RuntimeException e) {
            // find the feature at fault below
        }
        if (objects == null || objects.size() != features.size()) {
            objects = new ArrayList<>(features.size());
            for (int i = 0; i < features.size(); i++)
                objects.add(feature(features.get(i), i));
        }
        return objects.stream().map(ResultObjects::asDetection).toList();
    }

    /** A detection as it is; anything else (a region's annotation) as a detection with its ROI, class, measurements
     * and ID. */
    private static PathObject asDetection(PathObject object) {
        if (object.isDetection())
            return object;
        PathObject detection = PathObjects.createDetectionObject(object.getROI(), object.getPathClass(),
                object.getMeasurementList());
        detection.setID(object.getID());
        return detection;
    }

    /**
     * Objects in the coordinates of a request region, moved to the image's.
     * @param objects objects as read (unchanged)
     * @param dx added to every x
     * @param dy added to every y
     * @param plane the image plane (z-slice, time point) they belong to
     * @return the moved objects, with the same types, classes, measurements and IDs, in order
     */
    public static List<PathObject> moved(List<PathObject> objects, double dx, double dy, ImagePlane plane) {
        boolean shift = dx != 0 || dy != 0;
        boolean replane = !ImagePlane.getDefaultPlane().equals(plane);
        if (!shift && !replane)
            return objects;
        AffineTransform translation = AffineTransform.getTranslateInstance(dx, dy);
        List<PathObject> moved = new ArrayList<>(objects.size());
        for (PathObject object : objects) {
            PathObject o = shift ? PathObjectTools.transformObject(object, translation, true, false) : object;
            moved.add(replane ? PathObjectTools.updatePlane(o, plane, true, false) : o);
        }
        return moved;
    }

    private static JsonArray features(JsonElement json) {
        if (json == null || !json.isJsonObject())
            throw new CellBridgeException("expected a GeoJSON FeatureCollection, not " + kind(json));
        JsonObject collection = json.getAsJsonObject();
        JsonElement type = collection.get("type");
        JsonElement features = collection.get("features");
        if (type == null || !type.isJsonPrimitive() || !"FeatureCollection".equals(type.getAsString()))
            throw new CellBridgeException("expected a GeoJSON FeatureCollection, not type " + type);
        if (features == null || !features.isJsonArray())
            throw new CellBridgeException("FeatureCollection 'features' must be an array, not " + kind(features));
        return features.getAsJsonArray();
    }

    /** One feature read alone, so that a failure names it. */
    private static PathObject feature(JsonElement feature, int index) {
        String label = "feature " + index;
        if (!feature.isJsonObject())
            throw new CellBridgeException(label + ": expected a GeoJSON Feature, not " + kind(feature));
        JsonElement geometry = feature.getAsJsonObject().get("geometry");
        JsonElement type = geometry != null && geometry.isJsonObject() ? geometry.getAsJsonObject().get("type") : null;
        if (type != null && type.isJsonPrimitive())
            label += " (" + type.getAsString() + ")";
        List<PathObject> objects;
        try {
            objects = GsonTools.parseObjectsFromGeoJSON(feature);
        } catch (RuntimeException e) {
            throw new CellBridgeException(label + ": QuPath cannot read it: " + describe(e));
        }
        if (objects.size() != 1)
            throw new CellBridgeException(label + ": QuPath reads it as " + objects.size() + " objects, not one");
        return objects.get(0);
    }

    private static String kind(JsonElement json) {
        if (json == null || json.isJsonNull())
            return "null";
        if (json.isJsonArray())
            return "an array";
        if (json.isJsonObject())
            return "an object";
        return "the value " + json;
    }

    private static String describe(Throwable e) {
        Throwable cause = e.getCause() != null && e.getMessage() != null
                && e.getMessage().equals(String.valueOf(e.getCause())) ? e.getCause() : e;
        String message = cause.getMessage();
        return cause.getClass().getSimpleName() + (message == null || message.isBlank() ? "" : ": " + message.strip());
    }
}
