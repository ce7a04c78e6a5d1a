package qupath.ext.cellbridge;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.io.TempDir;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServer;
import qupath.lib.images.servers.ImageServers;
import qupath.lib.io.PathIO;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.objects.classes.PathClass;
import qupath.lib.projects.Project;
import qupath.lib.projects.ProjectImageEntry;
import qupath.lib.projects.Projects;
import qupath.lib.roi.ROIs;
import qupath.lib.roi.interfaces.ROI;

import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link TrainingData} on a real QuPath project: the annotations of an image are exported as COCO tiles by
 * {@code cellbridge export-coco}, and {@code cellbridge train} accepts them and writes a model package.
 */
@Tag("e2e")
@EnabledIfEnvironmentVariable(named = "CELLBRIDGE_PYTHON", matches = ".+", disabledReason = QuPathFixtures.NO_PYTHON)
class TrainingDataTest {

    @TempDir
    Path dir;

    @Test
    void projectAnnotationsBecomeCocoTilesThatTrainAModel() throws Exception {
        QuPathFixtures.client();   // the extension's configuration: the test Python
        Path folder = Files.createDirectories(dir.resolve("project"));
        Project<BufferedImage> project = Projects.createProject(folder.toFile(), BufferedImage.class);
        ROI area = ROIs.createRectangleROI(0, 0, 192, 256);
        Set<String> classes = new TreeSet<>();
        int nuclei = 0;
        List<ProjectImageEntry<BufferedImage>> entries = new ArrayList<>();
        for (String seed : List.of("9", "10")) {   // training needs two images
            Path tif = QuPathFixtures.slide(dir, "train" + seed, "--size", "256x256", "--tissue-fraction", "0.7",
                    "--seed", seed);
            ImageServer<BufferedImage> server = ImageServers.buildServer(tif.toUri());
            ProjectImageEntry<BufferedImage> entry = project.addImage(server.getBuilder());
            server.close();
            entries.add(entry);
            ImageData<BufferedImage> imageData = entry.readImageData();
            List<PathObject> labels = new ArrayList<>();
            labels.add(PathObjects.createAnnotationObject(area, PathClass.fromString("Training area")));
            for (PathObject nucleus : PathIO.readObjects(dir.resolve("train" + seed + ".geojson"))) {
                if (!area.contains(nucleus.getROI().getCentroidX(), nucleus.getROI().getCentroidY()))
                    continue;
                labels.add(PathObjects.createAnnotationObject(nucleus.getROI(), nucleus.getPathClass()));
                classes.add(nucleus.getPathClass().toString());
            }
            imageData.getHierarchy().addObjects(labels);
            entry.saveImageData(imageData);
            imageData.getServer().close();
            nuclei += labels.size() - 1;
        }
        project.syncChanges();
        assertTrue(nuclei > 20, "labelled nuclei: " + nuclei);

        List<String> output = new ArrayList<>();
        long start = System.nanoTime();
        Path model = TrainingData.train(project, "mini", TrainingData.Kind.NUCLEI, 1, dir.resolve("models"), "cpu",
                output::add, null);

        System.out.printf("TrainingData.train: %.1f s%n", (System.nanoTime() - start) / 1e9);
        Set<String> categories = new TreeSet<>();
        int labelled = 0;
        for (ProjectImageEntry<BufferedImage> entry : entries) {
            Path coco = dir.resolve("project/cellbridge/training").resolve(entry.getID()).resolve("annotations.json");
            JsonObject json = JsonParser.parseString(Files.readString(coco)).getAsJsonObject();
            json.getAsJsonArray("categories").forEach(c -> categories.add(c.getAsJsonObject().get("name")
                    .getAsString()));
            labelled += json.getAsJsonArray("annotations").size();
        }
        assertEquals(classes, categories);
        assertTrue(labelled >= nuclei, labelled + " COCO annotations for " + nuclei + " nuclei");

        assertEquals(dir.resolve("models/mini"), model);
        JsonObject packaged = JsonParser.parseString(Files.readString(model.resolve("model.json"))).getAsJsonObject();
        assertTrue(Files.isRegularFile(model.resolve("weights.pt")), String.join("\n", output));
        assertEquals("mini", packaged.get("name").getAsString());
        // one task vocabulary: the task training was asked for is the task of the model it packaged
        assertEquals(TrainingData.Kind.NUCLEI.cliTask(), packaged.get("task").getAsString());
        assertTrue(packaged.toString().contains("Immune cells"), packaged.toString());
    }
}
