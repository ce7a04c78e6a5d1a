package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import org.locationtech.jts.geom.Geometry;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;

/**
 * An immutable job request (protocol version 1): what to run, on which pixels, with which options.
 * <p>
 * Path-based (Python reads the slide; the fast path):
 * <pre>{@code
 * JobRequest request = JobRequest.nuclei("nuclei-he")
 *         .imagePath("/slides/a.svs")
 *         .region(0, 0, 4096, 4096)
 *         .options(RunSettings.builder("nuclei-he").cellExpansion(5.0).build().options())
 *         .build();
 * }</pre>
 * The options are set in one place, {@link RunSettings}; a request carries them as its {@link Options}.
 * Tile-based (for images only QuPath can read): {@code .tiles(width, height, tileImages)} instead of
 * {@code imagePath}. Options left unset are omitted from the JSON, so the server's defaults apply.
 *
 * @param task what to run
 * @param model a model name from {@code listModels}, or a model folder path
 * @param imagePath the slide's path (path-based jobs), or null for tile-based jobs
 * @param imageWidth the full image's level-0 width (tile-based jobs), or null
 * @param imageHeight the full image's level-0 height (tile-based jobs), or null
 * @param pixelSize µm per level-0 pixel to use instead of the slide's own, or null
 * @param region the level-0 region to analyse, or null for the whole image
 * @param roi a level-0 ROI to analyse (objects outside are dropped), or null
 * @param options processing options
 * @param tiles the pixels of a tile-based job (empty for path-based jobs)
 */
