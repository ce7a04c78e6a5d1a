package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonObject;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.stream.Collectors;

/**
 * Everything that defines one CellBridge run, independent of the image: the model, the task and the options
 * (null means "the server's / model's default"). The QuPath layer's {@code CellBridge.Builder} fills one; menu
 * commands, Groovy scripts and the workflow step that reproduces a run all go through it.
 * <pre>{@code
 * RunSettings settings = RunSettings.builder("nuclei-he").tileSize(1024).overlap(64).cellExpansion(3.0).build();
 * JobRequest request = settings.request().imagePath("/slides/a.svs").build();
 * String script = settings.builderScript("qupath.ext.cellbridge.CellBridge");  // for "Create script"
 * }</pre>
 *
 * @param model a model name from {@code listModels} or a model folder
 * @param task what to run, or null to use the model's own task
 * @param device "auto", "cpu", "cuda", "cuda:N" or "mps", or null for the server's default
 * @param batchSize tiles per forward pass, or null
 * @param tileSize tile size in model pixels, or null for the model's
 * @param overlap tile overlap in model pixels, or null for the model's
 * @param cellExpansion µm to grow nuclei into cells (nuclei models), or null for none
 * @param threshold detection / peak threshold, or null for the model's
 * @param tissue whether to skip tiles without tissue, or null
 * @param measure whether to add measurements, or null
 * @param stain "he", or "ihc-dab" to score DAB positivity per nucleus (Negative/1+/2+/3+), or null
 * @param stainVectors with "ihc-dab": "estimate", "default" or QuPath's stain string, or null (estimate)
 * @param positivity with "ihc-dab": one or three ascending DAB optical density thresholds, or null (0.2/0.4/0.6)
 * @param pixelSize µm per level-0 pixel overriding the image's, or null
 * @param replaceExisting whether earlier detections under each parent are removed before the new ones are added
 * @param sendTiles whether QuPath always sends the pixels as tiles, even for files Python could read itself
 */
