package qupath.ext.cellbridge.bridge;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.DisabledOnOs;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.condition.OS;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CancellationException;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link CliProcess} with a shell script standing in for Python (it sees {@code -m cellbridge ARGS}). */
@DisabledOnOs(OS.WINDOWS)
class CliProcessTest {

    private static PythonEnvironment fakePython(Path dir, String body) throws Exception {
        Path script = dir.resolve("python");
        Files.writeString(script, "#!/bin/sh\n" + body + "\n");
        Files.setPosixFilePermissions(script, PosixFilePermissions.fromString("rwx------"));
        return PythonEnvironment.ofExecutable(script);
    }

    @Test
    void passesTheArgumentsAndStreamsEveryLine(@TempDir Path dir) throws Exception {
        PythonEnvironment python = fakePython(dir, "echo \"$@\"; printf 'step 1\\rstep 2\\n'; echo oops >&2");
        List<String> seen = new ArrayList<>();
        CliProcess.Result result = CliProcess.run(python, List.of("export-coco", "a b"), seen::add, null);
        assertEquals(List.of("-m cellbridge export-coco a b", "step 1", "step 2", "oops"), result.output());
        assertEquals(result.output(), seen);
    }

    @Test
    void aFailureCarriesTheLastLine(@TempDir Path dir) throws Exception {
        PythonEnvironment python = fakePython(dir, "echo working; echo 'cellbridge train: error: no data' >&2; exit 2");
        CellBridgeException e = assertThrows(CellBridgeException.class,
                () -> CliProcess.run(python, List.of("train"), null, null));
        assertEquals("cellbridge train failed (exit code 2): cellbridge train: error: no data", e.getMessage());
    }

    @Test
    void cancellingStopsTheProcess(@TempDir Path dir) throws Exception {
        PythonEnvironment python = fakePython(dir, "echo started; exec sleep 30");
        long start = System.nanoTime();
        List<String> seen = Collections.synchronizedList(new ArrayList<>());
        assertThrows(CancellationException.class, () -> CliProcess.run(python, List.of("train"), seen::add,
                () -> !seen.isEmpty()));
        assertTrue(System.nanoTime() - start < 10_000_000_000L, "stopped well before the command would end");
    }

    @Test
    @EnabledIfEnvironmentVariable(named = "CELLBRIDGE_PYTHON", matches = ".+")
    void runsTheRealCli() {
        PythonEnvironment python = PythonEnvironment.ofExecutable(Path.of(System.getenv("CELLBRIDGE_PYTHON")));
        assertTrue(CliProcess.run(python, List.of("--version"), null, null).text().startsWith("cellbridge "));
    }
}
