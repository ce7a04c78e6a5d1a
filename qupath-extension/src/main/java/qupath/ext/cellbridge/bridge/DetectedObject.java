package qupath.ext.cellbridge.bridge;

import org.locationtech.jts.geom.Geometry;
import org.locationtech.jts.geom.Point;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * One object read from QuPath GeoJSON, in level-0 pixel coordinates, independent of QuPath's own classes.
 *
 * @param id the feature's id (a UUID for objects QuPath or CellBridge wrote), or null if it had none
 * @param objectType QuPath's object type: {@code detection}, {@code cell}, {@code annotation}, {@code tile}
 *                   or {@code tmaCore}
 * @param geometry the object's ROI (for a cell: the cell boundary)
 * @param nucleusGeometry the nucleus of a cell, or null
 * @param className the classification, parts joined with {@code ": "} (e.g. {@code "Tumor: Positive"}), or null
 * @param color the classification's colour as packed {@code 0xRRGGBB}, or null if it has none
 * @param measurements measurement name to value, in document order (unmodifiable; may hold NaN and infinities)
 */
public record DetectedObject(String id, String objectType, Geometry geometry, Geometry nucleusGeometry,
                             String className, Integer color, Map<String, Double> measurements) {

    /** Checks required fields and makes the measurements unmodifiable. */
    public DetectedObject {
        Objects.requireNonNull(objectType, "objectType");
        Objects.requireNonNull(geometry, "geometry");
        measurements = measurements == null ? Map.of()
                : Collections.unmodifiableMap(new LinkedHashMap<>(measurements));
    }

    /** @return true for a cell (which may carry a nucleus geometry) */
    public boolean isCell() {
        return "cell".equals(objectType);
    }

    /** @return the centroid of the nucleus for a cell that has one, else of the geometry */
    public Point centroid() {
        return (nucleusGeometry != null ? nucleusGeometry : geometry).getCentroid();
    }

    /**
     * @param name a measurement name
     * @return its value, or NaN if absent (QuPath's convention for a missing measurement)
     */
    public double measurement(String name) {
        Double value = measurements.get(name);
        return value == null ? Double.NaN : value;
    }
}
