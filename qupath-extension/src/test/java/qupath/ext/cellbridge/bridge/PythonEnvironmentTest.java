package qupath.ext.cellbridge.bridge;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.DisabledOnOs;
import org.junit.jupiter.api.condition.OS;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class PythonEnvironmentTest {

    @TempDir
    Path dir;

    /** A fake "python": a shell script. */
    private Path script(String relative, String body) throws Exception {
        Path file = dir.resolve(relative);
        Files.createDirectories(file.getParent());
        Files.writeString(file, "#!/bin/sh\n" + body + "\n");
        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rwx------"));
        return file;
    }

    @Test
    void missingExecutableSaysSo() {
        Path bogus = dir.resolve("no/such/python");
        CellBridgeException e = assertThrows(CellBridgeException.class,
                () -> PythonEnvironment.ofExecutable(bogus).check());
        assertEquals("Python not found: " + bogus + " does not exist; choose a Python executable, virtual environment"
                + " or conda environment with cellbridge installed", e.getMessage());
        e = assertThrows(CellBridgeException.class, () -> PythonEnvironment.fromPath(bogus));
        assertTrue(e.getMessage().startsWith("Python not found: " + bogus + " does not exist"), e.getMessage());
    }

    @Test
    void folderWithoutPythonIsNotAnEnvironment() {
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> PythonEnvironment.ofVirtualEnv(dir));
        assertEquals("Python not found: " + dir + " is not a virtual environment (no bin/python or bin/python3 or "
                + "Scripts/python.exe in it)", e.getMessage());
        e = assertThrows(CellBridgeException.class, () -> PythonEnvironment.ofConda(dir.resolve("gone")));
        assertEquals("Python not found: conda environment folder " + dir.resolve("gone") + " does not exist",
                e.getMessage());
    }

    @Test
    void notExecutableSaysSo() throws Exception {
        Path file = Files.writeString(dir.resolve("python"), "text");
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> PythonEnvironment.ofExecutable(file).check());
        assertEquals("Python not usable: " + file + " is not an executable file", e.getMessage());
    }

    @Test
    void pythonWithoutCellBridgeSaysWhatToInstall() {
        Path system = Path.of("/usr/bin/python3");
        assumeTrue(Files.isExecutable(system), "no /usr/bin/python3 on this machine");
        // the caller's PYTHONPATH (a source checkout) would give it part of cellbridge
        PythonEnvironment python = PythonEnvironment.ofExecutable(system).withEnvironment(Map.of("PYTHONPATH", ""));
        CellBridgeException e;
        try {
            python.check(Duration.ofSeconds(30));
            assumeTrue(false, "/usr/bin/python3 has cellbridge installed");
            return;
        } catch (CellBridgeException caught) {
            e = caught;
        }
        assertEquals("cellbridge is not installed in /usr/bin/python3: run `/usr/bin/python3 -m pip install -e python`"
                + " from the CellBridge folder (ModuleNotFoundError: No module named 'cellbridge')", e.getMessage());
    }

    @Test
    @DisabledOnOs(OS.WINDOWS)
    void findsPythonInVirtualAndCondaEnvironments() throws Exception {
        Path venvPython = script("venv/bin/python", "echo '{\"cellbridge\": \"9.8.7\", \"python\": \"3.11\"}'");
        PythonEnvironment venv = PythonEnvironment.ofVirtualEnv(dir.resolve("venv"));
        assertEquals(venvPython, venv.executable());
        assertEquals("9.8.7", venv.check());
        assertEquals(venvPython, PythonEnvironment.fromPath(dir.resolve("venv")).executable());
        assertEquals(venvPython, PythonEnvironment.fromPath(venvPython).executable());
        Path condaPython = script("conda/bin/python", "exit 0");
        assertEquals(condaPython, PythonEnvironment.ofConda(dir.resolve("conda")).executable());
    }

    @Test
    @DisabledOnOs(OS.WINDOWS)
    void otherFailuresIncludePythonsErrorLine() throws Exception {
        Path broken = script("broken/python", "echo 'Traceback (most recent call last):' >&2\n"
                + "echo 'ImportError: libtorch_cpu.so: cannot open shared object file' >&2\nexit 1");
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> PythonEnvironment.ofExecutable(broken).check());
        assertEquals("cellbridge is installed in " + broken + " but cannot be imported, a dependency is missing: run `"
                + broken + " -m pip install -e python` from the CellBridge folder (ImportError: libtorch_cpu.so: "
                + "cannot open shared object file)", e.getMessage());

        Path crash = script("crash/python", "echo 'Fatal Python error: init_fs_encoding' >&2\nexit 3");
        e = assertThrows(CellBridgeException.class, () -> PythonEnvironment.ofExecutable(crash).check());
        assertEquals(crash + " failed to import cellbridge (exit code 3): Fatal Python error: init_fs_encoding",
                e.getMessage());

        Path chatty = script("chatty/python", "echo hello");
        e = assertThrows(CellBridgeException.class, () -> PythonEnvironment.ofExecutable(chatty).check());
        assertEquals(chatty + " printed an unexpected answer to the cellbridge check: 'hello'", e.getMessage());
    }

    @Test
    @DisabledOnOs(OS.WINDOWS)
    void slowPythonTimesOut() throws Exception {
        Path slow = script("slow/python", "exec sleep 30");
        long start = System.nanoTime();
        CellBridgeException e = assertThrows(CellBridgeException.class,
                () -> PythonEnvironment.ofExecutable(slow).check(Duration.ofMillis(300)));
        assertEquals(slow + " did not finish `import cellbridge` within 300 ms", e.getMessage());
        assertTrue(System.nanoTime() - start < 10_000_000_000L);
    }

    @Test
    @DisabledOnOs(OS.WINDOWS)
    void environmentVariablesReachTheProcess() throws Exception {
        Path echo = script("env/python", "echo \"{\\\"cellbridge\\\": \\\"$CELLBRIDGE_MODEL_PATH\\\"}\"");
        PythonEnvironment python = PythonEnvironment.ofExecutable(echo).withEnvironment(Map.of("CELLBRIDGE_MODEL_PATH", "/m"));
        assertEquals("/m", python.check());
    }

    @Test
    void findsPythonOnThePath() {
        assumeTrue(System.getenv("PATH") != null);
        try {
            PythonEnvironment python = PythonEnvironment.onPath();
            assertTrue(python.executable().getFileName().toString().startsWith("python"), python.toString());
        } catch (CellBridgeException e) {
            assertTrue(e.getMessage().startsWith("no Python found on the PATH"), e.getMessage());
        }
    }
}
