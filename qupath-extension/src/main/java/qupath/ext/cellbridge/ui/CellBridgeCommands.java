package qupath.ext.cellbridge.ui;

import javafx.beans.property.BooleanProperty;
import javafx.beans.property.SimpleBooleanProperty;
import org.controlsfx.control.action.Action;
import qupath.ext.cellbridge.CellBridge;
import qupath.ext.cellbridge.CellBridgePreferences;
import qupath.ext.cellbridge.CellBridgeServer;
import qupath.ext.cellbridge.DetectionClassifier;
import qupath.ext.cellbridge.TrainingData;
import qupath.ext.cellbridge.bridge.CellBridgeClient;
import qupath.ext.cellbridge.bridge.ModelInfo;
import qupath.ext.cellbridge.bridge.RunSettings;
import qupath.ext.cellbridge.bridge.ServerVersion;
import qupath.fx.dialogs.Dialogs;
import qupath.fx.dialogs.FileChoosers;
import qupath.fx.utils.FXUtils;
import qupath.lib.color.ColorDeconvolutionStains;
import qupath.lib.gui.QuPathGUI;
import qupath.lib.gui.actions.ActionTools;
import qupath.lib.gui.actions.annotations.ActionMenu;
import qupath.lib.gui.tools.GuiTools;
import qupath.lib.images.ImageData;
import qupath.lib.objects.PathObject;
import qupath.lib.plugins.parameters.ParameterList;
import qupath.lib.projects.Project;