public record JobRequest(Task task, String model, String imagePath, Integer imageWidth, Integer imageHeight,
                         Double pixelSize, Region region, Geometry roi, Options options, List<TileImage> tiles) {

    /** The protocol version this class writes. */
    public static final int PROTOCOL = 1;

    /** What a job does: the model's task, named as model.json, the protocol and the command line name it. */
    public enum Task {
        /** Nucleus segmentation (optionally cells by expansion). */
        NUCLEI,
        /** Object detection (boxes or polygons). */
        DETECT,
        /** Regions by class (semantic U-Net): annotations. */
        SEMANTIC,
        /** Objects such as glands (U-Net + distance, or Mask R-CNN): one polygon each. */
        INSTANCE;

        /** @return the protocol's name, e.g. {@code "nuclei"} */
        public String protocolName() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /**
     * A level-0 rectangle.
     * @param x left
     * @param y top
     * @param width width (positive)
     * @param height height (positive)
     */
    public record Region(int x, int y, int width, int height) {

        /** Checks the size. */
        public Region {
            if (width <= 0 || height <= 0)
                throw new IllegalArgumentException("region size must be positive, not " + width + "x" + height);
        }

        /**
         * @param x left
         * @param y top
         * @param width width
         * @param height height
         * @return the region
         */
        public static Region of(int x, int y, int width, int height) {
            return new Region(x, y, width, height);
        }
    }

    /**
     * Processing options; null means "the server's default".
     * @param device {@code "auto"}, {@code "cpu"}, {@code "cuda"}, {@code "cuda:1"}, {@code "mps"}, or null
     * @param batchSize tiles per batch, or null
     * @param tileSize tile size in model pixels, or null for the model's
     * @param overlap tile overlap in model pixels, or null for the model's
     * @param cellExpansion µm (pixels when the pixel size is unknown) to grow nuclei into cells; nuclei only
     * @param threshold detection threshold, or null for the model's
     * @param tissue whether to skip tiles without tissue, or null
     * @param measure whether to add measurements, or null
     * @param stain {@code "he"}, or {@code "ihc-dab"} to score DAB positivity per nucleus (Negative/1+/2+/3+), or null
     * @param stainVectors with {@code "ihc-dab"}: {@code "estimate"} (per image), {@code "default"} (QuPath's H-DAB),
     *                     or QuPath's stain string ({@code ColorDeconvolutionStains.getColorDeconvolutionStainsAsString}),
     *                     or null for the server's default (estimate)
     * @param positivity with {@code "ihc-dab"}: DAB optical density thresholds, one (Positive/Negative) or three
     *                   ascending (1+/2+/3+), or null for QuPath's 0.2/0.4/0.6
     */
    public record Options(String device, Integer batchSize, Integer tileSize, Integer overlap, Double cellExpansion,
                          Double threshold, Boolean tissue, Boolean measure, String stain, String stainVectors,
                          List<Double> positivity) {

        private static final Options DEFAULTS = new Options(null, null, null, null, null, null, null, null, null, null,
                null);

        /** Copies the thresholds. */
        public Options {
            positivity = positivity == null ? null : List.copyOf(positivity);
        }

        /** @return options that leave everything to the server */
        public static Options defaults() {
            return DEFAULTS;
        }

        /** @return the options that are set, by protocol name, in a fixed order */
        public Map<String, Object> toMap() {
            Map<String, Object> map = new LinkedHashMap<>();
            putIfSet(map, "device", device);
            putIfSet(map, "batchSize", batchSize);
            putIfSet(map, "tileSize", tileSize);
            putIfSet(map, "overlap", overlap);
            putIfSet(map, "cellExpansion", cellExpansion);
            putIfSet(map, "threshold", threshold);
            putIfSet(map, "tissue", tissue);
            putIfSet(map, "measure", measure);
            putIfSet(map, "stain", stain);
            putIfSet(map, "stainVectors", stainVectors);
            putIfSet(map, "positivity", positivity);
            return map;
        }

        JsonObject toJson() {
            JsonObject json = new JsonObject();
            toMap().forEach((key, value) -> {
                if (value instanceof Number number)
                    json.addProperty(key, number);
                else if (value instanceof List<?> list) {
                    JsonArray array = new JsonArray();
                    list.forEach(v -> array.add((Number) v));
                    json.add(key, array);
                }
                else if (value instanceof Boolean bool)
                    json.addProperty(key, bool);
                else
                    json.addProperty(key, value.toString());
            });
            return json;
        }

        private static void putIfSet(Map<String, Object> map, String key, Object value) {
            if (value != null)
                map.put(key, value);
        }
    }

    /** Checks that the request names one image source and copies the tiles. */
    public JobRequest {
        Objects.requireNonNull(task, "task");
        Objects.requireNonNull(model, "model");
        if (model.isBlank())
            throw new IllegalArgumentException("model name is blank");
        options = options == null ? Options.defaults() : options;
        tiles = tiles == null ? List.of() : List.copyOf(tiles);
        if (imagePath != null && !tiles.isEmpty())
            throw new IllegalArgumentException("a request has an image path or tiles, not both");
        if (imagePath == null && tiles.isEmpty())
            throw new IllegalArgumentException("a request needs an image path or tiles");
        if (!tiles.isEmpty() && (imageWidth == null || imageHeight == null || imageWidth <= 0 || imageHeight <= 0))
            throw new IllegalArgumentException("a tile-based request needs the image's positive width and height");
        if (pixelSize != null && !(pixelSize > 0 && Double.isFinite(pixelSize)))
            throw new IllegalArgumentException("pixel size must be a positive number, not " + pixelSize);
    }

    /**
     * @param model a model name or folder
     * @return a builder for a nuclei job
     */
    public static Builder nuclei(String model) {
        return new Builder(Task.NUCLEI, model);
    }

    /**
     * @param model a model name or folder
     * @return a builder for a detection job
     */
    public static Builder detect(String model) {
        return new Builder(Task.DETECT, model);
    }

    /**
     * @param task what to run
     * @param model a model name or folder
     * @return a builder
     */
    public static Builder builder(Task task, String model) {
        return new Builder(task, model);
    }

    /** @return true when the pixels travel with the request */
    public boolean isTileBased() {
        return !tiles.isEmpty();
    }

    /** @return the request as the protocol's JSON object */
    public JsonObject toJsonObject() {
        JsonObject json = new JsonObject();
        json.addProperty("protocol", PROTOCOL);
        json.addProperty("task", task.protocolName());
        json.addProperty("model", model);
        JsonObject image = new JsonObject();
        if (imagePath != null) {
            image.addProperty("path", imagePath);
        } else {
            image.addProperty("width", imageWidth);
            image.addProperty("height", imageHeight);
        }
        if (pixelSize != null)
            image.addProperty("pixelSize", pixelSize);
        json.add("image", image);
        if (region != null) {
            JsonObject r = new JsonObject();
            r.addProperty("x", region.x());
            r.addProperty("y", region.y());
            r.addProperty("width", region.width());
            r.addProperty("height", region.height());
            json.add("region", r);
        }
        if (roi != null)
            json.add("roi", GeoJsonObjects.toGeoJson(roi));
        json.add("options", options.toJson());
        if (!tiles.isEmpty()) {
            JsonArray array = new JsonArray();
            for (TileImage tile : tiles) {
                JsonObject t = new JsonObject();
                t.addProperty("x", tile.x());
                t.addProperty("y", tile.y());
                t.addProperty("width", tile.width());
                t.addProperty("height", tile.height());
                t.addProperty("downsample", tile.downsample());
                t.addProperty("png", tile.pngBase64());
                array.add(t);
            }
            json.add("tiles", array);
        }
        return json;
    }

    /** @return the request JSON string sent to {@link CellBridgeService#submit(String)} */
    public String toJson() {
        return toJsonObject().toString();
    }

    /**
     * A fluent builder for {@link JobRequest}; each call returns the builder, {@link #build()} checks and freezes.
     */
    public static final class Builder {

        private final Task task;
        private final String model;
        private String imagePath;
        private Integer imageWidth;
        private Integer imageHeight;
        private Double pixelSize;
        private Region region;
        private Geometry roi;
        private List<TileImage> tiles = List.of();
        private Options options = Options.defaults();

        private Builder(Task task, String model) {
            this.task = task;
            this.model = model;
        }

        /**
         * @param path the slide file Python should read
         * @return this builder
         */
        public Builder imagePath(String path) {
            this.imagePath = path;
            return this;
        }

        /**
         * Pixels sent as tiles.
         * @param width the full image's level-0 width
         * @param height the full image's level-0 height
         * @param tiles tiles covering the region (or the ROI's bounds), all at one downsample
         * @return this builder
         */
        public Builder tiles(int width, int height, List<TileImage> tiles) {
            this.imageWidth = width;
            this.imageHeight = height;
            this.tiles = new ArrayList<>(tiles);
            return this;
        }

        /**
         * @param micronsPerPixel µm per level-0 pixel overriding the slide's
         * @return this builder
         */
        public Builder pixelSize(double micronsPerPixel) {
            this.pixelSize = micronsPerPixel;
            return this;
        }

        /**
         * @param region the level-0 region to analyse
         * @return this builder
         */
        public Builder region(Region region) {
            this.region = region;
            return this;
        }

        /**
         * @param x left
         * @param y top
         * @param width width
         * @param height height
         * @return this builder
         */
        public Builder region(int x, int y, int width, int height) {
            return region(Region.of(x, y, width, height));
        }

        /**
         * @param roi a level-0 ROI geometry
         * @return this builder
         */
        public Builder roi(Geometry roi) {
            this.roi = roi;
            return this;
        }

        /**
         * @param options the processing options ({@link RunSettings#options()} builds them from one run's settings)
         * @return this builder
         */
        public Builder options(Options options) {
            this.options = options == null ? Options.defaults() : options;
            return this;
        }

        /** @return the request; throws IllegalArgumentException if it names no image or both kinds */
        public JobRequest build() {
            return new JobRequest(task, model, imagePath, imageWidth, imageHeight, pixelSize, region, roi, options,
                    tiles);
        }
    }
}
