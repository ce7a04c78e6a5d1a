package qupath.ext.cellbridge;

import javafx.beans.property.BooleanProperty;
import javafx.beans.property.DoubleProperty;
import javafx.beans.property.IntegerProperty;
import javafx.beans.property.StringProperty;
import qupath.ext.cellbridge.bridge.RunSettings;
import qupath.lib.gui.prefs.PathPrefs;

/**
 * CellBridge's persistent preferences (QuPath stores them with its own, see {@link PathPrefs}): where Python is,
 * where extra models are, and the defaults of the menu commands. Scripts do not read the run defaults: a script
 * states its parameters, so it reproduces the same run anywhere.
 */
public final class CellBridgePreferences {

    /** Tile size meaning "the model's own". */
    public static final int MODEL_TILE_SIZE = 0;
    /** Overlap meaning "the model's own". */
    public static final int MODEL_OVERLAP = -1;

    private static final StringProperty python = PathPrefs.createPersistentPreference("cellbridge.python", "");
    private static final StringProperty modelFolder = PathPrefs.createPersistentPreference("cellbridge.modelFolder", "");
    private static final StringProperty device = PathPrefs.createPersistentPreference("cellbridge.device", "auto");
    private static final IntegerProperty tileSize = PathPrefs.createPersistentPreference("cellbridge.tileSize",
            MODEL_TILE_SIZE);
    private static final IntegerProperty overlap = PathPrefs.createPersistentPreference("cellbridge.overlap",
            MODEL_OVERLAP);
    private static final IntegerProperty batchSize = PathPrefs.createPersistentPreference("cellbridge.batchSize", 4);
    private static final DoubleProperty cellExpansion = PathPrefs.createPersistentPreference("cellbridge.cellExpansion",
            0.0);
    private static final BooleanProperty replaceExisting = PathPrefs.createPersistentPreference(
            "cellbridge.replaceExisting", true);
    private static final StringProperty lastModel = PathPrefs.createPersistentPreference("cellbridge.lastModel",
            "nuclei-brightfield");
    private static final IntegerProperty trainEpochs = PathPrefs.createPersistentPreference("cellbridge.trainEpochs",
            10);

    private CellBridgePreferences() {
    }

    /** @return the Python executable, virtual environment or conda environment with cellbridge (empty: PATH) */
    public static StringProperty pythonProperty() {
        return python;
    }

    /** @return a folder of model packages added to the server's search path (empty: built-in models only) */
    public static StringProperty modelFolderProperty() {
        return modelFolder;
    }

    /** @return "auto", "cpu", "cuda", "cuda:N" or "mps" */
    public static StringProperty deviceProperty() {
        return device;
    }

    /** @return tile size in model pixels ({@link #MODEL_TILE_SIZE}: the model's) */
    public static IntegerProperty tileSizeProperty() {
        return tileSize;
    }

    /** @return tile overlap in model pixels ({@link #MODEL_OVERLAP}: the model's) */
    public static IntegerProperty overlapProperty() {
        return overlap;
    }

    /** @return tiles per forward pass */
    public static IntegerProperty batchSizeProperty() {
        return batchSize;
    }

    /** @return µm to grow nuclei into cells (0: nuclei only) */
    public static DoubleProperty cellExpansionProperty() {
        return cellExpansion;
    }

    /** @return whether earlier detections under a parent are removed before new ones are added */
    public static BooleanProperty replaceExistingProperty() {
        return replaceExisting;
    }

    /** @return the model chosen last in a dialog */
    public static StringProperty lastModelProperty() {
        return lastModel;
    }

    /** @return training epochs for "Train a model" */
    public static IntegerProperty trainEpochsProperty() {
        return trainEpochs;
    }

    /** @return the server configuration these preferences give (what the extension hands {@link CellBridgeServer}) */
    public static CellBridgeServer.Configuration serverConfiguration() {
        return new CellBridgeServer.Configuration(python.get(), modelFolder.get(), device.get());
    }

    /**
     * Run settings for a model from the current preferences (what the menu commands start from).
     * @param model a model name or folder
     * @return a builder to adjust further
     */
    public static RunSettings.Builder settingsFor(String model) {
        RunSettings.Builder builder = RunSettings.builder(model)
                .device(device.get())
                .batchSize(batchSize.get() > 0 ? batchSize.get() : null)
                .replaceExisting(replaceExisting.get());
        if (tileSize.get() > 0)
            builder.tileSize(tileSize.get());
        if (overlap.get() >= 0)
            builder.overlap(overlap.get());
        return builder;
    }
}
