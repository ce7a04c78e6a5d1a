package qupath.ext.cellbridge.bridge;

import org.junit.jupiter.api.Test;
import org.locationtech.jts.geom.Geometry;
import org.locationtech.jts.io.WKTReader;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TileGridTest {

    @Test
    void downsampleBringsTheImageToTheModelsPixelSizeButNeverUp() {
        assertEquals(2.0, TileGrid.readDownsample(0.5, 0.25));
        assertEquals(1.0, TileGrid.readDownsample(0.25, 0.5));
        assertEquals(1.0, TileGrid.readDownsample(null, 0.25));
        assertEquals(1.0, TileGrid.readDownsample(0.5, Double.NaN));
    }

    @Test
    void clipKeepsThePartInsideTheImage() {
        assertEquals(JobRequest.Region.of(0, 10, 95, 40), TileGrid.clip(-5.5, 10.2, 100, 39.5, 95, 200));
        assertThrows(CellBridgeException.class, () -> TileGrid.clip(100, 0, 10, 10, 100, 100));
    }

    @Test
    void tilesCoverTheRegionEdgeToEdge() {
        JobRequest.Region region = JobRequest.Region.of(10, 20, 5000, 3000);
        List<JobRequest.Region> tiles = TileGrid.cover(region, 2.0, 1024);
        assertEquals(3 * 2, tiles.size());
        assertEquals(JobRequest.Region.of(10, 20, 2048, 2048), tiles.get(0));
        assertEquals(JobRequest.Region.of(4106, 2068, 904, 952), tiles.get(5));
        long area = tiles.stream().mapToLong(t -> (long) t.width() * t.height()).sum();
        assertEquals(5000L * 3000, area);
    }

    @Test
    void hugeRegionsAreRefusedWithAHint() {
        JobRequest.Region region = JobRequest.Region.of(0, 0, 100_000, 80_000);
        TileGrid.checkSize(region, 16.0);
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> TileGrid.checkSize(region, 1.0));
        assertTrue(e.getMessage().contains("smaller annotations"), e.getMessage());
    }

    @Test
    void shiftMovesGeometriesAndObjects() throws Exception {
        Geometry square = new WKTReader().read("POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))");
        assertSame(square, TileGrid.shift(square, 0, 0));
        assertEquals(new WKTReader().read("POLYGON ((100 50, 110 50, 110 60, 100 60, 100 50))"),
                TileGrid.shift(square, 100, 50));
        DetectedObject cell = new DetectedObject("id", "cell", square, square.buffer(-2), "Tumor", 0xC80000,
                Map.of("Area", 100.0));
        DetectedObject moved = TileGrid.shift(cell, 5, 7);
        assertEquals(5 + 5.0, moved.geometry().getCentroid().getX(), 1e-9);
        assertEquals(7 + 5.0, moved.nucleusGeometry().getCentroid().getY(), 1e-9);
        assertEquals(cell.measurements(), moved.measurements());
        assertEquals("Tumor", moved.className());
    }
}
