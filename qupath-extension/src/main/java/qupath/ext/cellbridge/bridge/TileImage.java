package qupath.ext.cellbridge.bridge;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Arrays;
import java.util.Base64;

/**
 * One tile of pixels sent with a tile-based job: its level-0 bounds, the downsample it was read at and the
 * pixels as an 8-bit RGB or RGBA PNG.
 *
 * @param x level-0 x of the tile's top left corner
 * @param y level-0 y of the tile's top left corner
 * @param width level-0 width
 * @param height level-0 height
 * @param downsample the downsample the pixels were read at (the PNG is about width/downsample wide)
 * @param png the PNG file's bytes (copied; never modified)
 */
public record TileImage(int x, int y, int width, int height, double downsample, byte[] png) {

    /** Checks the bounds and copies the PNG bytes. */
    public TileImage {
        if (width <= 0 || height <= 0)
            throw new IllegalArgumentException("tile size must be positive, not " + width + "x" + height);
        if (!(downsample > 0) || Double.isInfinite(downsample))
            throw new IllegalArgumentException("tile downsample must be a positive number, not " + downsample);
        if (png == null || png.length == 0)
            throw new IllegalArgumentException("tile PNG bytes are missing");
        png = png.clone();
    }

    /**
     * A tile from PNG bytes.
     * @param x level-0 x
     * @param y level-0 y
     * @param width level-0 width
     * @param height level-0 height
     * @param downsample the downsample the pixels were read at
     * @param png PNG bytes
     * @return the tile
     */
    public static TileImage of(int x, int y, int width, int height, double downsample, byte[] png) {
        return new TileImage(x, y, width, height, downsample, png);
    }

    /**
     * A tile from an image, encoded as PNG (the image must be 8-bit RGB or ARGB, as QuPath reads brightfield slides).
     * @param x level-0 x
     * @param y level-0 y
     * @param downsample the downsample the image was read at; the level-0 size is the image size × downsample
     * @param image the pixels
     * @return the tile
     */
    public static TileImage fromImage(int x, int y, double downsample, BufferedImage image) {
        int width = (int) Math.round(image.getWidth() * downsample);
        int height = (int) Math.round(image.getHeight() * downsample);
        return new TileImage(x, y, width, height, downsample, encodePng(image));
    }

    /**
     * @param image an image
     * @return its PNG encoding
     */
    public static byte[] encodePng(BufferedImage image) {
        try (ByteArrayOutputStream out = new ByteArrayOutputStream()) {
            if (!ImageIO.write(image, "png", out))
                throw new IllegalArgumentException("no PNG writer for an image of type " + image.getType());
            return out.toByteArray();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot encode a tile as PNG: " + e.getMessage(), e);
        }
    }

    /** @return a copy of the PNG bytes */
    @Override
    public byte[] png() {
        return png.clone();
    }

    /** @return the PNG as base64, as the request JSON holds it */
    public String pngBase64() {
        return Base64.getEncoder().encodeToString(png);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TileImage t && x == t.x && y == t.y && width == t.width && height == t.height
                && Double.compare(downsample, t.downsample) == 0 && Arrays.equals(png, t.png);
    }

    @Override
    public int hashCode() {
        return 31 * Arrays.hashCode(new double[]{x, y, width, height, downsample}) + Arrays.hashCode(png);
    }

    @Override
    public String toString() {
        return "TileImage[x=" + x + ", y=" + y + ", width=" + width + ", height=" + height
                + ", downsample=" + downsample + ", png=" + png.length + " bytes]";
    }
}
