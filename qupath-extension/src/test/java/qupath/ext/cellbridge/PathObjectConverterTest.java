package qupath.ext.cellbridge;

import org.junit.jupiter.api.Test;
import qupath.ext.cellbridge.bridge.DetectedObject;
import qupath.ext.cellbridge.bridge.GeoJsonObjects;
import qupath.lib.io.PathIO;
import qupath.lib.objects.PathCellObject;
import qupath.lib.objects.PathObject;
import qupath.lib.regions.ImagePlane;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The bridge's objects, converted to QuPath objects, equal what QuPath's own GeoJSON reader makes of the same
 * QuPath-written file: types, classes (derived ones too), ROIs, nucleus ROIs, measurements and IDs.
 */
class PathObjectConverterTest {

    private static Path fixture(String name) {
        String repo = System.getProperty("cellbridge.repo", "");
        Path file = Path.of(repo).resolve("tests/fixtures/qupath_geojson").resolve(name);
        assertTrue(Files.isRegularFile(file), file + " (set -Dcellbridge.repo)");
        return file;
    }

    private static Map<String, Double> measurements(PathObject object) {
        Map<String, Double> map = new LinkedHashMap<>();
        for (String name : object.getMeasurementList().getNames())
            map.put(name, object.getMeasurementList().get(name));
        return map;
    }

    @Test
    void convertedObjectsMatchQuPathsOwnReader() throws Exception {
        Path file = fixture("qupath_written_detections.geojson");
        List<DetectedObject> bridged = GeoJsonObjects.read(file);
        List<PathObject> ours = PathObjectConverter.toPathObjects(bridged, ImagePlane.getDefaultPlane());
        List<PathObject> qupath = PathIO.readObjects(file);
        assertEquals(qupath.size(), ours.size());
        int derived = 0;
        int cells = 0;
        for (int i = 0; i < ours.size(); i++) {
            PathObject a = ours.get(i);
            PathObject b = qupath.get(i);
            String where = "object " + i + " (" + b + ")";
            assertEquals(b.getPathClass(), a.getPathClass(), where);
            assertEquals(b.getID(), a.getID(), where);
            if (!b.isDetection())
                continue;   // a TMA core (an ellipse in QuPath) becomes a polygon detection: the server sends none
            assertEquals(b.getROI().getArea(), a.getROI().getArea(), 1e-9, where);
            assertEquals(b.getROI().getCentroidX(), a.getROI().getCentroidX(), 1e-9, where);
            if (!b.isTile()) {
                assertEquals(b.isCell(), a.isCell(), where);
                assertEquals(measurements(b), measurements(a), where);
            }
            if (b instanceof PathCellObject cb && cb.getNucleusROI() != null) {
                cells++;
                assertEquals(cb.getNucleusROI().getArea(), ((PathCellObject) a).getNucleusROI().getArea(), 1e-9);
            }
            if (b.getPathClass() != null && b.getPathClass().isDerivedClass()) {
                derived++;
                assertEquals(b.getPathClass().getParentClass(), a.getPathClass().getParentClass(), where);
            }
        }
        assertEquals(2, derived, "Tumor: Positive and Stroma: Negative");
        assertEquals(2, cells, "cells with a nucleus");
    }

    @Test
    void blankClassIsUnclassifiedAndDerivedNamesSplitIntoParentAndName() {
        assertNull(PathObjectConverter.pathClass(" ", 0xFF0000));
        var tumorPositive = PathObjectConverter.pathClass("Tumor: Positive", 0x00FF00);
        assertTrue(tumorPositive.isDerivedClass());
        assertEquals("Tumor", tumorPositive.getParentClass().getName());
        assertEquals("Positive", tumorPositive.getName());
    }
}
