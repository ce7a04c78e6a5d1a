package qupath.ext.cellbridge;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.io.TempDir;
import qupath.ext.cellbridge.bridge.ModelInfo;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The extension's shared server follows its configuration (the preferences in QuPath): a new model folder restarts
 * it at the next call or start, with the folder's models; a new device alone does not (each run names its device).
 */
@Tag("e2e")
@EnabledIfEnvironmentVariable(named = "CELLBRIDGE_PYTHON", matches = ".+", disabledReason = QuPathFixtures.NO_PYTHON)
class CellBridgeServerTest {

    @Test
    void anotherModelFolderRestartsTheServerWithItsModelsAnotherDeviceDoesNot(@TempDir Path models) throws Exception {
        String python = System.getenv("CELLBRIDGE_PYTHON");
        Path builtIn = Path.of(System.getProperty("cellbridge.repo", ""), "python/cellbridge/models/builtin/classical");
        Path mine = Files.createDirectories(models.resolve("my-classical"));
        Files.copy(builtIn.resolve("weights.pt"), mine.resolve("weights.pt"));
        Files.writeString(mine.resolve("model.json"), Files.readString(builtIn.resolve("model.json"))
                .replace("\"name\": \"classical\"", "\"name\": \"my-classical\""));
        AtomicReference<CellBridgeServer.Configuration> config = new AtomicReference<>(
                new CellBridgeServer.Configuration(python, null, "cpu"));
        CellBridgeServer.setConfiguration(config::get);
        try {
            assertEquals("pong", CellBridgeServer.client().ping());
            String first = CellBridgeServer.status();
            assertTrue(first.startsWith("running: "), first);
            assertFalse(names(CellBridgeServer.listModels()).contains("my-classical"));

            config.set(new CellBridgeServer.Configuration(" " + python + " ", "", "auto"));
            CellBridgeServer.client();
            assertEquals(first, CellBridgeServer.status(), "the same server: only the device changed");

            config.set(new CellBridgeServer.Configuration(python, models.toString(), "auto"));
            List<String> names = names(CellBridgeServer.listModels());
            assertNotEquals(first, CellBridgeServer.status(), "another process (pid) after the restart");
            assertTrue(names.contains("my-classical"), "the new folder's model: " + names);

            String second = CellBridgeServer.status();
            config.set(new CellBridgeServer.Configuration(python, null, "cpu"));
            CellBridgeServer.start();  // Start Python server: restarts too when the folder changed
            assertNotEquals(second, CellBridgeServer.status());
            assertFalse(names(CellBridgeServer.listModels()).contains("my-classical"));
        } finally {
            CellBridgeServer.stop();
            CellBridgeServer.setConfiguration(() -> new CellBridgeServer.Configuration(python, null, "cpu"));
        }
    }

    private static List<String> names(List<ModelInfo> models) {
        return models.stream().map(ModelInfo::name).toList();
    }
}
