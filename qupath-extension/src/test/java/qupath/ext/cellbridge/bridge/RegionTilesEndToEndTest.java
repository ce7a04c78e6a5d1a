package qupath.ext.cellbridge.bridge;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.locationtech.jts.geom.Geometry;
import org.locationtech.jts.geom.Point;
import org.locationtech.jts.io.WKTReader;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What the QuPath layer sends for an annotation of an image only QuPath can read: the annotation's bounds as tiles
 * in region coordinates ({@link TileGrid}), the ROI shifted there, the results shifted back. It must find the same
 * objects as the path-based job on the same region and ROI.
 */
@Tag("e2e")
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@EnabledIfEnvironmentVariable(named = "CELLBRIDGE_PYTHON", matches = ".+", disabledReason = "CELLBRIDGE_PYTHON is not "
        + "set: end-to-end tests need a Python with cellbridge installed")
class RegionTilesEndToEndTest {

    private static final String MODEL = System.getenv().getOrDefault("CELLBRIDGE_E2E_MODEL", "nuclei-he");

    @TempDir
    Path dir;

    @RegisterExtension
    static final RunningServer SERVER = new RunningServer();

    @Test
    void tilesInRegionCoordinatesFindTheSameObjectsAsThePath() throws Exception {
        Path slide = dir.resolve("slide.tif");
        Path png = dir.resolve("slide.png");
        python(List.of("-m", "cellbridge", "synth-slide", slide.toString(), "--size", "1024x1024",
                "--tissue-fraction", "0.6", "--seed", "11"));
        python(List.of("-c", "import sys, cv2\nfrom cellbridge.io.slides import open_slide\n"
                + "with open_slide(sys.argv[1]) as s:\n"
                + "    cv2.imwrite(sys.argv[2], cv2.cvtColor(s.read_region(0, 0, 1024, 1024), cv2.COLOR_RGB2BGR))\n",
                slide.toString(), png.toString()));
        BufferedImage image = ImageIO.read(png.toFile());
        Geometry roi = new WKTReader().read("POLYGON ((300 200, 820 260, 700 760, 260 700, 300 200))");
        RunSettings settings = RunSettings.builder(MODEL).device("cpu").build();
        CellBridgeClient client = SERVER.process().client();

        JobRequest.Region region = TileGrid.clip(roi.getEnvelopeInternal().getMinX(),
                roi.getEnvelopeInternal().getMinY(), roi.getEnvelopeInternal().getWidth(),
                roi.getEnvelopeInternal().getHeight(), 1024, 1024);
        List<DetectedObject> fromPath = client.run(settings.request("nuclei").imagePath(slide.toString())
                .pixelSize(0.5).region(region).roi(roi).build(), null, null);

        List<TileImage> tiles = new ArrayList<>();
        for (JobRequest.Region t : TileGrid.cover(region, 1.0, 200))
            tiles.add(TileImage.of(t.x() - region.x(), t.y() - region.y(), t.width(), t.height(), 1.0,
                    TileImage.encodePng(image.getSubimage(t.x(), t.y(), t.width(), t.height()))));
        JobRequest tileRequest = settings.request("nuclei").tiles(region.width(), region.height(), tiles)
                .pixelSize(0.5).roi(TileGrid.shift(roi, -region.x(), -region.y())).build();
        List<DetectedObject> fromTiles = new ArrayList<>();
        for (DetectedObject o : client.run(tileRequest, null, null))
            fromTiles.add(TileGrid.shift(o, region.x(), region.y()));

        String summary = fromTiles.size() + " objects from tiles, " + fromPath.size() + " from the path";
        assertTrue(fromPath.size() > 50, summary);
        assertEquals(fromPath.size(), fromTiles.size(), 2, summary);
        assertTrue(fromTiles.stream().allMatch(o -> roi.buffer(1).contains(o.centroid())), "results are back in place");
        int matched = 0;
        for (DetectedObject a : fromTiles) {
            Point c = a.centroid();
            if (fromPath.stream().anyMatch(b -> b.centroid().distance(c) < 1.0))
                matched++;
        }
        assertTrue(matched >= 0.98 * fromTiles.size(), summary + ", " + matched + " at the same place");
    }

    private void python(List<String> arguments) throws Exception {
        Fixtures.runPython(SERVER.python(), dir, arguments);
    }
}
