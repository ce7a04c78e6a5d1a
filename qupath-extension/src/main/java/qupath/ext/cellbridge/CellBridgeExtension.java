package qupath.ext.cellbridge;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.cellbridge.ui.CellBridgeUi;
import qupath.lib.common.Version;
import qupath.lib.gui.QuPathGUI;
import qupath.lib.gui.extensions.QuPathExtension;

/**
 * The CellBridge QuPath extension: the Extensions &gt; CellBridge menu and the CellBridge preferences (in QuPath's
 * preference pane). The work is
 * done by a Python server (the {@code cellbridge} package) that the extension starts on first use.
 */
public class CellBridgeExtension implements QuPathExtension {

    private static final Logger logger = LoggerFactory.getLogger(CellBridgeExtension.class);

    private static final Version QUPATH_VERSION = Version.parse("v0.6.0");

    private boolean installed;

    @Override
    public void installExtension(QuPathGUI qupath) {
        if (installed) {
            logger.debug("{} is already installed", getName());
            return;
        }
        installed = true;
        CellBridgeServer.setConfiguration(CellBridgePreferences::serverConfiguration);
        CellBridgeUi.install(qupath);
    }

    @Override
    public String getName() {
        return "CellBridge";
    }

    @Override
    public String getDescription() {
        return "Deep-learning cell detection, nucleus segmentation and classification, run by a Python (PyTorch) "
                + "server; Groovy API: qupath.ext.cellbridge.CellBridge";
    }

    @Override
    public Version getQuPathVersion() {
        return QUPATH_VERSION;
    }
}
