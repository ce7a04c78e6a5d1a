package qupath.ext.cellbridge;

import ij.IJ;
import ij.ImagePlus;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.locationtech.jts.geom.Envelope;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.JobRequest;
import qupath.ext.cellbridge.bridge.ModelInfo;
import qupath.ext.cellbridge.bridge.RunSettings;
import qupath.ext.cellbridge.bridge.TileImage;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServers;
import qupath.lib.images.servers.WrappedBufferedImageServer;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.roi.ROIs;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link RequestPlanner} on real QuPath image servers: tiles read through QuPath, or the file for Python. */
class RequestPlannerTest {

    private static final ModelInfo MODEL = new ModelInfo("m", "nuclei", "unet", List.of(), 0.5, "1", null);

    @TempDir
    Path dir;

    /** R grows with x (every 16 px), G with y (every 4 px): any pixel says where it came from. */
    private static int pattern(int x, int y) {
        return ((x / 16) % 256) << 16 | ((y / 4) % 256) << 8 | 77;
    }

    private static BufferedImage patternImage(int width, int height) {
        BufferedImage image = new BufferedImage(width, height, BufferedImage.TYPE_INT_RGB);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                image.setRGB(x, y, pattern(x, y));
        return image;
    }

    @Test
    void anInMemoryImageIsSentAsTilesReadByQuPathAtTheModelsPixelSize() throws Exception {
        var server = new WrappedBufferedImageServer("pattern", patternImage(9000, 400));
        ImageData<BufferedImage> imageData = new ImageData<>(server, ImageData.ImageType.BRIGHTFIELD_H_E);
        PathObject annotation = PathObjects.createAnnotationObject(ROIs.createEllipseROI(100, 50, 8800, 300, null));
        imageData.getHierarchy().addObject(annotation);
        RunSettings settings = RunSettings.builder("m").pixelSize(0.25).build();   // model 0.5 µm: downsample 2

        RequestPlanner.PlannedJob job = RequestPlanner.plan(imageData, annotation, settings, MODEL, () -> false);

        JobRequest request = job.request();
        assertTrue(request.isTileBased());
        assertNull(request.imagePath());
        assertEquals(100.0, job.dx());
        assertEquals(50.0, job.dy());
        assertEquals(List.of(0, 4096, 8192), request.tiles().stream().map(TileImage::x).toList());
        assertEquals(List.of(4096, 4096, 608), request.tiles().stream().map(TileImage::width).toList());
        Envelope roi = request.roi().getEnvelopeInternal();
        assertEquals(0, roi.getMinX(), 1e-6, "the ROI is sent in region coordinates");
        assertEquals(8800, roi.getMaxX(), 1e-6);
        for (TileImage tile : request.tiles()) {
            assertEquals(2.0, tile.downsample());
            assertEquals(0, tile.y());
            assertEquals(300, tile.height());
            BufferedImage png = ImageIO.read(new ByteArrayInputStream(tile.png()));
            assertEquals(tile.width() / 2, png.getWidth(), 1);
            assertEquals(150, png.getHeight(), 1);
            for (int[] p : new int[][]{{0, 0}, {png.getWidth() / 2, 70}, {png.getWidth() - 3, 140}}) {
                int x = 100 + tile.x() + 2 * p[0];
                int y = 50 + tile.y() + 2 * p[1];
                int expected = pattern(x, y);
                int actual = png.getRGB(p[0], p[1]);
                for (int shift : new int[]{16, 8, 0})
                    assertEquals((expected >> shift) & 0xFF, (actual >> shift) & 0xFF, 2,
                            "pixel " + p[0] + "," + p[1] + " of tile " + tile.x() + " is level-0 " + x + "," + y);
            }
        }
    }

    @Test
    void aTiffPythonReadsIsSentByPathWithTheAnnotationAsRegion() throws Exception {
        Path tif = dir.resolve("pattern.tif");
        IJ.saveAsTiff(new ImagePlus("pattern", patternImage(600, 500)), tif.toString());
        var server = ImageServers.buildServer(tif.toUri());
        ImageData<BufferedImage> imageData = new ImageData<>(server, ImageData.ImageType.BRIGHTFIELD_H_E);
        PathObject annotation = PathObjects.createAnnotationObject(ROIs.createRectangleROI(500, 400, 300, 300));
        imageData.getHierarchy().addObject(annotation);

        RequestPlanner.PlannedJob job = RequestPlanner.plan(imageData, annotation,
                RunSettings.builder("m").build(), MODEL, null);

        assertEquals(tif.toRealPath(), Path.of(job.request().imagePath()).toRealPath());
        assertTrue(job.request().tiles().isEmpty());
        assertEquals(JobRequest.Region.of(500, 400, 100, 100), job.request().region(), "clipped to the image");
        assertEquals(0.0, job.dx());

        RequestPlanner.PlannedJob tiled = RequestPlanner.plan(imageData, imageData.getHierarchy().getRootObject(),
                RunSettings.builder("m").sendTiles(true).build(), MODEL, null);
        assertTrue(tiled.request().isTileBased());
        assertEquals(1, tiled.request().tiles().size());
        assertEquals(600, tiled.request().imageWidth());
        server.close();
    }

    @Test
    void aNonRgbImageIsRefusedWithItsName() {
        BufferedImage gray = new BufferedImage(64, 64, BufferedImage.TYPE_USHORT_GRAY);
        var server = new WrappedBufferedImageServer("fluorescence", gray);
        ImageData<BufferedImage> imageData = new ImageData<>(server, ImageData.ImageType.FLUORESCENCE);
        var e = assertThrows(CellBridgeException.class, () -> RequestPlanner.plan(imageData,
                imageData.getHierarchy().getRootObject(), RunSettings.builder("m").build(), MODEL, null));
        assertTrue(e.getMessage().contains("fluorescence is not an 8-bit RGB image"), e.getMessage());
    }
}
