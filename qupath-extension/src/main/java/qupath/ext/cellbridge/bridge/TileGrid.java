package qupath.ext.cellbridge.bridge;

import org.locationtech.jts.geom.Geometry;
import org.locationtech.jts.geom.util.AffineTransformation;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Where QuPath reads the pixels of a tile-based job: the region clipped to the image, the downsample to read at,
 * and the tiles (level-0 rectangles, edge to edge) that cover it.
 * <p>
 * A tile-based job is sent in <em>region coordinates</em>: the region's top left corner is the origin and the
 * "image" is the region (the server assembles the whole image it is told about, so a small region of a large
 * slide must not be sent as that slide). {@link #shift} moves the ROI there and the results back.
 * <pre>{@code
 * double d = TileGrid.readDownsample(model.mpp(), imagePixelSize);
 * Region region = TileGrid.clip(x, y, w, h, imageWidth, imageHeight);
 * TileGrid.checkSize(region, d);
 * for (Region tile : TileGrid.cover(region, d, TileGrid.DEFAULT_TILE_PIXELS)) ...
 * }</pre>
 */
public final class TileGrid {

    /** Tile side in pixels at the read downsample. */
    public static final int DEFAULT_TILE_PIXELS = 2048;

    /**
     * The largest region a tile-based job sends, in pixels at the read downsample (about 256 MB of RGB): larger
     * regions must be split into annotations, or the image opened from a file Python can read.
     */
    public static final long MAX_PIXELS = 1L << 26;

    private TileGrid() {
    }

    /**
     * The downsample to read tiles at: the one that brings the image to the model's pixel size, never below 1
     * (upsampling adds nothing the server cannot do itself).
     * @param modelMpp the model's µm per pixel, or null
     * @param imageMpp the image's µm per level-0 pixel, or null
     * @return the downsample (1 when either is unknown)
     */
    public static double readDownsample(Double modelMpp, Double imageMpp) {
        if (modelMpp == null || imageMpp == null || !(modelMpp > 0) || !(imageMpp > 0)
                || !Double.isFinite(modelMpp) || !Double.isFinite(imageMpp))
            return 1.0;
        return Math.max(1.0, modelMpp / imageMpp);
    }

    /**
     * @param x left
     * @param y top
     * @param width width
     * @param height height
     * @param imageWidth the image's level-0 width
     * @param imageHeight the image's level-0 height
     * @return the rectangle's part inside the image, with integer bounds that contain it
     * @throws CellBridgeException if nothing of it is inside the image
     */
    public static JobRequest.Region clip(double x, double y, double width, double height, int imageWidth,
                                         int imageHeight) {
        int x0 = (int) Math.max(0, Math.floor(x));
        int y0 = (int) Math.max(0, Math.floor(y));
        int x1 = (int) Math.min(imageWidth, Math.ceil(x + width));
        int y1 = (int) Math.min(imageHeight, Math.ceil(y + height));
        if (x1 <= x0 || y1 <= y0)
            throw new CellBridgeException(String.format(Locale.ROOT,
                    "the region (x=%.0f, y=%.0f, %.0fx%.0f) is outside the image (%dx%d)", x, y, width, height,
                    imageWidth, imageHeight));
        return JobRequest.Region.of(x0, y0, x1 - x0, y1 - y0);
    }

    /**
     * @param region a level-0 region
     * @param downsample the read downsample
     * @return its pixel count at that downsample
     */
    public static long pixels(JobRequest.Region region, double downsample) {
        return Math.round(Math.ceil(region.width() / downsample) * Math.ceil(region.height() / downsample));
    }

    /**
     * @param region a level-0 region
     * @param downsample the read downsample
     * @throws CellBridgeException if the region is too large to send as tiles
     */
    public static void checkSize(JobRequest.Region region, double downsample) {
        long pixels = pixels(region, downsample);
        if (pixels > MAX_PIXELS)
            throw new CellBridgeException(String.format(Locale.ROOT,
                    "the region is too large to send from QuPath as tiles (%dx%d pixels at downsample %.2f, more than "
                            + "%d megapixels); draw smaller annotations and run on them, or open the image from a "
                            + "file the Python side can read (%s)",
                    region.width(), region.height(), downsample, MAX_PIXELS >> 20,
                    String.join(" ", ImageFiles.PYTHON_SUFFIXES.stream().sorted().toList())));
    }

    /**
     * Tiles covering a region edge to edge, row by row; the last column and row are cut at the region's edge.
     * @param region the level-0 region
     * @param downsample the read downsample
     * @param tilePixels tile side in pixels at that downsample
     * @return level-0 tile rectangles
     */
    public static List<JobRequest.Region> cover(JobRequest.Region region, double downsample, int tilePixels) {
        if (!(downsample > 0) || !Double.isFinite(downsample))
            throw new IllegalArgumentException("downsample must be a positive number, not " + downsample);
        if (tilePixels <= 0)
            throw new IllegalArgumentException("tile size must be positive, not " + tilePixels);
        int step = (int) Math.max(1, Math.round(tilePixels * downsample));
        List<JobRequest.Region> tiles = new ArrayList<>();
        int right = region.x() + region.width();
        int bottom = region.y() + region.height();
        for (int y = region.y(); y < bottom; y += step) {
            for (int x = region.x(); x < right; x += step)
                tiles.add(JobRequest.Region.of(x, y, Math.min(step, right - x), Math.min(step, bottom - y)));
        }
        return tiles;
    }

    /**
     * @param geometry a geometry (not modified)
     * @param dx added to every x
     * @param dy added to every y
     * @return the moved copy (the same object when both are 0)
     */
    public static Geometry shift(Geometry geometry, double dx, double dy) {
        if (geometry == null || (dx == 0 && dy == 0))
            return geometry;
        return AffineTransformation.translationInstance(dx, dy).transform(geometry);
    }

    /**
     * @param object an object (not modified)
     * @param dx added to every x of its geometries
     * @param dy added to every y of its geometries
     * @return the moved copy (the same object when both are 0)
     */
    public static DetectedObject shift(DetectedObject object, double dx, double dy) {
        if (dx == 0 && dy == 0)
            return object;
        return new DetectedObject(object.id(), object.objectType(), shift(object.geometry(), dx, dy),
                shift(object.nucleusGeometry(), dx, dy), object.className(), object.color(), object.measurements());
    }
}
