package qupath.ext.cellbridge.bridge;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.DisabledOnOs;
import org.junit.jupiter.api.condition.EnabledOnOs;
import org.junit.jupiter.api.condition.OS;
import org.junit.jupiter.api.io.TempDir;

import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Start-up failures of {@link ServerProcess}, with fake "python" scripts (no cellbridge needed). */
@DisabledOnOs(OS.WINDOWS)
class ServerProcessTest {

    @TempDir
    Path dir;

    private static final ServerProcess.Settings FAST = ServerProcess.Settings.defaults()
            .withStartTimeout(Duration.ofSeconds(20)).withStopGrace(Duration.ofMillis(200));

    private PythonEnvironment fake(String body) throws Exception {
        Path file = dir.resolve("python");
        Files.writeString(file, "#!/bin/sh\n" + body + "\n");
        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rwx------"));
        return PythonEnvironment.ofExecutable(file);
    }

    @Test
    void pythonWithoutCellBridgeFailsWithItsError() {
        Path system = Path.of("/usr/bin/python3");
        assumeTrue(Files.isExecutable(system), "no /usr/bin/python3 on this machine");
        // the caller's PYTHONPATH (a source checkout) would give it part of cellbridge
        PythonEnvironment python = PythonEnvironment.ofExecutable(system).withEnvironment(Map.of("PYTHONPATH", ""));
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> ServerProcess.start(python, FAST));
        assumeTrue(!e.getMessage().contains("did not answer"), "/usr/bin/python3 has cellbridge installed");
        assertTrue(e.getMessage().startsWith("the CellBridge server exited with code 1 before it was ready; "
                + "its last output:\n"), e.getMessage());
        assertTrue(e.getMessage().endsWith("No module named cellbridge"), e.getMessage());
    }

    @Test
    void serverThatNeverGetsReadyTimesOutWithItsOutput() throws Exception {
        PythonEnvironment python = fake("echo 'loading the model' >&2\nexec sleep 60");
        long start = System.nanoTime();
        CellBridgeException e = assertThrows(CellBridgeException.class,
                () -> ServerProcess.start(python, FAST.withStartTimeout(Duration.ofMillis(1500))));
        assertEquals("the CellBridge server did not become ready within 1.5 s; its last output:\nloading the model",
                e.getMessage());
        assertTrue(System.nanoTime() - start < 15_000_000_000L, "the process is killed, not waited for");
    }

    @Test
    @EnabledOnOs(OS.LINUX)  // GNU stat
    void commandLineTokenFileAndProtocolAreChecked() throws Exception {
        // the fake prints its arguments and the token file's mode, then announces protocol 2
        PythonEnvironment python = fake("echo \"args: $*\" >&2\n"
                + "echo \"mode: $(stat -c %a \"$7\")\" >&2\n"
                + "echo 'some library chatter on stdout'\n"
                + "echo '{\"event\": \"ready\", \"port\": 1, \"pid\": '$$', \"version\": \"9.0\", \"protocol\": 2}'\n"
                + "exec sleep 60");
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> ServerProcess.start(python, FAST));
        assertEquals("the CellBridge server speaks protocol 2 but this extension needs protocol 1; install matching "
                + "versions of the extension and the cellbridge Python package", e.getMessage());
        // what the fake saw is logged; start it again to read its stderr through a readiness failure
        PythonEnvironment echo = fake("echo \"args: $*\" >&2\necho \"mode: $(stat -c %a \"$7\")\" >&2\nexit 2");
        e = assertThrows(CellBridgeException.class, () -> ServerProcess.start(echo, FAST));
        String pid = Long.toString(ProcessHandle.current().pid());
        assertTrue(e.getMessage().startsWith("the CellBridge server exited with code 2 before it was ready; its last "
                + "output:\nargs: -m cellbridge serve --port 0 --token-file "), e.getMessage());
        assertTrue(e.getMessage().contains(" --parent-pid " + pid + "\n"), e.getMessage());
        assertTrue(e.getMessage().endsWith("\nmode: 600"), e.getMessage());
    }

    @Test
    void deviceAndIdleTimeoutArePassedOn() throws Exception {
        PythonEnvironment echo = fake("echo \"args: $*\" >&2\nexit 2");
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> ServerProcess.start(echo,
                FAST.withDevice("cpu").withIdleTimeout(Duration.ofMinutes(5))));
        assertTrue(e.getMessage().endsWith(" --device cpu --idle-timeout 300"), e.getMessage());
    }

    @Test
    void serverThatDoesNotAnswerIsReported() throws Exception {
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();  // closed again: nobody listens there
        }
        PythonEnvironment python = fake("echo secret > \"$7\"\n"
                + "echo '{\"event\": \"ready\", \"port\": " + port + ", \"pid\": '$$', \"version\": \"9.0\", \"protocol\": 1}'\n"
                + "echo 'listening' >&2\nexec sleep 60");
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> ServerProcess.start(python, FAST));
        assertTrue(e.getMessage().startsWith("the CellBridge server started on 127.0.0.1:" + port
                + " but does not answer: the CellBridge server did not answer ping(): "), e.getMessage());
        assertTrue(e.getMessage().endsWith("; its last output:\nlistening"), e.getMessage());
    }

    @Test
    void missingExecutableFailsToStart() {
        Path bogus = dir.resolve("nope/python");
        CellBridgeException e = assertThrows(CellBridgeException.class,
                () -> ServerProcess.start(PythonEnvironment.ofExecutable(bogus), FAST));
        assertTrue(e.getMessage().startsWith("cannot start the CellBridge server with " + bogus + ": "), e.getMessage());
    }
}
