package qupath.ext.cellbridge;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.io.TempDir;
import qupath.ext.cellbridge.bridge.CellBridgeClient;
import qupath.lib.images.ImageData;
import qupath.lib.io.PathIO;
import qupath.lib.objects.PathCellObject;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.objects.classes.PathClass;
import qupath.lib.objects.hierarchy.PathObjectHierarchy;
import qupath.lib.plugins.workflow.ScriptableWorkflowStep;
import qupath.lib.plugins.workflow.WorkflowStep;
import qupath.lib.roi.ROIs;
import qupath.lib.roi.interfaces.ROI;

import java.awt.image.BufferedImage;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * CellBridge runs with the real Python server into real QuPath hierarchies: objects land under the annotation they
 * were asked for, as cells with nucleus ROIs, classified and with QuPath-named measurements; path-based and
 * tile-based runs find the same nuclei; IHC runs put Positive % and H-score on the annotations.
 */
@Tag("e2e")
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@EnabledIfEnvironmentVariable(named = "CELLBRIDGE_PYTHON", matches = ".+", disabledReason = QuPathFixtures.NO_PYTHON)
class CellBridgeRunTest {

    private static final Set<PathClass> HE_CLASSES = Set.of(PathClass.fromString("Tumor"),
            PathClass.fromString("Immune cells"), PathClass.fromString("Stroma"));

    @TempDir
    static Path dir;

    private CellBridgeClient client;
    private Path slide;
    private Path ihcSlide;

    @BeforeAll
    void slides() {
        client = QuPathFixtures.client();
        slide = QuPathFixtures.slide(dir, "he", "--size", "512x512", "--tissue-fraction", "0.6", "--seed", "3");
        ihcSlide = QuPathFixtures.slide(dir, "ihc", "--size", "512x512", "--tissue-fraction", "0.7", "--seed", "12",
                "--stain", "ihc-dab");
    }

    private CellBridge.Builder nuclei() {
        return CellBridge.builder("nuclei-he").client(client).device("cpu");
    }

    @Test
    void cellsLandUnderTheRequestedAnnotationReplacingEarlierDetectionsThere() throws Exception {
        ImageData<BufferedImage> imageData = QuPathFixtures.open(slide);
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        PathObject annotation = PathObjects.createAnnotationObject(ROIs.createRectangleROI(64, 64, 384, 384),
                PathClass.fromString("Region"));
        PathObject other = PathObjects.createAnnotationObject(ROIs.createRectangleROI(460, 0, 52, 52));
        hierarchy.addObjects(List.of(annotation, other));
        PathObject earlier = PathObjects.createDetectionObject(ROIs.createRectangleROI(100, 100, 8, 8));
        PathObject elsewhere = PathObjects.createDetectionObject(ROIs.createRectangleROI(470, 10, 8, 8));
        hierarchy.insertPathObjects(List.of(earlier, elsewhere));
        assertSame(annotation, earlier.getParent());
        assertSame(other, elsewhere.getParent());

        CellBridge.Result result = nuclei().cellExpansion(2.0).build().detectObjects(imageData, List.of(annotation));

        List<PathObject> children = List.copyOf(annotation.getChildObjects());
        assertEquals(result.objects(), children.size());
        assertEquals(result.objects(), hierarchy.getCellObjects().size(), "every new object is a cell");
        assertFalse(hierarchy.getDetectionObjects().contains(earlier), "the earlier detection was replaced");
        assertSame(other, elsewhere.getParent(), "detections under other annotations stay");
        assertEquals(Set.of(elsewhere), Set.copyOf(other.getChildObjects()));

        // about as many as the true nuclei in the annotation
        ROI area = annotation.getROI();
        long truth = PathIO.readObjects(dir.resolve("he.geojson")).stream()
                .filter(o -> area.contains(o.getROI().getCentroidX(), o.getROI().getCentroidY())).count();
        assertTrue(truth > 30, "truth nuclei in the annotation: " + truth);
        assertTrue(Math.abs(children.size() - truth) <= 0.2 * truth, children.size() + " cells for " + truth
                + " true nuclei");

        Set<PathClass> classes = new TreeSet<>();
        for (PathObject child : children) {
            PathCellObject cell = (PathCellObject) child;
            ROI nucleus = cell.getNucleusROI();
            assertNotNull(nucleus, "cells carry their nucleus");
            assertTrue(nucleus.getArea() < cell.getROI().getArea(), "the cell is larger than its nucleus");
            assertTrue(cell.getROI().contains(nucleus.getCentroidX(), nucleus.getCentroidY()));
            assertTrue(area.contains(nucleus.getCentroidX(), nucleus.getCentroidY()), "inside the annotation");
            classes.add(cell.getPathClass());
            var measurements = cell.getMeasurementList();
            double nucleusArea = measurements.get("Nucleus: Area µm^2");
            assertEquals(nucleus.getArea() * 0.25, nucleusArea, 0.15 * nucleusArea, "nucleus area in µm²");
            assertTrue(measurements.get("Cell: Area µm^2") > nucleusArea);
            assertTrue(measurements.containsKey("Nucleus: Hematoxylin: Mean"), measurements.getNames().toString());
        }
        assertTrue(HE_CLASSES.containsAll(classes) && classes.size() >= 2, "classes " + classes);
        assertEquals(CellBridge.countClasses(children), result.classCounts());

        List<WorkflowStep> steps = imageData.getHistoryWorkflow().getSteps();
        String script = ((ScriptableWorkflowStep) steps.get(steps.size() - 1)).getScript();
        assertTrue(script.contains("cellExpansion(2.0") && script.endsWith(".detectObjects(getCurrentImageData())"),
                script);
    }