public record RunSettings(String model, JobRequest.Task task, String device, Integer batchSize, Integer tileSize,
                          Integer overlap, Double cellExpansion, Double threshold, Boolean tissue, Boolean measure,
                          String stain, String stainVectors, List<Double> positivity, Double pixelSize,
                          boolean replaceExisting, boolean sendTiles) {

    /** Checks the values. */
    public RunSettings {
        Objects.requireNonNull(model, "model");
        if (model.isBlank())
            throw new IllegalArgumentException("model name is blank");
        positive(batchSize, "batch size");
        positive(tileSize, "tile size");
        if (overlap != null && overlap < 0)
            throw new IllegalArgumentException("overlap must not be negative, not " + overlap);
        if (tileSize != null && overlap != null && 2 * overlap >= tileSize)
            throw new IllegalArgumentException("overlap " + overlap + " is too large for tile size " + tileSize
                    + " (it must be less than half the tile)");
        if (cellExpansion != null && !(cellExpansion >= 0 && Double.isFinite(cellExpansion)))
            throw new IllegalArgumentException("cell expansion must be a number ≥ 0, not " + cellExpansion);
        if (threshold != null && !Double.isFinite(threshold))
            throw new IllegalArgumentException("threshold must be a number, not " + threshold);
        if (pixelSize != null && !(pixelSize > 0 && Double.isFinite(pixelSize)))
            throw new IllegalArgumentException("pixel size must be a positive number, not " + pixelSize);
        if (device != null && device.isBlank())
            device = null;
        if (stain != null && !stain.equals("he") && !stain.equals("ihc-dab"))
            throw new IllegalArgumentException("stain must be 'he' or 'ihc-dab', not '" + stain + "'");
        if (stainVectors != null && stainVectors.isBlank())
            stainVectors = null;
        if (positivity != null) {
            positivity = List.copyOf(positivity);
            if (positivity.size() != 1 && positivity.size() != 3)
                throw new IllegalArgumentException("positivity needs one threshold (Positive) or three (1+/2+/3+), not "
                        + positivity.size());
            for (int i = 0; i < positivity.size(); i++) {
                double t = positivity.get(i);
                if (!(t > 0 && Double.isFinite(t)) || (i > 0 && t <= positivity.get(i - 1)))
                    throw new IllegalArgumentException("positivity thresholds must be positive and ascending: "
                            + positivity);
            }
        }
    }

    private static void positive(Integer value, String name) {
        if (value != null && value <= 0)
            throw new IllegalArgumentException(name + " must be positive, not " + value);
    }

    /**
     * @param model a model name or folder
     * @return a builder with every option at its default
     */
    public static Builder builder(String model) {
        return new Builder(model);
    }

    /** @return a builder holding these settings, to change some of them */
    public Builder toBuilder() {
        Builder b = new Builder(model);
        b.task = task;
        b.device = device;
        b.batchSize = batchSize;
        b.tileSize = tileSize;
        b.overlap = overlap;
        b.cellExpansion = cellExpansion;
        b.threshold = threshold;
        b.tissue = tissue;
        b.measure = measure;
        b.stain = stain;
        b.stainVectors = stainVectors;
        b.positivity = positivity;
        b.pixelSize = pixelSize;
        b.replaceExisting = replaceExisting;
        b.sendTiles = sendTiles;
        return b;
    }

    /**
     * @param modelTask the model's own task ({@link ModelInfo#task()}), used when {@link #task()} is null; may be null
     * @return the task to run: this one, else the model's, else nuclei
     */
    public JobRequest.Task resolveTask(String modelTask) {
        if (task != null)
            return task;
        if (modelTask != null) {
            for (JobRequest.Task t : JobRequest.Task.values())
                if (t.protocolName().equals(modelTask))
                    return t;
        }
        return JobRequest.Task.NUCLEI;
    }

    /**
     * A request builder with the model, the task and every option set; add the image (path or tiles) and region.
     * @param modelTask the model's own task, used when {@link #task()} is null (may be null)
     * @return the builder
     */
    public JobRequest.Builder request(String modelTask) {
        JobRequest.Builder builder = JobRequest.builder(resolveTask(modelTask), model).options(options());
        if (pixelSize != null)
            builder.pixelSize(pixelSize);
        return builder;
    }

    /** @return the settings that are set, by name, in a fixed order (for a workflow step's parameter map) */
    public Map<String, Object> parameters() {
        Map<String, Object> map = new LinkedHashMap<>();
        map.put("model", model);
        if (task != null)
            map.put("task", task.protocolName());
        map.putAll(options().toMap());
        if (pixelSize != null)
            map.put("pixelSize", pixelSize);
        map.put("replaceExisting", replaceExisting);
        if (sendTiles)
            map.put("sendTiles", true);
        return map;
    }

    /** @return the processing options of a request */
    public JobRequest.Options options() {
        return new JobRequest.Options(device, batchSize, tileSize, overlap, cellExpansion, threshold, tissue, measure,
                stain, stainVectors, positivity);
    }

    /**
     * The run part of a request, without an image (what {@link CellBridgeClient#signature} sends): protocol, task,
     * model, the options that are set, and {@code image.pixelSize} when the settings override the image's.
     * @param modelTask the model's own task, used when {@link #task()} is null (may be null)
     * @return the request JSON
     */
    public String runRequestJson(String modelTask) {
        JsonObject json = new JsonObject();
        json.addProperty("protocol", JobRequest.PROTOCOL);
        json.addProperty("task", resolveTask(modelTask).protocolName());
        json.addProperty("model", model);
        if (pixelSize != null) {
            JsonObject image = new JsonObject();
            image.addProperty("pixelSize", pixelSize);
            json.add("image", image);
        }
        json.add("options", options().toJson());
        return json.toString();
    }

    /**
     * Groovy code that rebuilds these settings: {@code Cls.builder('nuclei-he').tileSize(1024)...} (no
     * {@code .build()}); only the options that are set appear.
     * @param builderClass the class whose static {@code builder(String)} starts the chain
     * @return the code
     */
    public String builderScript(String builderClass) {
        StringBuilder sb = new StringBuilder(builderClass).append(".builder(").append(groovyString(model)).append(')');
        if (task != null)
            sb.append(".task(").append(groovyString(task.protocolName())).append(')');
        // the builder's methods are named as the protocol names the options
        options().toMap().forEach((name, value) -> sb.append('.').append(name).append('(')
                .append(groovyValue(value)).append(')'));
        if (pixelSize != null)
            sb.append(".pixelSize(").append(groovyDouble(pixelSize)).append(')');
        sb.append(".replaceExisting(").append(replaceExisting).append(')');
        if (sendTiles)
            sb.append(".sendTiles(true)");
        return sb.toString();
    }

    /**
     * @param text any text
     * @return a single-quoted Groovy string literal (no interpolation) holding it
     */
    public static String groovyString(String text) {
        StringBuilder sb = new StringBuilder("'");
        for (char c : text.toCharArray()) {
            switch (c) {
                case '\\' -> sb.append("\\\\");
                case '\'' -> sb.append("\\'");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                default -> {
                    if (c < 0x20)
                        sb.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                    else
                        sb.append(c);
                }
            }
        }
        return sb.append('\'').toString();
    }

    private static String groovyDouble(double value) {
        return Double.toString(value) + "d";
    }

    private static String groovyValue(Object value) {
        if (value instanceof Double d)
            return groovyDouble(d);
        if (value instanceof List<?> list)
            return list.stream().map(v -> groovyDouble(((Number) v).doubleValue())).collect(Collectors.joining(", "));
        if (value instanceof String text)
            return groovyString(text);
        return String.valueOf(value);  // integers and booleans
    }

    /** A mutable builder; {@link #build()} checks and freezes. */
    public static final class Builder {

        private final String model;
        private JobRequest.Task task;
        private String device;
        private Integer batchSize;
        private Integer tileSize;
        private Integer overlap;
        private Double cellExpansion;
        private Double threshold;
        private Boolean tissue;
        private Boolean measure;
        private String stain;
        private String stainVectors;
        private List<Double> positivity;
        private Double pixelSize;
        private boolean replaceExisting = true;
        private boolean sendTiles;

        private Builder(String model) {
            this.model = model;
        }

        /**
         * @param task what to run, or null for the model's own task
         * @return this builder
         */
        public Builder task(JobRequest.Task task) {
            this.task = task;
            return this;
        }

        /**
         * @param task "nuclei", "detect", "semantic" or "instance" (any case), or null for the model's own task
         * @return this builder
         */
        public Builder task(String task) {
            if (task == null || task.isBlank()) {
                this.task = null;
                return this;
            }
            for (JobRequest.Task t : JobRequest.Task.values()) {
                if (t.protocolName().equalsIgnoreCase(task.strip())) {
                    this.task = t;
                    return this;
                }
            }
            throw new IllegalArgumentException("unknown task '" + task + "'; expected one of "
                    + Arrays.stream(JobRequest.Task.values()).map(JobRequest.Task::protocolName)
                            .collect(Collectors.joining(", ")));
        }

        /**
         * @param device "auto", "cpu", "cuda", "cuda:N" or "mps"
         * @return this builder
         */
        public Builder device(String device) {
            this.device = device;
            return this;
        }

        /**
         * @param batchSize tiles per forward pass
         * @return this builder
         */
        public Builder batchSize(Integer batchSize) {
            this.batchSize = batchSize;
            return this;
        }

        /**
         * @param tileSize tile size in model pixels
         * @return this builder
         */
        public Builder tileSize(Integer tileSize) {
            this.tileSize = tileSize;
            return this;
        }

        /**
         * @param overlap tile overlap in model pixels
         * @return this builder
         */
        public Builder overlap(Integer overlap) {
            this.overlap = overlap;
            return this;
        }

        /**
         * @param cellExpansion µm to grow nuclei into cells (0: nuclei only)
         * @return this builder
         */
        public Builder cellExpansion(Double cellExpansion) {
            this.cellExpansion = cellExpansion;
            return this;
        }

        /**
         * @param threshold detection / peak threshold
         * @return this builder
         */
        public Builder threshold(Double threshold) {
            this.threshold = threshold;
            return this;
        }

        /**
         * @param tissue whether to skip tiles without tissue
         * @return this builder
         */
        public Builder tissue(Boolean tissue) {
            this.tissue = tissue;
            return this;
        }

        /**
         * @param measure whether to add measurements
         * @return this builder
         */
        public Builder measure(Boolean measure) {
            this.measure = measure;
            return this;
        }

        /**
         * @param pixelSize µm per level-0 pixel overriding the image's
         * @return this builder
         */
        public Builder pixelSize(Double pixelSize) {
            this.pixelSize = pixelSize;
            return this;
        }

        /**
         * @param replace whether earlier detections under each parent are removed first (default true)
         * @return this builder
         */
        public Builder replaceExisting(boolean replace) {
            this.replaceExisting = replace;
            return this;
        }

        /**
         * @param sendTiles whether QuPath always sends pixels as tiles (default false: files Python can read
         *                  are read by Python)
         * @return this builder
         */
        public Builder sendTiles(boolean sendTiles) {
            this.sendTiles = sendTiles;
            return this;
        }

        /**
         * @param stain "he", or "ihc-dab" to score DAB positivity per nucleus (Negative/1+/2+/3+)
         * @return this builder
         */
        public Builder stain(String stain) {
            this.stain = stain;
            return this;
        }

        /**
         * @param stainVectors "estimate" (per image), "default" (QuPath's H-DAB) or QuPath's stain string
         * @return this builder
         */
        public Builder stainVectors(String stainVectors) {
            this.stainVectors = stainVectors;
            return this;
        }

        /**
         * @param thresholds DAB optical density: one (Positive/Negative) or three ascending (1+/2+/3+)
         * @return this builder
         */
        public Builder positivity(double... thresholds) {
            this.positivity = Arrays.stream(thresholds).boxed().toList();
            return this;
        }

        /** @return the settings; IllegalArgumentException naming a bad value */
        public RunSettings build() {
            return new RunSettings(model, task, device, batchSize, tileSize, overlap, cellExpansion, threshold, tissue,
                    measure, stain, stainVectors, positivity, pixelSize, replaceExisting, sendTiles);
        }
    }
}
