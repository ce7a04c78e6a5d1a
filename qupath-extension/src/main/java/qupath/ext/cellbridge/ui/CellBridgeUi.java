package qupath.ext.cellbridge.ui;

import qupath.lib.gui.QuPathGUI;

/** Entry points of the UI package used by {@link qupath.ext.cellbridge.CellBridgeExtension}. */
public final class CellBridgeUi {

    private CellBridgeUi() {
    }

    /**
     * Add CellBridge's preferences to QuPath's preference pane (category "CellBridge").
     * @param qupath QuPath
     */
    public static void installPreferences(QuPathGUI qupath) {
        PreferencesDialog.install(qupath);
    }
}
