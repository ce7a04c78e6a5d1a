package qupath.ext.cellbridge;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.CliProcess;
import qupath.ext.cellbridge.bridge.ImageFiles;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServerMetadata;
import qupath.lib.images.servers.PixelCalibration;
import qupath.lib.io.PathIO;
import qupath.lib.io.PathIO.GeoJsonExportOptions;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.hierarchy.PathObjectHierarchy;
import qupath.lib.projects.Project;
import qupath.lib.projects.ProjectImageEntry;
import qupath.lib.regions.ImagePlane;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.CancellationException;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;

/**
 * Training data from QuPath annotations and training a model, through the {@code cellbridge export-coco} and
 * {@code cellbridge train} commands: the image's annotations are written as QuPath GeoJSON, the Python side tiles
 * the annotated region of the image file and writes COCO JSON, and {@code train} turns COCO JSONs into a model
 * package (see the commands' help for the annotation conventions: "Training area" annotations mark the fully
 * annotated regions, classified points/polygons are the labels).
 */
public final class TrainingData {

    private static final Logger logger = LoggerFactory.getLogger(TrainingData.class);

    /** What "Train a model" can train. */
    public enum Kind {
        /** Nucleus segmentation (keypoint U-Net + watershed): a "nuclei" model. */
        NUCLEI("nuclei", "Nuclei (segmentation U-Net)"),
        /** Object detection (Faster R-CNN boxes): a "detect" model. */
        DETECTOR("detect", "Objects (box detector)");

        private final String cliTask;
        private final String label;

        Kind(String cliTask, String label) {
            this.cliTask = cliTask;
            this.label = label;
        }

        /** @return the {@code --task} of {@code cellbridge train} */
        public String cliTask() {
            return cliTask;
        }

        @Override
        public String toString() {
            return label;
        }
    }

    private TrainingData() {
    }

    /**
     * Export COCO training tiles of one image from its annotations.
     * @param imageData the image (it must be a file the Python side reads)
     * @param outDir the output folder (images/, annotations.json, objects.geojson)
     * @param lines told the command's output lines (may be null)
     * @param cancelled polled while it runs (may be null)
     * @return the COCO JSON file written
     * @throws CellBridgeException if the image is not a readable file, has no annotations, or the export fails
     */
    public static Path exportCoco(ImageData<BufferedImage> imageData, Path outDir, Consumer<String> lines,
                                  BooleanSupplier cancelled) {
        Path file = RequestPlanner.pythonReadableFile(imageData.getServer(), ImagePlane.getDefaultPlane())
                .orElseThrow(() -> new CellBridgeException(RequestPlanner.imageName(imageData.getServer())
                        + " is not a local file the Python side reads (" + String.join(" ",
                        ImageFiles.PYTHON_SUFFIXES.stream().sorted().toList()) + "); training tiles need one"));
        return exportCoco(file, imageData.getHierarchy(), outDir, lines, cancelled);
    }

    private static Path exportCoco(Path slide, PathObjectHierarchy hierarchy, Path outDir, Consumer<String> lines,
                                   BooleanSupplier cancelled) {
        Collection<PathObject> annotations = hierarchy.getAnnotationObjects();
        if (annotations.isEmpty())
            throw new CellBridgeException(slide.getFileName() + " has no annotations to train from");
        try {
            Files.createDirectories(outDir);
            Path objects = outDir.resolve("objects.geojson");
            PathIO.exportObjectsAsGeoJSON(objects, annotations, GeoJsonExportOptions.FEATURE_COLLECTION);
            CliProcess.run(CellBridgeServer.python(), List.of("export-coco", slide.toString(), objects.toString(),
                    outDir.toString()), lines, cancelled);
        } catch (IOException e) {
            throw new CellBridgeException("cannot write training data to " + outDir + ": " + e.getMessage(), e);
        }
        return outDir.resolve("annotations.json");
    }

