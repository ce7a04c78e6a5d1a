package qupath.ext.cellbridge;

import org.locationtech.jts.geom.Geometry;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.ImageFiles;
import qupath.ext.cellbridge.bridge.JobRequest;
import qupath.ext.cellbridge.bridge.ModelInfo;
import qupath.ext.cellbridge.bridge.RunSettings;
import qupath.ext.cellbridge.bridge.TileGrid;
import qupath.ext.cellbridge.bridge.TileImage;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServer;
import qupath.lib.images.servers.ImageServerBuilder;
import qupath.lib.images.servers.PixelCalibration;
import qupath.lib.objects.PathObject;
import qupath.lib.regions.ImagePlane;
import qupath.lib.regions.RegionRequest;
import qupath.lib.roi.interfaces.ROI;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CancellationException;
import java.util.function.BooleanSupplier;

/**
 * The request for one parent object (an annotation, or the root for the whole image): path-based when the image
 * is a plain local file the Python side reads itself, tile-based otherwise (QuPath reads {@link RegionRequest}s
 * and sends PNG tiles, in region coordinates: see {@link TileGrid}).
 */
final class RequestPlanner {

    /**
     * A request and where its results go.
     *
     * @param request the request
     * @param plane the z-slice and time point of the parent
     * @param dx added to the x of every result (tile-based jobs are sent in region coordinates)
     * @param dy added to the y of every result
     */
    record PlannedJob(JobRequest request, ImagePlane plane, double dx, double dy) {
    }

    private RequestPlanner() {
    }

    /**
     * @param imageData the image
     * @param parent an annotation (its ROI limits the region), or the hierarchy's root (the whole image)
     * @param settings the run settings
     * @param model the server's description of the model, or null if unknown
     * @param cancelled polled between tiles
     * @return the request
     * @throws CellBridgeException if the pixels cannot be sent (not RGB, region too large, unreadable)
     */
    static PlannedJob plan(ImageData<BufferedImage> imageData, PathObject parent, RunSettings settings,
                           ModelInfo model, BooleanSupplier cancelled) {
        ImageServer<BufferedImage> server = imageData.getServer();
        ROI roi = parent == null || parent.isRootObject() ? null : parent.getROI();
        ImagePlane plane = roi == null ? ImagePlane.getDefaultPlane() : roi.getImagePlane();
        int width = server.getWidth();
        int height = server.getHeight();
        JobRequest.Region region = roi == null ? JobRequest.Region.of(0, 0, width, height)
                : TileGrid.clip(roi.getBoundsX(), roi.getBoundsY(), roi.getBoundsWidth(), roi.getBoundsHeight(),
                width, height);
        Geometry geometry = roi == null || roi.isLine() || roi.isPoint() ? null : roi.getGeometry();

        JobRequest.Builder builder = settings.request(model == null ? null : model.task());
        Double pixelSize = settings.pixelSize() != null ? settings.pixelSize() : pixelSizeMicrons(server);
        if (pixelSize != null)
            builder.pixelSize(pixelSize);

        Optional<Path> file = settings.sendTiles() ? Optional.empty() : pythonReadableFile(server, plane);
        if (file.isPresent()) {
            builder.imagePath(file.get().toString());
            if (roi != null)
                builder.region(region).roi(geometry);
            return new PlannedJob(builder.build(), plane, 0, 0);
        }

        if (!server.isRGB())
            throw new CellBridgeException(imageName(server) + " is not an 8-bit RGB image; CellBridge "
                    + "models need brightfield RGB pixels");
        double downsample = TileGrid.readDownsample(model == null ? null : model.mpp(), pixelSize);
        TileGrid.checkSize(region, downsample);
        List<TileImage> tiles = new ArrayList<>();
        String path = server.getPath();
        for (JobRequest.Region tile : TileGrid.cover(region, downsample, TileGrid.DEFAULT_TILE_PIXELS)) {
            if (cancelled != null && cancelled.getAsBoolean())
                throw new CancellationException("cancelled while reading tiles");
            RegionRequest request = RegionRequest.createInstance(path, downsample, tile.x(), tile.y(), tile.width(),
                    tile.height(), plane);
            BufferedImage image;
            try {
                image = server.readRegion(request);
            } catch (IOException e) {
                throw new CellBridgeException("cannot read " + request + " of " + imageName(server)
                        + ": " + e.getMessage(), e);
            }
            tiles.add(TileImage.of(tile.x() - region.x(), tile.y() - region.y(), tile.width(), tile.height(),
                    downsample, TileImage.encodePng(rgb(image))));
        }
        builder.tiles(region.width(), region.height(), tiles);
        if (geometry != null)
            builder.roi(TileGrid.shift(geometry, -region.x(), -region.y()));
        return new PlannedJob(builder.build(), plane, region.x(), region.y());
    }

    /**
     * @param server an image server
     * @return its name for messages
     */
    static String imageName(ImageServer<?> server) {
        String name = server.getMetadata().getName();
        return name == null || name.isBlank() ? server.getPath() : name;
    }

    /** µm/px a calibration may plausibly claim (as the Python side's {@code PLAUSIBLE_PIXEL_SIZE_UM}). */
    static final double MIN_PIXEL_SIZE = 0.02, MAX_PIXEL_SIZE = 10.0;

    /**
     * @param server an image server
     * @return its µm per pixel, or null when it is not calibrated in µm or claims an implausible size (e.g. a TIFF
     *         saved at 72 dpi: 352.8 µm/px); the server then estimates the pixel size from the nuclei
     */
    static Double pixelSizeMicrons(ImageServer<?> server) {
        PixelCalibration calibration = server.getPixelCalibration();
        if (!calibration.hasPixelSizeMicrons())
            return null;
        double value = calibration.getAveragedPixelSizeMicrons();
        return Double.isFinite(value) && value >= MIN_PIXEL_SIZE && value <= MAX_PIXEL_SIZE ? value : null;
    }

    /**
     * The file the Python side can read for this image: a plain (not rotated, cropped, recoloured ...) image
     * read from one local file of a supported format, first series, on the default plane.
     */
    static Optional<Path> pythonReadableFile(ImageServer<BufferedImage> server, ImagePlane plane) {
        if (plane.getZ() != 0 || plane.getT() != 0)
            return Optional.empty();
        if (!(server.getBuilder() instanceof ImageServerBuilder.DefaultImageServerBuilder<?> builder))
            return Optional.empty();
        String[] args = builder.getArgs();
        for (int i = 0; args != null && i + 1 < args.length; i++) {
            if ("--series".equals(args[i]) && !"0".equals(args[i + 1].strip()))
                return Optional.empty();
        }
        return ImageFiles.pythonReadable(server.getURIs());
    }

    private static BufferedImage rgb(BufferedImage image) {
        int type = image.getType();
        if (type == BufferedImage.TYPE_INT_RGB || type == BufferedImage.TYPE_INT_ARGB
                || type == BufferedImage.TYPE_3BYTE_BGR || type == BufferedImage.TYPE_4BYTE_ABGR)
            return image;
        BufferedImage copy = new BufferedImage(image.getWidth(), image.getHeight(), BufferedImage.TYPE_INT_RGB);
        var g = copy.createGraphics();
        try {
            g.drawImage(image, 0, 0, null);
        } finally {
            g.dispose();
        }
        return copy;
    }
}