import java.awt.image.BufferedImage;
import java.io.File;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * The Extensions &gt; CellBridge menu, as QuPath builds its own menus: annotated {@link Action} fields (installed
 * with {@link ActionTools#getAnnotatedActions}), the commands on an image made by
 * {@link QuPathGUI#createImageDataAction} (disabled while no image is open) and training by
 * {@link QuPathGUI#createProjectAction}. Each command gathers its input on the FX thread (dialogs, the selection),
 * does its work in a {@link BackgroundTask}, and changes the image back on the FX thread. The settings are in
 * QuPath's preference pane (Edit &gt; Preferences &gt; CellBridge, see {@link CellBridgeUi}); importing and
 * exporting objects is QuPath's own (File &gt; Import objects from file, File &gt; Export objects as GeoJSON).
 */
@ActionMenu({"Menu.Extensions", "CellBridge"})
public final class CellBridgeCommands {

    private static final String TITLE = "CellBridge";

    private final QuPathGUI qupath;
    private final BooleanProperty running = new SimpleBooleanProperty(CellBridgeServer.isRunning());

    /** What the server is doing (not a command: always disabled). */
    public final Action serverStatus = ActionTools.createAction(() -> { }, statusText());

    /** Start the Python server (it also starts on first use). */
    public final Action startServer = ActionTools.createAction(this::startServer, "Start Python server");

    /** Stop the Python server. */
    public final Action stopServer = ActionTools.createAction(this::stopServer, "Stop Python server");

    /** Start the server if needed and show what it runs: Python, versions, devices and models. */
    public final Action checkServer = ActionTools.createAction(this::checkServer, "Check Python server...");

    /** Separator. */
    public final Action separatorDetection = ActionTools.createSeparator();

    /** Cell detection with any model. */
    public final Action detectCells;

    /** Nucleus segmentation (and cells by expansion). */
    public final Action detectNuclei;

    /** Nuclei with DAB positivity. */
    public final Action detectIhc;

    /** Classify detections with a classifier file. */
    public final Action classify;

    /** Separator. */
    public final Action separatorTraining = ActionTools.createSeparator();

    /** COCO training tiles from the image's annotations. */
    public final Action exportCoco;

    /** Train a model on the project's annotations. */
    public final Action train;

    private CellBridgeCommands(QuPathGUI qupath) {
        this.qupath = qupath;
        serverStatus.setDisabled(true);
        startServer.disabledProperty().bind(running);
        stopServer.disabledProperty().bind(running.not());
        detectCells = qupath.createImageDataAction(imageData -> detect(imageData, "Detect cells", false, null),
                "Detect cells...");
        detectNuclei = qupath.createImageDataAction(imageData -> detect(imageData, "Detect and segment nuclei", true,
                null), "Detect and segment nuclei...");
        detectIhc = qupath.createImageDataAction(this::detectIhc, "Detect and score IHC nuclei (DAB)...");
        classify = qupath.createImageDataAction(this::classify, "Classify detections...");
        exportCoco = qupath.createImageDataAction(this::exportCoco, "Export training tiles (COCO) from annotations...");
        train = qupath.createProjectAction(this::train);
        train.setText("Train a model from the project's annotations...");
        CellBridgeServer.addStatusListener(() -> FXUtils.runOnApplicationThread(() -> {
            serverStatus.setText(statusText());
            running.set(CellBridgeServer.isRunning());
        }));
    }

    /**
     * Add the commands to QuPath's menu bar (Extensions &gt; CellBridge).
     * @param qupath QuPath
     */
    static void install(QuPathGUI qupath) {
        qupath.installActions(ActionTools.getAnnotatedActions(new CellBridgeCommands(qupath)));
    }

    private static String statusText() {
        return "Server: " + CellBridgeServer.status();
    }

    private static final String STAINS_IMAGE = "The image's stain vectors";
    private static final String STAINS_ESTIMATE = "Estimate per image";
    private static final String STAINS_DEFAULT = "QuPath's default H-DAB";
    private static final String CLASSES_THREE = "Negative / 1+ / 2+ / 3+";
    private static final String CLASSES_ONE = "Negative / Positive";

    // ------------------------------------------------------------------------------------------------- server

    private void startServer() {
        BackgroundTask.start(qupath, "Starting the CellBridge server", task -> {
            task.progress(-1, "Starting " + CellBridgeServer.python().executable());
            CellBridgeServer.start();
            return CellBridgeServer.status();
        }, status -> Dialogs.showInfoNotification(TITLE, "Server " + status));
    }

    private void stopServer() {
        BackgroundTask.start(qupath, "Stopping the CellBridge server", task -> {
            CellBridgeServer.stop();
            return null;
        }, none -> Dialogs.showInfoNotification(TITLE, "Server stopped"));
    }

    private void checkServer() {
        BackgroundTask.<String>start(qupath, "Checking the CellBridge server", task -> {
            task.progress(-1, "Connecting to the server of " + CellBridgeServer.python().executable());
            CellBridgeClient client = CellBridgeServer.client();
            return describe(client.version(), client.listModels());
        }, text -> Dialogs.showMessageDialog(TITLE, text));
    }

    /** The server check's report: where Python is, what it runs on, and which models it has. */
    private static String describe(ServerVersion version, List<ModelInfo> models) {
        String folder = CellBridgePreferences.modelFolderProperty().get();
        return String.join("\n",
                CellBridgeServer.status(),
                "Python " + version.python() + ": " + CellBridgeServer.python().executable(),
                "cellbridge " + version.cellbridge() + " (protocol " + version.protocol() + "), PyTorch "
                        + (version.torch() == null ? "unknown" : version.torch()),
                "Devices: " + String.join(", ", version.devices()),
                "Model folder: " + (folder == null || folder.isBlank() ? "none (built-in models only)" : folder),
                "Models: " + models.stream().map(ModelInfo::name).collect(Collectors.joining(", ")));
    }

    // ---------------------------------------------------------------------------------------------- detection

    /** Nuclei with DAB positivity (Negative/1+/2+/3+): QuPath then shows Positive % and H-score per annotation. */
    private void detectIhc(ImageData<BufferedImage> imageData) {
        ColorDeconvolutionStains stains = imageData.getColorDeconvolutionStains();
        String imageStains = stains != null && stains.isH_DAB()
                ? ColorDeconvolutionStains.getColorDeconvolutionStainsAsString(stains, 5) : null;
        detect(imageData, "Detect and score IHC nuclei", true, new IhcChoice(imageStains));
    }

    /** @param imageStains the image's H-DAB stain vectors as QuPath writes them, or null when it has none */
    private record IhcChoice(String imageStains) {
    }

    private void detect(ImageData<BufferedImage> imageData, String title, boolean nuclei, IhcChoice ihc) {
        List<PathObject> parents = CellBridge.defaultParents(imageData);
        BackgroundTask.<List<ModelInfo>>start(qupath, "Listing CellBridge models", task -> {
            task.progress(-1, "Connecting to the CellBridge server");
            return CellBridgeServer.listModels();
        }, models -> {
            List<ModelInfo> usable = nuclei ? models.stream().filter(m -> "nuclei".equals(m.task())).toList() : models;
            if (usable.isEmpty()) {
                Dialogs.showErrorNotification(title, "The server has no " + (nuclei ? "nuclei " : "") + "models; "
                        + "set a model folder in Edit > Preferences > CellBridge");
                return;
            }
            RunSettings settings = askSettings(title, usable, nuclei, ihc);
            if (settings == null)
                return;
            CellBridge cellbridge = CellBridge.of(settings);
            String where = parents.get(0).isRootObject() ? "the whole image"
                    : parents.size() + " annotation" + (parents.size() == 1 ? "" : "s");
            BackgroundTask.<CellBridge.Detections>start(qupath, title + " (" + settings.model() + ", " + where + ")",
                    task -> cellbridge.compute(imageData, parents, task::progress, task::isCancelled),
                    detections -> {
                        CellBridge.Result result = cellbridge.apply(imageData, detections);
                        Dialogs.showInfoNotification(title, String.format(Locale.ROOT, "%d objects in %.1f s: %s",
                                result.objects(), result.seconds(), summary(result.classCounts())));
                    });
        });
    }

    private static RunSettings askSettings(String title, List<ModelInfo> models, boolean nuclei, IhcChoice ihc) {
        List<String> names = models.stream().map(ModelInfo::name).toList();
        String last = CellBridgePreferences.lastModelProperty().get();
        String chosen = names.contains(last) ? last : names.get(0);
        String help = models.stream().map(m -> m.name() + ": " + m.task() + ", " + m.architecture()
                        + (m.mpp() == null ? "" : ", " + m.mpp() + " µm/px") + ", classes " + String.join(", ", m.classes()))
                .collect(Collectors.joining("\n"));
        ParameterList params = new ParameterList()
                .addChoiceParameter("model", "Model", chosen, names, help)
                .addChoiceParameter("device", "Device", deviceChoice(), devices(),
                        "auto: CUDA, else MPS, else CPU")
                .addIntParameter("tileSize", "Tile size", CellBridgePreferences.tileSizeProperty().get(), "px",
                        "Tile size in model pixels (0: the model's)")
                .addIntParameter("overlap", "Tile overlap", CellBridgePreferences.overlapProperty().get(), "px",
                        "Overlap between tiles in model pixels (-1: the model's)");
        if (nuclei)
            params.addDoubleParameter("cellExpansion", "Cell expansion",
                    CellBridgePreferences.cellExpansionProperty().get(), "µm",
                    "Grow cells this far around each nucleus (0: nuclei only)");
        List<String> stainChoices = new ArrayList<>();
        if (ihc != null) {
            if (ihc.imageStains() != null)
                stainChoices.add(STAINS_IMAGE);
            stainChoices.addAll(List.of(STAINS_ESTIMATE, STAINS_DEFAULT));
            params.addChoiceParameter("stains", "Stain vectors", stainChoices.get(0), stainChoices,
                            "The image's H-DAB vectors (Analyze > Preprocessing > Estimate stain vectors), an "
                                    + "estimate per image (Macenko), or QuPath's default H-DAB vectors")
                    .addChoiceParameter("classes", "Intensity classes", CLASSES_THREE, List.of(CLASSES_THREE, CLASSES_ONE),
                            "Three thresholds (1+, 2+, 3+: H-score) or the first only (Positive)")
                    .addDoubleParameter("t1", "Threshold 1+ (or Positive)", 0.2, "OD", "Mean nucleus DAB optical density")
                    .addDoubleParameter("t2", "Threshold 2+", 0.4, "OD", "Mean nucleus DAB optical density")
                    .addDoubleParameter("t3", "Threshold 3+", 0.6, "OD", "Mean nucleus DAB optical density");
        }
        params.addBooleanParameter("replace", "Replace earlier detections",
                        CellBridgePreferences.replaceExistingProperty().get(),
                        "Remove the detections already under each annotation (or the whole image) first")
                .addBooleanParameter("sendTiles", "Send pixels from QuPath", false,
                        "Send the pixels as tiles even when the Python side could read the image file itself");
        if (!GuiTools.showParameterDialog(title, params))
            return null;
        String model = (String) params.getChoiceParameterValue("model");
        String device = (String) params.getChoiceParameterValue("device");
        int tileSize = params.getIntParameterValue("tileSize");
        int overlap = params.getIntParameterValue("overlap");
        boolean replace = params.getBooleanParameterValue("replace");
        CellBridgePreferences.lastModelProperty().set(model);
        CellBridgePreferences.deviceProperty().set(device);
        CellBridgePreferences.tileSizeProperty().set(Math.max(0, tileSize));
        CellBridgePreferences.overlapProperty().set(Math.max(-1, overlap));
        CellBridgePreferences.replaceExistingProperty().set(replace);
        RunSettings.Builder builder = CellBridgePreferences.settingsFor(model)
                .sendTiles(params.getBooleanParameterValue("sendTiles"));
        if (nuclei) {
            double expansion = Math.max(0, params.getDoubleParameterValue("cellExpansion"));
            CellBridgePreferences.cellExpansionProperty().set(expansion);
            builder.task("nuclei");
            if (expansion > 0)
                builder.cellExpansion(expansion);
        }
        if (ihc != null) {
            String stains = (String) params.getChoiceParameterValue("stains");
            builder.stain("ihc-dab").stainVectors(switch (stains) {
                case STAINS_IMAGE -> ihc.imageStains();
                case STAINS_DEFAULT -> "default";
                default -> "estimate";
            });
            double t1 = params.getDoubleParameterValue("t1");
            if (CLASSES_ONE.equals(params.getChoiceParameterValue("classes")))
                builder.positivity(t1);
            else
                builder.positivity(t1, params.getDoubleParameterValue("t2"), params.getDoubleParameterValue("t3"));
        }
        try {
            return builder.build();
        } catch (IllegalArgumentException e) {
            Dialogs.showErrorNotification(title, e.getMessage());
            return null;
        }
    }

    private static String deviceChoice() {
        String device = CellBridgePreferences.deviceProperty().get();
        return device == null || device.isBlank() ? "auto" : device.strip();
    }

    /** @return the devices offered in the dialogs, with the preference's own when it is another (e.g. cuda:1) */
    private static List<String> devices() {
        List<String> devices = new ArrayList<>(List.of("auto", "cpu", "cuda", "mps"));
        if (!devices.contains(deviceChoice()))
            devices.add(deviceChoice());
        return devices;
    }

    private static String summary(Map<String, Integer> counts) {
        if (counts.isEmpty())
            return "nothing found";
        return counts.entrySet().stream().map(e -> e.getKey() + " " + e.getValue()).collect(Collectors.joining(", "));
    }

    // ----------------------------------------------------------------------------------------- classification

    private void classify(ImageData<BufferedImage> imageData) {
        String title = "Classify detections";
        List<PathObject> objects = DetectionClassifier.targets(imageData);
        if (objects.isEmpty()) {
            Dialogs.showErrorNotification(title, "The image has no detections to classify");
            return;
        }
        File file = FileChoosers.promptForFile(qupath.getStage(), "Choose a CellBridge classifier (JSON)",
                FileChoosers.createExtensionFilter("Classifier JSON", "*.json"));
        if (file == null)
            return;
        Path classifier = file.toPath();
        BackgroundTask.<Map<String, PathObject>>start(qupath, title + " (" + objects.size() + " objects)", task -> {
            task.progress(-1, "Classifying with " + classifier.getFileName());
            return DetectionClassifier.classify(objects, classifier, line -> task.progress(-1, line), task::isCancelled);
        }, classified -> {
            int n = DetectionClassifier.applyClasses(imageData, objects, classified, classifier);
            Dialogs.showInfoNotification(title, n + " objects classified: "
                    + summary(CellBridge.countClasses(objects)));
        });
    }

    // ---------------------------------------------------------------------------------------------- training

    private void exportCoco(ImageData<BufferedImage> imageData) {
        String title = "Export training tiles";
        File dir = FileChoosers.promptForDirectory(qupath.getStage(), "Folder for the training tiles", null);
        if (dir == null)
            return;
        BackgroundTask.start(qupath, title, task -> {
            task.progress(-1, "Exporting annotations");
            return TrainingData.exportCoco(imageData, dir.toPath(), line -> task.progress(-1, line), task::isCancelled);
        }, coco -> Dialogs.showInfoNotification(title, "Training tiles and COCO JSON written: " + coco));
    }

    private void train(Project<BufferedImage> project) {
        String title = "Train a model";
        List<TrainingData.Kind> kinds = List.of(TrainingData.Kind.values());
        ParameterList params = new ParameterList()
                .addStringParameter("name", "Model name", "my-nuclei", "Letters, digits, '.', '_' or '-'")
                .addChoiceParameter("kind", "Model", TrainingData.Kind.NUCLEI, kinds,
                        "Nuclei: annotate nuclei as points or polygons; objects: boxes or polygons, by class")
                .addStringParameter("init", "Start from", CellBridgePreferences.lastModelProperty().get(),
                        "Nuclei: fine-tune this model (name or folder) on your annotations; blank: from scratch")
                .addIntParameter("epochs", "Epochs", CellBridgePreferences.trainEpochsProperty().get(), "",
                        "Training epochs (each saves a checkpoint; the best epoch is kept)")
                .addChoiceParameter("device", "Device", deviceChoice(), devices(),
                        "auto: CUDA, else MPS, else CPU");
        if (!GuiTools.showParameterDialog(title, params))
            return;
        String name = params.getStringParameterValue("name").strip();
        TrainingData.Kind kind = (TrainingData.Kind) params.getChoiceParameterValue("kind");
        int epochs = Math.max(1, params.getIntParameterValue("epochs"));
        String device = (String) params.getChoiceParameterValue("device");
        String init = params.getStringParameterValue("init");
        CellBridgePreferences.trainEpochsProperty().set(epochs);
        String folder = CellBridgePreferences.modelFolderProperty().get();
        boolean setFolder = folder == null || folder.isBlank();
        Path outParent = setFolder ? project.getPath().getParent().resolve("cellbridge").resolve("models")
                : Path.of(folder.strip());
        BackgroundTask.start(qupath, title + " (" + name + ")", task -> {
            task.progress(-1, "Exporting training tiles");
            return TrainingData.train(project, name, kind, epochs, outParent, device, init,
                    line -> task.progress(-1, line), task::isCancelled);
        }, model -> {
            String note = "";
            if (setFolder) {
                CellBridgePreferences.modelFolderProperty().set(outParent.toString());
                note = "; the model folder preference is now " + outParent;
            }
            if (setFolder && CellBridgeServer.isRunning())
                note += " (the server restarts on the next command to find it)";
            Dialogs.showInfoNotification(title, "Model " + name + " written to " + model + note);
        });
    }
}
