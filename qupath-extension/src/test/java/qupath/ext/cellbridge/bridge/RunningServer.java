package qupath.ext.cellbridge.bridge;

import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.time.Duration;

/**
 * A real CellBridge server on the Python of $CELLBRIDGE_PYTHON for one end-to-end test class: register it as a
 * static {@code @RegisterExtension} field; it starts before the class's first test and stops after its last.
 */
final class RunningServer implements BeforeAllCallback, AfterAllCallback {

    private PythonEnvironment python;
    private ServerProcess process;
    private CellBridgeClient client;

    @Override
    public void beforeAll(ExtensionContext context) {
        python = Fixtures.python();
        process = ServerProcess.start(python);
        client = process.client().withPollInterval(Duration.ofMillis(100));
    }

    @Override
    public void afterAll(ExtensionContext context) {
        if (process != null)
            process.stop();
    }

    /** @return the Python the server runs on */
    PythonEnvironment python() {
        return python;
    }

    /** @return the server process */
    ServerProcess process() {
        return process;
    }

    /** @return a client of the server that polls jobs every 100 ms */
    CellBridgeClient client() {
        return client;
    }
}
