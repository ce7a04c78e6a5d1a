package qupath.ext.cellbridge;

import qupath.ext.cellbridge.bridge.DetectedObject;
import qupath.lib.common.ColorTools;
import qupath.lib.measurements.MeasurementList;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.objects.classes.PathClass;
import qupath.lib.regions.ImagePlane;
import qupath.lib.roi.GeometryTools;
import qupath.lib.roi.interfaces.ROI;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * {@link DetectedObject}s (JTS geometry, from the server's QuPath GeoJSON) to QuPath {@link PathObject}s:
 * detections, or cells with their nucleus; the classification with its colour; every measurement; the object's
 * UUID when it has one. Annotations and other types in the input become detections (the server sends only
 * detections and cells).
 */
public final class PathObjectConverter {

    private PathObjectConverter() {
    }

    /**
     * @param objects objects in level-0 pixel coordinates
     * @param plane the z-slice and time point they belong to
     * @return the QuPath objects, in the same order
     */
    public static List<PathObject> toPathObjects(Collection<DetectedObject> objects, ImagePlane plane) {
        List<PathObject> result = new ArrayList<>(objects.size());
        for (DetectedObject object : objects)
            result.add(toPathObject(object, plane));
        return result;
    }

    /**
     * @param object an object in level-0 pixel coordinates
     * @param plane the z-slice and time point it belongs to
     * @return a detection, or a cell (with its nucleus ROI when it has one)
     */
    public static PathObject toPathObject(DetectedObject object, ImagePlane plane) {
        ROI roi = GeometryTools.geometryToROI(object.geometry(), plane);
        PathClass pathClass = pathClass(object.className(), object.color());
        PathObject pathObject;
        if (object.isCell()) {
            ROI nucleus = object.nucleusGeometry() == null ? null
                    : GeometryTools.geometryToROI(object.nucleusGeometry(), plane);
            pathObject = PathObjects.createCellObject(roi, nucleus, pathClass);
        } else {
            pathObject = PathObjects.createDetectionObject(roi, pathClass);
        }
        if (!object.measurements().isEmpty()) {
            try (MeasurementList measurements = pathObject.getMeasurementList()) {
                for (Map.Entry<String, Double> entry : object.measurements().entrySet())
                    measurements.put(entry.getKey(), entry.getValue());
            }
        }
        UUID id = uuid(object.id());
        if (id != null)
            pathObject.setID(id);
        return pathObject;
    }

    /**
     * @param name a class name, parts joined with ": " (e.g. "Tumor: Positive"), or null
     * @param rgb its colour as packed 0xRRGGBB, or null for QuPath's default colour
     * @return QuPath's class, or null for unclassified
     */
    public static PathClass pathClass(String name, Integer rgb) {
        if (name == null || name.isBlank())
            return null;
        Integer color = rgb == null ? null : ColorTools.packRGB((rgb >> 16) & 0xFF, (rgb >> 8) & 0xFF, rgb & 0xFF);
        return PathClass.fromString(name, color);
    }

    private static UUID uuid(String id) {
        if (id == null || id.length() != 36)
            return null;
        try {
            return UUID.fromString(id);
        } catch (IllegalArgumentException e) {
            return null;
        }
    }
}
