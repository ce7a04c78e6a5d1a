package qupath.ext.cellbridge.ui;

import qupath.ext.cellbridge.CellBridgePreferences;
import qupath.fx.prefs.controlsfx.PropertyItemBuilder;
import qupath.lib.gui.QuPathGUI;
import qupath.lib.gui.tools.GuiTools;
import qupath.lib.plugins.parameters.ParameterList;

import java.util.ArrayList;
import java.util.List;

/**
 * CellBridge's preferences: a dialog (Extensions &gt; CellBridge &gt; Preferences), and the same properties in
 * QuPath's own preference pane under "CellBridge". Both edit the persistent properties of
 * {@link CellBridgePreferences}.
 */
final class PreferencesDialog {

    static final String CATEGORY = "CellBridge";

    /** The devices offered in choices (any other value can be typed in QuPath's preference pane). */
    static final List<String> DEVICES = List.of("auto", "cpu", "cuda", "mps");

    private PreferencesDialog() {
    }

    /**
     * Show the dialog (FX thread) and store what the user chose.
     * @return true when the Python or model folder changed (the server must restart to use them)
     */
    static boolean show() {
        String python = CellBridgePreferences.pythonProperty().get();
        String models = CellBridgePreferences.modelFolderProperty().get();
        ParameterList params = new ParameterList()
                .addTitleParameter("Python")
                .addStringParameter("python", "Python", python,
                        "A Python executable, virtual environment or conda environment with cellbridge installed "
                                + "(empty: python3 on the PATH)")
                .addStringParameter("models", "Model folder", models,
                        "A folder of model packages (one folder each, with model.json), found by name in addition "
                                + "to the built-in models; trained models are written here")
                .addTitleParameter("Defaults of the commands")
                .addChoiceParameter("device", "Device", device(), devices(), "auto: CUDA, else MPS, else CPU")
                .addIntParameter("tileSize", "Tile size", CellBridgePreferences.tileSizeProperty().get(), "px",
                        "Tile size in model pixels (0: the model's)")
                .addIntParameter("overlap", "Tile overlap", CellBridgePreferences.overlapProperty().get(), "px",
                        "Overlap between tiles in model pixels (-1: the model's)")
                .addIntParameter("batchSize", "Batch size", CellBridgePreferences.batchSizeProperty().get(), "tiles",
                        "Tiles per forward pass (halves itself when the device runs out of memory)")
                .addIntParameter("epochs", "Training epochs", CellBridgePreferences.trainEpochsProperty().get(), "",
                        "Epochs for 'Train a model'");
        if (!GuiTools.showParameterDialog("CellBridge preferences", params))
            return false;
        String newPython = params.getStringParameterValue("python").strip();
        String newModels = params.getStringParameterValue("models").strip();
        CellBridgePreferences.pythonProperty().set(newPython);
        CellBridgePreferences.modelFolderProperty().set(newModels);
        CellBridgePreferences.deviceProperty().set((String) params.getChoiceParameterValue("device"));
        CellBridgePreferences.tileSizeProperty().set(Math.max(0, params.getIntParameterValue("tileSize")));
        CellBridgePreferences.overlapProperty().set(Math.max(-1, params.getIntParameterValue("overlap")));
        CellBridgePreferences.batchSizeProperty().set(Math.max(1, params.getIntParameterValue("batchSize")));
        CellBridgePreferences.trainEpochsProperty().set(Math.max(1, params.getIntParameterValue("epochs")));
        return !newPython.equals(python == null ? "" : python) || !newModels.equals(models == null ? "" : models);
    }

    /**
     * Add the properties to QuPath's preference pane.
     * @param qupath QuPath
     */
    static void install(QuPathGUI qupath) {
        var items = qupath.getPreferencePane().getPropertySheet().getItems();
        items.add(new PropertyItemBuilder<>(CellBridgePreferences.pythonProperty(), String.class)
                .name("Python").category(CATEGORY)
                .description("Python executable, virtual environment or conda environment with cellbridge installed "
                        + "(empty: python3 on the PATH)")
                .build());
        items.add(new PropertyItemBuilder<>(CellBridgePreferences.modelFolderProperty(), String.class)
                .name("Model folder").category(CATEGORY)
                .propertyType(PropertyItemBuilder.PropertyType.DIRECTORY)
                .description("Folder of model packages found by name besides the built-in models")
                .build());
        items.add(new PropertyItemBuilder<>(CellBridgePreferences.deviceProperty(), String.class)
                .name("Device").category(CATEGORY)
                .description("auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
                .build());
        items.add(new PropertyItemBuilder<>(CellBridgePreferences.tileSizeProperty(), Integer.class)
                .name("Tile size").category(CATEGORY)
                .description("Tile size in model pixels (0: the model's)")
                .build());
        items.add(new PropertyItemBuilder<>(CellBridgePreferences.overlapProperty(), Integer.class)
                .name("Tile overlap").category(CATEGORY)
                .description("Tile overlap in model pixels (-1: the model's)")
                .build());
        items.add(new PropertyItemBuilder<>(CellBridgePreferences.batchSizeProperty(), Integer.class)
                .name("Batch size").category(CATEGORY)
                .description("Tiles per forward pass")
                .build());
    }

    private static String device() {
        String device = CellBridgePreferences.deviceProperty().get();
        return device == null || device.isBlank() ? "auto" : device.strip();
    }

    static List<String> devices() {
        List<String> devices = new ArrayList<>(DEVICES);
        if (!devices.contains(device()))
            devices.add(device());
        return devices;
    }
}
