package qupath.ext.cellbridge.scripting;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.io.TempDir;
import qupath.ext.cellbridge.CellBridge;
import qupath.ext.cellbridge.QuPathFixtures;
import qupath.ext.cellbridge.bridge.CountsRow;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServer;
import qupath.lib.images.servers.ImageServers;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.objects.classes.PathClass;
import qupath.lib.objects.hierarchy.PathObjectHierarchy;
import qupath.lib.projects.Project;
import qupath.lib.projects.ProjectIO;
import qupath.lib.projects.ProjectImageEntry;
import qupath.lib.projects.Projects;
import qupath.lib.roi.ROIs;

import java.awt.image.BufferedImage;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link ProjectBatch} over two real QuPath projects made with {@link Projects#createProject}: every image is run,
 * saved into its entry and marked done; a second run skips them all and leaves their data as it was.
 */
@Tag("e2e")
@EnabledIfEnvironmentVariable(named = "CELLBRIDGE_PYTHON", matches = ".+", disabledReason = QuPathFixtures.NO_PYTHON)
class ProjectBatchTest {

    @TempDir
    Path dir;

    private File project(String name, Map<Path, Boolean> images) throws Exception {
        File folder = dir.resolve(name).toFile();
        assertTrue(folder.mkdirs());
        Project<BufferedImage> project = Projects.createProject(folder, BufferedImage.class);
        for (Map.Entry<Path, Boolean> image : images.entrySet()) {
            ImageServer<BufferedImage> server = ImageServers.buildServer(image.getKey().toUri());
            try {
                ProjectImageEntry<BufferedImage> entry = project.addImage(server.getBuilder());
                entry.setImageName(image.getKey().getFileName().toString());
                if (image.getValue()) {   // a user annotation: the run goes under it
                    ImageData<BufferedImage> data = entry.readImageData();
                    data.getHierarchy().addObject(PathObjects.createAnnotationObject(
                            ROIs.createRectangleROI(32, 32, 256, 256), PathClass.fromString("Region")));
                    entry.saveImageData(data);
                    data.getServer().close();
                }
            } finally {
                server.close();
            }
        }
        project.syncChanges();
        return new File(folder, ProjectIO.DEFAULT_PROJECT_NAME + ProjectIO.getProjectExtension(true));
    }

    @Test
    void runsSavesAndMarksEveryImageThenSkipsThemOnTheNextRun() throws Exception {
        Path a = QuPathFixtures.slide(dir, "a", "--size", "384x384", "--tissue-fraction", "0.6", "--seed", "5");
        Path b = QuPathFixtures.slide(dir, "b", "--size", "384x384", "--tissue-fraction", "0.6", "--seed", "6");
        Path c = QuPathFixtures.slide(dir, "c", "--size", "320x320", "--tissue-fraction", "0.6", "--seed", "8");
        Map<Path, Boolean> images = new LinkedHashMap<>();
        images.put(a, true);
        images.put(b, false);
        File p1 = project("p1", images);
        File p2 = project("p2", Map.of(c, false));
        CellBridge cellbridge = CellBridge.builder("nuclei-he").client(QuPathFixtures.client()).device("cpu")
                .cellExpansion(2.0).build();
        Path csv = dir.resolve("counts.csv");

        List<CountsRow> first = ProjectBatch.runProjects(cellbridge, List.of(p1.toString(),
                p2.getParent()), csv.toString());

        assertEquals(List.of("done", "done", "done"), first.stream().map(CountsRow::status).toList(),
                first.toString());
        String signature = cellbridge.signature();
        List<Path> data = new ArrayList<>();
        for (File file : List.of(p1, p2)) {
            Project<BufferedImage> reloaded = ProjectIO.loadProject(file, BufferedImage.class);
            for (ProjectImageEntry<BufferedImage> entry : reloaded.getImageList()) {
                CountsRow row = first.stream().filter(r -> r.imageId().equals(entry.getID())
                        && r.project().equals(file.getParentFile().getName())).findFirst().orElseThrow();
                assertEquals(signature, entry.getMetadata().get(ProjectBatch.SIGNATURE_KEY));
                PathObjectHierarchy hierarchy = entry.readHierarchy();
                assertTrue(row.objects() > 10, row.toString());
                assertEquals(row.objects(), hierarchy.getCellObjects().size(), "saved: " + entry.getImageName());
                assertEquals(row.counts(), CellBridge.countClasses(hierarchy.getCellObjects()));
                List<PathObject> annotations = List.copyOf(hierarchy.getAnnotationObjects());
                if (entry.getImageName().equals("a.tif")) {
                    assertEquals(1, annotations.size(), "the user's annotation stays");
                    assertEquals(row.objects(), annotations.get(0).getChildObjects().size(), "under the annotation");
                } else {
                    assertTrue(annotations.isEmpty());
                    assertEquals(row.objects(), hierarchy.getRootObject().getChildObjects().size(), "whole image");
                }
                data.add(entry.getEntryPath().resolve("data.qpdata"));
            }
        }
        List<String> lines = Files.readAllLines(csv);
        assertTrue(lines.get(0).startsWith("project,image,image_id,status,objects,model,signature,seconds,error,"),
                lines.get(0));
        assertEquals(4, lines.size(), "one row per image, written by the server: " + lines);
        assertTrue(lines.stream().skip(1).allMatch(l -> l.contains(",done,") && l.contains("," + signature + ",")),
                lines.toString());
        List<FileTime> written = new ArrayList<>();
        for (Path file : data)
            written.add(Files.getLastModifiedTime(file));

        List<CountsRow> second = ProjectBatch.runProjects(cellbridge, List.of(p1.toString(),
                p2.toString()), csv.toString());

        assertEquals(List.of("skipped", "skipped", "skipped"), second.stream().map(CountsRow::status).toList());
        for (int i = 0; i < 3; i++) {
            assertEquals(first.get(i).imageId(), second.get(i).imageId());
            assertEquals(first.get(i).counts(), second.get(i).counts(), "counts read back from the saved data");
            assertEquals(written.get(i), Files.getLastModifiedTime(data.get(i)), "not written again");
        }
        lines = Files.readAllLines(csv);
        assertEquals(4, lines.size(), lines.toString());
        assertTrue(lines.stream().skip(1).allMatch(l -> l.contains(",skipped,")), lines.toString());
    }
}
