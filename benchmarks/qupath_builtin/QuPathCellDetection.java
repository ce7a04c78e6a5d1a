import java.awt.Color;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;

import javax.imageio.ImageIO;

import qupath.imagej.detect.cells.PositiveCellDetection;
import qupath.imagej.detect.cells.WatershedCellDetection;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServerMetadata;
import qupath.lib.images.servers.WrappedBufferedImageServer;
import qupath.lib.io.PathIO;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.plugins.AbstractTileableDetectionPlugin;
import qupath.lib.plugins.CommandLineTaskRunner;
import qupath.lib.plugins.parameters.ParameterList;
import qupath.lib.regions.ImagePlane;
import qupath.lib.roi.ROIs;

/**
 * QuPath's own cell detection, headless, on every PNG of a folder: WatershedCellDetection (H&E, hematoxylin OD)
 * or PositiveCellDetection (H-DAB), each with the plugin's default parameters (in µm, for the given pixel size)
 * and QuPath's default stain vectors, over one annotation covering the whole image.
 *
 * usage: java -cp CLASSES:$QUPATH_RUNTIME_CP QuPathCellDetection IMAGES_DIR OUT_DIR PIXEL_SIZE_UM
 *            watershed|positive [NAMES_FILE]
 * Writes OUT_DIR/NAME.geojson (QuPath GeoJSON of the cells, nucleus outline included) per image, written to a
 * temporary file and renamed, and OUT_DIR/parameters.json (the parameters the plugin ran with).
 */
public class QuPathCellDetection {

    public static void main(String[] args) throws Exception {
        if (args.length < 4 || args.length > 5) {
            System.err.println("usage: QuPathCellDetection IMAGES_DIR OUT_DIR PIXEL_SIZE_UM watershed|positive [NAMES_FILE]");
            System.exit(2);
        }
        Path images = Path.of(args[0]);
        Path out = Path.of(args[1]);
        double pixelSize = Double.parseDouble(args[2]);
        boolean positive = switch (args[3]) {
            case "watershed" -> false;
            case "positive" -> true;
            default -> throw new IllegalArgumentException("detector must be watershed or positive, not " + args[3]);
        };
        List<Path> files = new ArrayList<>();
        if (args.length == 5) {
            for (String name : Files.readAllLines(Path.of(args[4]), StandardCharsets.UTF_8))
                if (!name.isBlank()) files.add(images.resolve(name.strip() + ".png"));
        } else {
            try (var listing = Files.list(images)) {
                listing.filter(p -> p.toString().endsWith(".png")).sorted().forEach(files::add);
            }
        }
        Files.createDirectories(out);
        String parametersUsed = null;
        for (Path file : files) {
            String name = file.getFileName().toString().replaceFirst("\\.png$", "");
            ImageData<BufferedImage> imageData = imageData(file, name, pixelSize, positive);
            AbstractTileableDetectionPlugin<BufferedImage> plugin =
                    positive ? new PositiveCellDetection() : new WatershedCellDetection();
            ParameterList defaults = plugin.getDefaultParameterList(imageData);
            String arguments = ParameterList.convertToJson(defaults);
            PathObject whole = PathObjects.createAnnotationObject(ROIs.createRectangleROI(
                    0, 0, imageData.getServer().getWidth(), imageData.getServer().getHeight(), ImagePlane.getDefaultPlane()));
            imageData.getHierarchy().addObject(whole);
            imageData.getHierarchy().getSelectionModel().setSelectedObject(whole);
            if (!plugin.runPlugin(new CommandLineTaskRunner(1), imageData, arguments))
                throw new IllegalStateException(name + ": " + plugin.getName() + " did not run");
            List<PathObject> cells = new ArrayList<>(imageData.getHierarchy().getCellObjects());
            Path target = out.resolve(name + ".geojson");
            Path partial = out.resolve(name + ".geojson.part");
            PathIO.exportObjectsAsGeoJSON(partial, cells, PathIO.GeoJsonExportOptions.FEATURE_COLLECTION);
            Files.move(partial, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            System.out.println(name + "\t" + cells.size());
            parametersUsed = arguments;
        }
        if (parametersUsed != null)
            Files.writeString(out.resolve("parameters.json"), parametersUsed + "\n", StandardCharsets.UTF_8);
    }

    /** An RGB image (alpha composed over white) as QuPath image data, calibrated, typed H&E or H-DAB. */
    static ImageData<BufferedImage> imageData(Path file, String name, double pixelSize, boolean dab) throws IOException {
        BufferedImage read = ImageIO.read(file.toFile());
        if (read == null)
            throw new IOException(file + ": not an image ImageIO can read");
        BufferedImage rgb = new BufferedImage(read.getWidth(), read.getHeight(), BufferedImage.TYPE_INT_RGB);
        Graphics2D g = rgb.createGraphics();
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, rgb.getWidth(), rgb.getHeight());
        g.drawImage(read, 0, 0, null);
        g.dispose();
        var server = new WrappedBufferedImageServer(name, rgb);
        var imageData = new ImageData<>(server,
                dab ? ImageData.ImageType.BRIGHTFIELD_H_DAB : ImageData.ImageType.BRIGHTFIELD_H_E);
        imageData.updateServerMetadata(new ImageServerMetadata.Builder(server.getMetadata())
                .pixelSizeMicrons(pixelSize, pixelSize).build());
        return imageData;
    }
}
