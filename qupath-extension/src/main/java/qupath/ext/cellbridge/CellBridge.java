package qupath.ext.cellbridge;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.cellbridge.bridge.CellBridgeClient;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.JobStatus;
import qupath.ext.cellbridge.bridge.ModelInfo;
import qupath.ext.cellbridge.bridge.RunSettings;
import qupath.lib.images.ImageData;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.hierarchy.PathObjectHierarchy;
import qupath.lib.plugins.workflow.DefaultScriptableWorkflowStep;

import java.awt.image.BufferedImage;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.CancellationException;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * Run a CellBridge model on QuPath images: the API for Groovy scripts, and what the menu commands run.
 * <pre>{@code
 * import qupath.ext.cellbridge.CellBridge
 *
 * def result = CellBridge.builder("nuclei-brightfield")
 *         .device("auto").tileSize(1024).overlap(64).cellExpansion(3.0)
 *         .build()
 *         .detectObjects(getCurrentImageData(), getSelectedObjects())
 * println result.classCounts()
 * }</pre>
 * The jobs go to the extension's shared server ({@link CellBridgeServer}) unless {@link Builder#client} names
 * another. The logic takes the image (and its parents) as arguments: the script's current image comes from the
 * script ({@code getCurrentImageData()}), so this class runs wherever QuPath's core classes do.
 * Objects go under each parent annotation (clipped to its ROI), or under the image's root when the parents are
 * empty or the root; by default earlier detections under each parent are replaced. IHC runs ({@code stain
 * "ihc-dab"}) also put the annotation's Positive %, H-score and counts on it ({@link IhcScores}). Each run changes
 * the hierarchy
 * once (one hierarchy event) and is recorded in the image's workflow, so "Create script" reproduces it.
 * <p>
 * {@link #detectObjects} blocks while the server works (seconds to minutes): call it from a script or a background
 * thread, never from the JavaFX application thread.
 */
public final class CellBridge {

    private static final Logger logger = LoggerFactory.getLogger(CellBridge.class);

    private static final String WORKFLOW_NAME = "CellBridge detect objects";

    private final RunSettings settings;
    private final Supplier<CellBridgeClient> server;

    private CellBridge(RunSettings settings, Supplier<CellBridgeClient> server) {
        this.settings = Objects.requireNonNull(settings);
        this.server = Objects.requireNonNull(server);
    }

    /**
     * @param model a model name (see {@link #listModels()}) or a model folder
     * @return a builder with every option at the model's / server's default
     */
    public static Builder builder(String model) {
        return new Builder(RunSettings.builder(model));
    }

    /**
     * @param settings run settings
     * @return a CellBridge running them
     */
    public static CellBridge of(RunSettings settings) {
        return new CellBridge(settings, CellBridgeServer::client);
    }

    /**
     * @param settings run settings
     * @param client the server to run them on (instead of the extension's shared one)
     * @return a CellBridge running them
     */
    public static CellBridge of(RunSettings settings, CellBridgeClient client) {
        Objects.requireNonNull(client, "client");
        return new CellBridge(settings, () -> client);
    }

    /** @return the settings this instance runs */
    public RunSettings settings() {
        return settings;
    }

    /** Told how a run progresses. */
    @FunctionalInterface
    public interface Progress {

        /** Ignores every update. */
        Progress NONE = (fraction, message) -> { };

        /**
         * @param fraction 0..1 over all parents
         * @param message what is being done
         */
        void update(double fraction, String message);
    }

    /**
     * What a run found, before it is put into the hierarchy.
     *
     * @param objects new objects per parent, in the order the parents were given
     * @param signature the run's signature ({@link CellBridgeClient#signature})
     * @param seconds time taken
     */
    public record Detections(Map<PathObject, List<PathObject>> objects, String signature, double seconds) {

        /** Copies the map. */
        public Detections {
            objects = java.util.Collections.unmodifiableMap(new LinkedHashMap<>(objects));
        }

        /** @return all new objects */
        public int count() {
            return objects.values().stream().mapToInt(List::size).sum();
        }
    }

    /**
     * The outcome of a run.
     *
     * @param objects objects added
     * @param classCounts objects added per class ("Unclassified" for none), sorted by name
     * @param parents parent objects run on
     * @param signature the run's signature, to tell whether an image was done with the same model and parameters
     * @param seconds time taken
     */
    public record Result(int objects, Map<String, Integer> classCounts, int parents, String signature, double seconds) {
    }

    /**
     * Detect objects under the selected annotations of an image, or in the whole image when none is selected.
     * @param imageData the image
     * @return what was added
     */
    public Result detectObjects(ImageData<BufferedImage> imageData) {
        return detectObjects(imageData, defaultParents(imageData));
    }

    /**
     * Detect objects under parent objects.
     * @param imageData the image
     * @param parents annotations to run in (their ROIs limit the region), the root, or empty for the whole image
     * @return what was added
     */
    public Result detectObjects(ImageData<BufferedImage> imageData, Collection<? extends PathObject> parents) {
        return apply(imageData, compute(imageData, parents, Progress.NONE, null));
    }

    /**
     * Run the model for each parent and build the new objects, without changing the hierarchy (the part of a run
     * that takes time; the menu commands call it in a background task, then {@link #apply} on the FX thread).
     * @param imageData the image
     * @param parents annotations, the root, or empty for the whole image
     * @param progress told the progress (may be null)
     * @param cancelled polled while working (may be null)
     * @return the objects per parent
     * @throws CellBridgeException with the server's message when a job fails
     * @throws CancellationException when cancelled
     */
    public Detections compute(ImageData<BufferedImage> imageData, Collection<? extends PathObject> parents,
                              Progress progress, BooleanSupplier cancelled) {
        Objects.requireNonNull(imageData, "imageData");
        Progress report = progress == null ? Progress.NONE : progress;
        BooleanSupplier stop = cancelled == null ? () -> Thread.currentThread().isInterrupted() : cancelled;
        List<PathObject> targets = targets(imageData, parents);
        long start = System.nanoTime();
        report.update(0, "Connecting to the CellBridge server");
        CellBridgeClient client = server.get();
        ModelInfo model = ModelInfo.find(client.listModels(), settings.model()).orElse(null);
        if (model == null)
            logger.info("Model {} is not one of the server's named models; using it as a folder", settings.model());
        String signature = client.signature(settings, model == null ? null : model.task());
        Map<PathObject, List<PathObject>> found = new LinkedHashMap<>();
        int n = targets.size();
        for (int i = 0; i < n; i++) {
            PathObject parent = targets.get(i);
            String where = parent.isRootObject() ? "the whole image" : n == 1 ? "the annotation"
                    : "annotation " + (i + 1) + " of " + n;
            int index = i;
            report.update((double) i / n, "Preparing " + where);
            RequestPlanner.PlannedJob job = RequestPlanner.plan(imageData, parent, settings, model, stop);
            List<PathObject> objects = client.run(job.request(), status -> report.update(
                    (index + Math.max(0, Math.min(1, status.progress()))) / n, message(where, status)), stop,
                    ResultObjects.READER);
            found.put(parent, ResultObjects.moved(objects, job.dx(), job.dy(), job.plane()));
        }
        report.update(1, "Done");
        return new Detections(found, signature, (System.nanoTime() - start) / 1e9);
    }

    /**
     * Put computed objects into the hierarchy: under each parent (replacing earlier detections there when the
     * settings say so; for the whole image, all its detections, and each new object goes under the annotation that
     * holds it), and a workflow step that reproduces the run.
     * @param imageData the image the objects were computed for
     * @param detections what {@link #compute} returned
     * @return what was added
     */
    public Result apply(ImageData<BufferedImage> imageData, Detections detections) {
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        List<PathObject> added = new ArrayList<>();
        int parents = 0;
        for (Map.Entry<PathObject, List<PathObject>> entry : detections.objects().entrySet()) {
            PathObject parent = entry.getKey();
            if (!parent.isRootObject() && parent.getParent() == null) {
                logger.warn("{} was removed from the hierarchy while CellBridge ran; its {} objects are dropped",
                        parent, entry.getValue().size());
                continue;
            }
            if (parent.isRootObject()) {
                // the whole image: its earlier detections go wherever they are (under annotations too), and the
                // hierarchy puts each new object under the annotation that holds it
                if (settings.replaceExisting()) {
                    Collection<PathObject> earlier = hierarchy.getDetectionObjects();
                    if (!earlier.isEmpty())
                        hierarchy.removeObjects(earlier, false);
                }
                hierarchy.addObjects(entry.getValue());
            } else {
                if (settings.replaceExisting()) {
                    List<PathObject> earlier = parent.getChildObjects().stream().filter(PathObject::isDetection)
                            .toList();
                    if (!earlier.isEmpty())
                        parent.removeChildObjects(earlier);
                }
                parent.addChildObjects(entry.getValue());
            }
            if (scoresIhc() && parent.isAnnotation())
                IhcScores.putOn(parent, parent.getChildObjects(), graded(), pixelSize(imageData));
            added.addAll(entry.getValue());
            parents++;
        }
        hierarchy.fireHierarchyChangedEvent(this);
        imageData.getHistoryWorkflow().addStep(new DefaultScriptableWorkflowStep(WORKFLOW_NAME, settings.parameters(),
                script()));
        Result result = new Result(added.size(), countClasses(added), parents, detections.signature(),
                detections.seconds());
        logger.info("CellBridge {}: {} objects under {} parent(s) in {} s", settings.model(), result.objects(),
                parents, String.format(Locale.ROOT, "%.1f", result.seconds()));
        return result;
    }

    private boolean scoresIhc() {
        return "ihc-dab".equals(settings.stain());
    }

    private boolean graded() {
        return settings.positivity() == null || settings.positivity().size() != 1;
    }

    private Double pixelSize(ImageData<BufferedImage> imageData) {
        return settings.pixelSize() != null ? settings.pixelSize()
                : RequestPlanner.pixelSizeMicrons(imageData.getServer());
    }

    /** @return the Groovy line that reproduces this run on the current image (for the workflow) */
    public String script() {
        return settings.builderScript(CellBridge.class.getName()) + ".build().detectObjects(getCurrentImageData())";
    }

    /**
     * The signature the server gives this run (starts the server if needed; {@link CellBridgeClient#signature}).
     * @return 16 hex digits that change with the model, its version and weights, and the result-changing options
     */
    public String signature() {
        CellBridgeClient client = client();
        return client.signature(settings, ModelInfo.find(client.listModels(), settings.model()).map(ModelInfo::task)
                .orElse(null));
    }

    /** @return the server this instance runs on (the extension's shared one is started if needed) */
    public CellBridgeClient client() {
        return server.get();
    }

    // ----------------------------------------------------------------------------------------- static helpers

    /**
     * The parents a run uses when none are given: the selected area annotations, else the whole image (the root).
     * @param imageData the image
     * @return the parents
     */
    public static List<PathObject> defaultParents(ImageData<?> imageData) {
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        List<PathObject> selected = hierarchy.getSelectionModel().getSelectedObjects().stream()
                .filter(PathObject::isAnnotation).filter(p -> p.hasROI() && p.getROI().isArea()).toList();
        return selected.isEmpty() ? List.of(hierarchy.getRootObject()) : selected;
    }

    /**
     * @param objects objects
     * @return how many there are of each class ("Unclassified" for none), sorted by class name
     */
    public static Map<String, Integer> countClasses(Collection<? extends PathObject> objects) {
        Map<String, Integer> counts = new TreeMap<>();
        for (PathObject object : objects) {
            String name = object.getPathClass() == null ? "Unclassified" : object.getPathClass().toString();
            counts.merge(name, 1, Integer::sum);
        }
        return counts;
    }

    /**
     * @param imageData an image
     * @return its detections (and cells) per class, sorted by class name
     */
    public static Map<String, Integer> countDetections(ImageData<?> imageData) {
        return countClasses(imageData.getHierarchy().getDetectionObjects());
    }

    /** @return the models the server can run (starts the server if needed) */
    public static List<ModelInfo> listModels() {
        return CellBridgeServer.listModels();
    }

    /** Start the Python server now (it also starts on first use). */
    public static void startServer() {
        CellBridgeServer.start();
    }

    /** Stop the Python server. */
    public static void stopServer() {
        CellBridgeServer.stop();
    }

    /**
     * Classify the selected detections (else all) with a classifier JSON file ({@code cellbridge classify}).
     * @param imageData the image
     * @param classifier the classifier file
     * @return how many objects got a class
     */
    public static int classifyDetections(ImageData<?> imageData, String classifier) {
        return DetectionClassifier.classifyDetections(imageData, Path.of(classifier));
    }

    /**
     * Export COCO training tiles from an image's annotations ({@code cellbridge export-coco}).
     * @param imageData the image (a file the Python side reads)
     * @param outDir the output folder
     * @return the COCO JSON written
     */
    public static String exportTrainingTiles(ImageData<BufferedImage> imageData, String outDir) {
        return TrainingData.exportCoco(imageData, Path.of(outDir), null, null).toString();
    }

    private static List<PathObject> targets(ImageData<?> imageData, Collection<? extends PathObject> parents) {
        PathObjectHierarchy hierarchy = imageData.getHierarchy();
        if (parents == null || parents.isEmpty())
            return List.of(hierarchy.getRootObject());
        List<PathObject> targets = new ArrayList<>();
        for (PathObject parent : parents) {
            if (parent == null || targets.contains(parent))
                continue;
            if (!parent.isRootObject() && (!parent.hasROI() || !parent.getROI().isArea()))
                throw new CellBridgeException("CellBridge runs inside area annotations (or the whole image), not in "
                        + parent + " (" + (parent.hasROI() ? parent.getROI().getRoiName() : "no ROI") + ")");
            if (parent.isDetection())
                throw new CellBridgeException("CellBridge runs inside annotations (or the whole image), not inside "
                        + "the detection " + parent);
            targets.add(parent);
        }
        return targets;
    }

    private static String message(String where, JobStatus status) {
        String text = status.message().isBlank() ? status.state().name().toLowerCase(Locale.ROOT) : status.message();
        return where.substring(0, 1).toUpperCase(Locale.ROOT) + where.substring(1) + ": " + text
                + (status.objects() > 0 ? " (" + status.objects() + " objects)" : "");
    }

    /** A fluent builder; {@link #build()} checks the values. */
    public static final class Builder {

        private final RunSettings.Builder settings;
        private CellBridgeClient client;

        private Builder(RunSettings.Builder settings) {
            this.settings = settings;
        }

        /**
         * @param client the server to run on, instead of the extension's shared one (e.g. a server started by a
         *               script with {@code ServerProcess.start})
         * @return this builder
         */
        public Builder client(CellBridgeClient client) {
            this.client = client;
            return this;
        }

        /**
         * @param task "nuclei", "detect", "semantic" or "instance" (default: the model's own)
         * @return this builder
         */
        public Builder task(String task) {
            settings.task(task);
            return this;
        }

        /**
         * @param device "auto" (CUDA > MPS > CPU), "cpu", "cuda", "cuda:N" or "mps"
         * @return this builder
         */
        public Builder device(String device) {
            settings.device(device);
            return this;
        }

        /**
         * @param tileSize tile size in model pixels (default: the model's)
         * @return this builder
         */
        public Builder tileSize(int tileSize) {
            settings.tileSize(tileSize);
            return this;
        }

        /**
         * @param overlap tile overlap in model pixels (default: the model's)
         * @return this builder
         */
        public Builder overlap(int overlap) {
            settings.overlap(overlap);
            return this;
        }

        /**
         * @param batchSize tiles per forward pass (default 4; halves itself on out-of-memory)
         * @return this builder
         */
        public Builder batchSize(int batchSize) {
            settings.batchSize(batchSize);
            return this;
        }

        /**
         * @param microns grow cells this many µm around nuclei (nuclei models; 0: nuclei only)
         * @return this builder
         */
        public Builder cellExpansion(double microns) {
            settings.cellExpansion(microns);
            return this;
        }

        /**
         * Score DAB positivity per nucleus (IHC): classes Negative/1+/2+/3+ (or Negative/Positive with one
         * threshold) and QuPath's positive-cell measurements, from which QuPath shows Positive % and H-score for
         * the annotations.
         * @param stain "ihc-dab", or "he" (default: no scoring)
         * @return this builder
         */
        public Builder stain(String stain) {
            settings.stain(stain);
            return this;
        }

        /**
         * @param stainVectors "estimate" (per image, the default), "default" (QuPath's H-DAB), or QuPath's stain
         *                     string, e.g. {@code ColorDeconvolutionStains.getColorDeconvolutionStainsAsString(
         *                     imageData.getColorDeconvolutionStains(), 5)}
         * @return this builder
         */
        public Builder stainVectors(String stainVectors) {
            settings.stainVectors(stainVectors);
            return this;
        }

        /**
         * @param thresholds DAB optical density thresholds: one (Positive) or three ascending (1+/2+/3+; default
         *                   0.2, 0.4, 0.6 as QuPath's positive cell detection)
         * @return this builder
         */
        public Builder positivity(double... thresholds) {
            settings.positivity(thresholds);
            return this;
        }

        /**
         * @param threshold score threshold (detectors) or peak threshold (nuclei) (default: the model's)
         * @return this builder
         */
        public Builder threshold(double threshold) {
            settings.threshold(threshold);
            return this;
        }

        /**
         * @param tissue whether to skip tiles without tissue (default true)
         * @return this builder
         */
        public Builder tissue(boolean tissue) {
            settings.tissue(tissue);
            return this;
        }

        /**
         * @param measure whether to add measurements (default true)
         * @return this builder
         */
        public Builder measure(boolean measure) {
            settings.measure(measure);
            return this;
        }

        /**
         * @param micronsPerPixel the pixel size to use instead of the image's
         * @return this builder
         */
        public Builder pixelSize(double micronsPerPixel) {
            settings.pixelSize(micronsPerPixel);
            return this;
        }

        /**
         * @param replace whether earlier detections under each parent are removed first (default true)
         * @return this builder
         */
        public Builder replaceExisting(boolean replace) {
            settings.replaceExisting(replace);
            return this;
        }

        /**
         * @param sendTiles whether QuPath always sends the pixels as tiles, even for files Python can read
         * @return this builder
         */
        public Builder sendTiles(boolean sendTiles) {
            settings.sendTiles(sendTiles);
            return this;
        }

        /** @return the CellBridge; IllegalArgumentException naming a bad value */
        public CellBridge build() {
            return client == null ? of(settings.build()) : of(settings.build(), client);
        }
    }
}
