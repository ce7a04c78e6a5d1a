package qupath.ext.cellbridge.ui;

import org.controlsfx.control.PropertySheet;
import qupath.ext.cellbridge.CellBridgePreferences;
import qupath.fx.prefs.controlsfx.PropertyItemBuilder;
import qupath.lib.gui.QuPathGUI;

import java.util.List;

/**
 * Entry points of the UI package used by {@link qupath.ext.cellbridge.CellBridgeExtension}: the menu, and
 * CellBridge's settings in QuPath's own preference pane (Edit &gt; Preferences &gt; CellBridge), the one place they
 * are edited. A changed Python or model folder takes effect at the next command: the server restarts with it.
 */
public final class CellBridgeUi {

    /** The preference pane's category. */
    static final String CATEGORY = "CellBridge";

    private CellBridgeUi() {
    }

    /**
     * Add the Extensions &gt; CellBridge menu and the preferences.
     * @param qupath QuPath
     */
    public static void install(QuPathGUI qupath) {
        CellBridgeCommands.install(qupath);
        qupath.getPreferencePane().getPropertySheet().getItems().addAll(preferenceItems());
    }

    private static List<PropertySheet.Item> preferenceItems() {
        return List.of(
                new PropertyItemBuilder<>(CellBridgePreferences.pythonProperty(), String.class)
                        .name("Python").category(CATEGORY)
                        .description("Python executable, virtual environment or conda environment with cellbridge "
                                + "installed (empty: python3 on the PATH); the server restarts with it")
                        .build(),
                new PropertyItemBuilder<>(CellBridgePreferences.modelFolderProperty(), String.class)
                        .name("Model folder").category(CATEGORY)
                        .propertyType(PropertyItemBuilder.PropertyType.DIRECTORY)
                        .description("Folder of model packages (one folder each, with model.json) found by name "
                                + "besides the built-in models; trained models are written here")
                        .build(),
                new PropertyItemBuilder<>(CellBridgePreferences.deviceProperty(), String.class)
                        .name("Device").category(CATEGORY)
                        .description("auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
                        .build(),
                new PropertyItemBuilder<>(CellBridgePreferences.tileSizeProperty(), Integer.class)
                        .name("Tile size").category(CATEGORY)
                        .description("Tile size in model pixels (0: the model's)")
                        .build(),
                new PropertyItemBuilder<>(CellBridgePreferences.overlapProperty(), Integer.class)
                        .name("Tile overlap").category(CATEGORY)
                        .description("Tile overlap in model pixels (-1: the model's)")
                        .build(),
                new PropertyItemBuilder<>(CellBridgePreferences.batchSizeProperty(), Integer.class)
                        .name("Batch size").category(CATEGORY)
                        .description("Tiles per forward pass (halves itself when the device runs out of memory)")
                        .build(),
                new PropertyItemBuilder<>(CellBridgePreferences.trainEpochsProperty(), Integer.class)
                        .name("Training epochs").category(CATEGORY)
                        .description("Epochs for 'Train a model'")
                        .build());
    }
}