    /**
     * Train a model from the annotations of every image of a project that has some (and is a file the Python side
     * reads): COCO tiles per image under {@code <project>/cellbridge/training/<entry ID>/}, then one training run.
     * @param project the project
     * @param name the model's name (and its folder's)
     * @param kind what to train
     * @param epochs training epochs
     * @param outParent the folder the model package is written into (as {@code outParent/name})
     * @param device the training device ("auto", "cpu", "cuda", ...)
     * @param lines told every output line (may be null)
     * @param cancelled polled while working (may be null)
     * @return the model package folder
     * @throws CellBridgeException if no image has usable annotations or a command fails
     */
    public static Path train(Project<BufferedImage> project, String name, Kind kind, int epochs, Path outParent,
                             String device, Consumer<String> lines, BooleanSupplier cancelled) {
        return train(project, name, kind, epochs, outParent, device, null, lines, cancelled);
    }

    /**
     * As {@link #train(Project, String, Kind, int, Path, String, Consumer, BooleanSupplier)}, fine-tuning nuclei from
     * the model {@code init} (a name or folder; null or blank: from scratch): the new model keeps its pixel size.
     */
    public static Path train(Project<BufferedImage> project, String name, Kind kind, int epochs, Path outParent,
                             String device, String init, Consumer<String> lines, BooleanSupplier cancelled) {
        if (name == null || !name.matches("[A-Za-z0-9][A-Za-z0-9._-]*"))
            throw new CellBridgeException("model name '" + name + "' must be letters, digits, '.', '_' or '-'");
        if (project.getPath() == null)
            throw new CellBridgeException("the project is not stored in a local folder");
        Consumer<String> say = lines == null ? line -> { } : lines;
        BooleanSupplier stop = cancelled == null ? () -> false : cancelled;
        Path base = project.getPath().getParent().resolve("cellbridge").resolve("training");
        List<String> data = new ArrayList<>();
        List<String> skipped = new ArrayList<>();
        Double mpp = null;
        for (ProjectImageEntry<BufferedImage> entry : project.getImageList()) {
            if (stop.getAsBoolean())
                throw new CancellationException("training cancelled");
            String image = entry.getImageName();
            Optional<Path> file = ImageFiles.pythonReadable(entry.getServerBuilder().getURIs());
            if (file.isEmpty()) {
                skipped.add(image + " (not a file the Python side reads)");
                continue;
            }
            PathObjectHierarchy hierarchy;
            try {
                hierarchy = entry.readHierarchy();
            } catch (IOException e) {
                skipped.add(image + " (cannot read its data: " + e.getMessage() + ")");
                continue;
            }
            if (hierarchy.getAnnotationObjects().isEmpty())
                continue;
            say.accept("Exporting training tiles of " + image);
            data.add(exportCoco(file.get(), hierarchy, base.resolve(entry.getID()), lines, stop).toString());
            if (mpp == null)
                mpp = pixelSize(entry);
        }
        if (!skipped.isEmpty())
            logger.warn("Images left out of training: {}", String.join("; ", skipped));
        if (data.isEmpty())
            throw new CellBridgeException("no image of the project has annotations to train from"
                    + (skipped.isEmpty() ? "" : " (left out: " + String.join("; ", skipped) + ")"));
        Path out = outParent.resolve(name);
        List<String> arguments = new ArrayList<>(List.of("train", "--task", kind.cliTask(), "--data"));
        arguments.addAll(data);
        arguments.addAll(List.of("--out", out.toString(), "--epochs", Integer.toString(epochs), "--name", name));
        if (device != null && !device.isBlank())
            arguments.addAll(List.of("--device", device.strip()));
        if (mpp != null)
            arguments.addAll(List.of("--mpp", String.format(Locale.ROOT, "%.6g", mpp)));
        if (kind == Kind.NUCLEI && init != null && !init.isBlank())
            arguments.addAll(List.of("--init", init.strip()));
        say.accept("Training " + name + " on " + data.size() + " image(s)");
        CliProcess.run(CellBridgeServer.python(), arguments, lines, stop);
        return out;
    }

    private static Double pixelSize(ProjectImageEntry<BufferedImage> entry) {
        Optional<ImageServerMetadata> metadata = entry.getServerBuilder().getMetadata();
        if (metadata.isEmpty())
            return null;
        PixelCalibration calibration = metadata.get().getPixelCalibration();
        return calibration.hasPixelSizeMicrons() ? calibration.getAveragedPixelSizeMicrons() : null;
    }
}