    @Test
    void tilesSentByQuPathGiveTheSameNucleiAsThePythonReadFile() throws Exception {
        ImageData<BufferedImage> viaFile = QuPathFixtures.open(slide);
        ImageData<BufferedImage> viaTiles = QuPathFixtures.open(slide);
        PathObject a = PathObjects.createAnnotationObject(ROIs.createEllipseROI(40, 40, 420, 420, null));
        PathObject b = PathObjects.createAnnotationObject(ROIs.createEllipseROI(40, 40, 420, 420, null));
        viaFile.getHierarchy().addObject(a);
        viaTiles.getHierarchy().addObject(b);

        nuclei().build().detectObjects(viaFile, List.of(a));
        nuclei().sendTiles(true).build().detectObjects(viaTiles, List.of(b));

        List<PathObject> fromFile = List.copyOf(a.getChildObjects());
        List<PathObject> fromTiles = List.copyOf(b.getChildObjects());
        assertTrue(fromFile.size() > 30, "nuclei: " + fromFile.size());
        assertTrue(fromFile.stream().noneMatch(PathObject::isCell), "no cell expansion: detections");
        int matched = 0;
        for (PathObject o : fromFile) {
            double x = o.getROI().getCentroidX();
            double y = o.getROI().getCentroidY();
            if (fromTiles.stream().anyMatch(t -> Math.hypot(t.getROI().getCentroidX() - x,
                    t.getROI().getCentroidY() - y) < 2))
                matched++;
        }
        assertTrue(matched >= 0.95 * fromFile.size() && Math.abs(fromFile.size() - fromTiles.size()) <= 2,
                matched + " of " + fromFile.size() + " file-based nuclei found by the tile-based run ("
                        + fromTiles.size() + ")");
    }

    @Test
    void ihcRunPutsPositivePercentAndHScoreOnEachAnnotation() throws Exception {
        ImageData<BufferedImage> imageData = QuPathFixtures.open(ihcSlide);
        PathObject left = PathObjects.createAnnotationObject(ROIs.createRectangleROI(0, 0, 256, 512));
        PathObject right = PathObjects.createAnnotationObject(ROIs.createRectangleROI(256, 0, 256, 512));
        imageData.getHierarchy().addObjects(List.of(left, right));

        nuclei().stain("ihc-dab").build().detectObjects(imageData, List.of(left, right));

        int positive = 0;
        int scored = 0;
        for (PathObject annotation : List.of(left, right)) {
            Map<String, Integer> counts = CellBridge.countClasses(annotation.getChildObjects());
            int neg = counts.getOrDefault("Negative", 0);
            int[] grade = {counts.getOrDefault("1+", 0), counts.getOrDefault("2+", 0), counts.getOrDefault("3+", 0)};
            int pos = grade[0] + grade[1] + grade[2];
            assertTrue(neg > 5 && pos > 5, "scored classes under the annotation: " + counts);
            var m = annotation.getMeasurementList();
            assertEquals(neg, m.get("Num Negative"));
            assertEquals(grade[1], m.get("Num 2+"));
            assertEquals(pos, m.get("Num Positive"));
            assertEquals(100.0 * pos / (pos + neg), m.get("Positive %"), 1e-9);
            assertEquals(100.0 * (grade[0] + 2 * grade[1] + 3 * grade[2]) / (pos + neg), m.get("H-score"), 1e-9);
            double mm2 = annotation.getROI().getArea() * 0.25 / 1e6;
            assertEquals(pos / mm2, m.get("Num Positive per mm^2"), 1e-6);
            positive += pos;
            scored += pos + neg;
        }
        // the slide's true positive fraction is 36.8 % (synth-slide --seed 12 at this size)
        assertEquals(36.8, 100.0 * positive / scored, 6.0);
    }
}
