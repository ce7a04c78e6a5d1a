package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import py4j.ClientServer;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The CellBridge Python server as a child process, connected over py4j on the loopback interface.
 * <p>
 * Starts {@code python -m cellbridge serve --port 0 --token-file F --parent-pid P}, waits for its JSON ready
 * line, reads the auth token from the (0600) token file, connects a py4j {@link ClientServer} and checks the
 * connection with {@code ping()}. The server's stderr goes to this class's logger. The server exits by itself
 * when this JVM dies.
 * <pre>{@code
 * try (ServerProcess server = ServerProcess.start(PythonEnvironment.fromPath(venv))) {
 *     List<DetectedObject> nuclei = server.client().run(request, listener, cancelled);
 * }
 * }</pre>
 */
public final class ServerProcess implements AutoCloseable {

    private static final Logger logger = LoggerFactory.getLogger(ServerProcess.class);

    private static final int STDERR_TAIL = 30;

    /** How long {@link #ensureRunning()} waits for {@code ping()} before it restarts a hung server. */
    private static final Duration HEALTH_TIMEOUT = Duration.ofSeconds(15);

    /**
     * How the server is started and stopped.
     *
     * @param device the default device ({@code --device}), or null for the server's default ("auto")
     * @param idleTimeout stop after this long without a call ({@code --idle-timeout}), or null/zero for never
     * @param startTimeout how long to wait for the ready line
     * @param stopGrace how long {@link #stop()} waits for a clean exit before killing the process
     * @param callTimeout the longest a single call may take before the connection is considered dead
     */
    public record Settings(String device, Duration idleTimeout, Duration startTimeout, Duration stopGrace,
                           Duration callTimeout) {

        /** Checks the durations. */
        public Settings {
            Objects.requireNonNull(startTimeout, "startTimeout");
            Objects.requireNonNull(stopGrace, "stopGrace");
            Objects.requireNonNull(callTimeout, "callTimeout");
        }

        /** @return device "auto", no idle timeout, 120 s to start, 5 s to stop, 10 min per call */
        public static Settings defaults() {
            return new Settings(null, null, Duration.ofSeconds(120), Duration.ofSeconds(5), Duration.ofMinutes(10));
        }

        /**
         * @param device e.g. "cpu", "cuda", "mps"
         * @return settings like these with that device
         */
        public Settings withDevice(String device) {
            return new Settings(device, idleTimeout, startTimeout, stopGrace, callTimeout);
        }

        /**
         * @param timeout stop the server after this long without a call
         * @return settings like these with that idle timeout
         */
        public Settings withIdleTimeout(Duration timeout) {
            return new Settings(device, timeout, startTimeout, stopGrace, callTimeout);
        }

        /**
         * @param timeout how long to wait for the ready line
         * @return settings like these with that start timeout
         */
        public Settings withStartTimeout(Duration timeout) {
            return new Settings(device, idleTimeout, timeout, stopGrace, callTimeout);
        }

        /**
         * @param grace how long to wait for a clean exit
         * @return settings like these with that grace period
         */
        public Settings withStopGrace(Duration grace) {
            return new Settings(device, idleTimeout, startTimeout, grace, callTimeout);
        }
    }

    /**
     * The server's ready line.
     *
     * @param port the Python side's py4j port on 127.0.0.1
     * @param pid the server's process id
     * @param version the cellbridge version
     * @param protocol the protocol version
     */
    public record Ready(int port, long pid, String version, int protocol) {
    }

    private final PythonEnvironment python;
    private final Settings settings;
    private Connection connection;

    private ServerProcess(PythonEnvironment python, Settings settings) {
        this.python = python;
        this.settings = settings;
    }

    /**
     * Start a server with default settings.
     * @param python the Python with cellbridge installed
     * @return the running, connected server
     * @throws CellBridgeException if it does not start (with its last stderr lines)
     */
    public static ServerProcess start(PythonEnvironment python) {
        return start(python, Settings.defaults());
    }

    /**
     * Start a server.
     * @param python the Python with cellbridge installed
     * @param settings how to start it
     * @return the running, connected server
     * @throws CellBridgeException if it does not start (with its last stderr lines)
     */
    public static ServerProcess start(PythonEnvironment python, Settings settings) {
        ServerProcess server = new ServerProcess(Objects.requireNonNull(python), Objects.requireNonNull(settings));
        server.connection = server.launch();
        return server;
    }

    /**
     * The current connection's service proxy.
     * @return the service
     * @throws CellBridgeException if the server was stopped
     */
    public synchronized CellBridgeService service() {
        if (connection == null)
            throw new CellBridgeException("the CellBridge server is not running (it was stopped)");
        return connection.service;
    }

    /** @return a client that always calls the current connection (so it survives {@link #ensureRunning()}) */
    public CellBridgeClient client() {
        return CellBridgeClient.of(this::service);
    }

    /** @return the current server's ready line (port, pid, version) */
    public synchronized Ready ready() {
        if (connection == null)
            throw new CellBridgeException("the CellBridge server is not running (it was stopped)");
        return connection.ready;
    }

    /** @return true while the server process runs */
    public synchronized boolean isAlive() {
        return connection != null && connection.process.isAlive();
    }

    /**
     * Restart the server if its process died or it stopped answering {@code ping()}.
     * @return true if it was restarted
     * @throws CellBridgeException if it cannot be restarted
     */
    public synchronized boolean ensureRunning() {
        if (connection != null && connection.process.isAlive()) {
            String problem = connection.ping(HEALTH_TIMEOUT);
            if (problem == null)
                return false;
            logger.warn("CellBridge server does not answer ({}); restarting it", problem);
        } else if (connection != null) {
            logger.warn("CellBridge server exited (code {}); restarting it", connection.process.exitValue());
        }
        if (connection != null)
            connection.close(settings.stopGrace(), false);
        connection = null;
        connection = launch();
        return true;
    }

    /** Ask the server to shut down, kill it if it is still alive after the grace period, and disconnect. */
    public synchronized void stop() {
        if (connection == null)
            return;
        Connection c = connection;
        connection = null;
        c.close(settings.stopGrace(), true);
    }

    /** Same as {@link #stop()}. */
    @Override
    public void close() {
        stop();
    }

    // --------------------------------------------------------------------------------------------- start

    private Connection launch() {
        Path tokenFile = createTokenFile();
        List<String> arguments = new ArrayList<>(List.of("-m", "cellbridge", "serve", "--port", "0",
                "--token-file", tokenFile.toString(), "--parent-pid", Long.toString(ProcessHandle.current().pid())));
        if (settings.device() != null && !settings.device().isBlank())
            arguments.addAll(List.of("--device", settings.device()));
        if (settings.idleTimeout() != null && !settings.idleTimeout().isZero())
            arguments.addAll(List.of("--idle-timeout", Long.toString(Math.max(1, settings.idleTimeout().toSeconds()))));
        ProcessBuilder builder = python.processBuilder(arguments);
        logger.info("Starting CellBridge server: {}", String.join(" ", builder.command()));
        Process process;
        try {
            process = builder.start();
        } catch (IOException e) {
            deleteQuietly(tokenFile);
            throw new CellBridgeException("cannot start the CellBridge server with " + python.executable() + ": "
                    + e.getMessage(), e);
        }
        Connection c = new Connection(process, tokenFile);
        try {
            process.getOutputStream().close();
            c.startReaders();
            JsonObject readyLine = c.awaitReady(settings.startTimeout());
            c.connect(readyLine, settings.callTimeout());
            String problem = c.ping(HEALTH_TIMEOUT);
            if (problem != null)
                throw new CellBridgeException("the CellBridge server started on 127.0.0.1:" + c.ready.port()
                        + " but does not answer: " + problem + c.tail());
            logger.info("CellBridge server {} ready on 127.0.0.1:{} (pid {})", c.ready.version(), c.ready.port(),
                    c.ready.pid());
            return c;
        } catch (CellBridgeException e) {
            c.close(Duration.ZERO, false);
            throw e;
        } catch (RuntimeException | IOException e) {
            c.close(Duration.ZERO, false);
            throw new CellBridgeException("the CellBridge server started but cannot be reached: " + e.getMessage()
                    + c.tail(), e);
        }
    }

    private static Path createTokenFile() {
        try {
            if (FileSystems.getDefault().supportedFileAttributeViews().contains("posix"))
                return Files.createTempFile("cellbridge-", ".token",
                        PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
            Path file = Files.createTempFile("cellbridge-", ".token");  // per-user temp folder on Windows
            file.toFile().setReadable(false, false);
            file.toFile().setReadable(true, true);
            return file;
        } catch (IOException e) {
            throw new CellBridgeException("cannot create a token file for the CellBridge server: " + e.getMessage(), e);
        }
    }

    private static void deleteQuietly(Path file) {
        try {
            Files.deleteIfExists(file);
        } catch (IOException e) {
            logger.debug("Cannot delete {}: {}", file, e.getMessage());
        }
    }

    /** One server process and its py4j connection. */
    private static final class Connection {

        private final Process process;
        private final Path tokenFile;
        private final Deque<String> stderrTail = new ArrayDeque<>();
        private final CompletableFuture<JsonObject> readyFuture = new CompletableFuture<>();
        private Thread stderrThread;
        private ClientServer clientServer;
        private CellBridgeService service;
        private Ready ready;

        Connection(Process process, Path tokenFile) {
            this.process = process;
            this.tokenFile = tokenFile;
        }

        void startReaders() {
            stderrThread = daemon("cellbridge-server-stderr", () -> {
                try (BufferedReader reader = reader(process.getErrorStream())) {
                    for (String line = reader.readLine(); line != null; line = reader.readLine()) {
                        synchronized (stderrTail) {
                            stderrTail.addLast(line);
                            if (stderrTail.size() > STDERR_TAIL)
                                stderrTail.removeFirst();
                        }
                        if (line.contains("ERROR") || line.contains("CRITICAL") || line.startsWith("Traceback"))
                            logger.warn("[python] {}", line);
                        else
                            logger.info("[python] {}", line);
                    }
                } catch (IOException e) {
                    logger.debug("CellBridge server stderr closed: {}", e.getMessage());
                }
            });
            daemon("cellbridge-server-stdout", () -> {
                try (BufferedReader reader = reader(process.getInputStream())) {
                    for (String line = reader.readLine(); line != null; line = reader.readLine()) {
                        JsonObject event = readyEvent(line);
                        if (event != null && !readyFuture.isDone())
                            readyFuture.complete(event);
                        else if (!readyFuture.isDone())
                            logger.warn("[python stdout] {}", line);
                        else
                            logger.debug("[python stdout] {}", line);
                    }
                } catch (IOException e) {
                    logger.debug("CellBridge server stdout closed: {}", e.getMessage());
                }
                readyFuture.completeExceptionally(new IOException("stdout closed before the ready line"));
            });
        }

        JsonObject awaitReady(Duration timeout) {
            try {
                return readyFuture.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
            } catch (TimeoutException e) {
                throw new CellBridgeException("the CellBridge server did not become ready within "
                        + PythonEnvironment.describe(timeout) + tail());
            } catch (ExecutionException e) {
                int code = exitCode(Duration.ofSeconds(5));
                joinStderr();
                throw new CellBridgeException("the CellBridge server exited"
                        + (code == Integer.MIN_VALUE ? "" : " with code " + code) + " before it was ready" + tail());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new CellBridgeException("interrupted while starting the CellBridge server", e);
            }
        }

        void connect(JsonObject readyLine, Duration callTimeout) throws IOException {
            String where = "the server's ready line";
            int protocol = Json.integer(readyLine, "protocol", where);
            if (protocol != JobRequest.PROTOCOL)
                throw new CellBridgeException("the CellBridge server speaks protocol " + protocol
                        + " but this extension needs protocol " + JobRequest.PROTOCOL
                        + "; install matching versions of the extension and the cellbridge Python package");
            ready = new Ready(Json.integer(readyLine, "port", where),
                    Json.isMissing(readyLine.get("pid")) ? process.pid() : (long) Json.number(readyLine, "pid", where),
                    Json.optionalText(readyLine, "version", where), protocol);
            String token = Json.optionalText(readyLine, "token", where);
            if (token == null)
                token = Files.readString(tokenFile, StandardCharsets.UTF_8).strip();
            if (token.isEmpty())
                throw new CellBridgeException("the CellBridge server wrote no token to " + tokenFile);
            InetAddress loopback = loopback();
            clientServer = new ClientServer.ClientServerBuilder()
                    .javaPort(0).javaAddress(loopback)
                    .pythonPort(ready.port()).pythonAddress(loopback)
                    .readTimeout((int) Math.min(Integer.MAX_VALUE, callTimeout.toMillis()))
                    .authToken(token)
                    .build();
            service = (CellBridgeService) clientServer.getPythonServerEntryPoint(new Class<?>[]{CellBridgeService.class});
        }

        /** Ping in another thread (a hung server must not hang the caller); null if healthy, else the problem. */
        String ping(Duration timeout) {
            CellBridgeService s = service;
            CompletableFuture<String> answer = new CompletableFuture<>();
            daemon("cellbridge-server-ping", () -> {
                try {
                    answer.complete(CellBridgeClient.of(s).ping());
                } catch (RuntimeException e) {
                    answer.completeExceptionally(e);
                }
            });
            try {
                String pong = answer.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
                return "pong".equals(pong) ? null : "ping() answered '" + pong + "'";
            } catch (TimeoutException e) {
                return "no answer to ping() within " + PythonEnvironment.describe(timeout);
            } catch (ExecutionException e) {
                return e.getCause().getMessage();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new CellBridgeException("interrupted while checking the CellBridge server", e);
            }
        }

        void close(Duration grace, boolean clean) {
            if (clean && service != null && process.isAlive()) {
                // shutdown() in its own thread: a hung server must not hang the caller
                CellBridgeService s = service;
                Thread t = daemon("cellbridge-server-shutdown", () -> {
                    try {
                        s.shutdown();
                    } catch (RuntimeException e) {
                        logger.debug("CellBridge shutdown() failed: {}", e.getMessage());
                    }
                });
                try {
                    t.join(grace.toMillis());
                    process.waitFor(grace.toMillis(), TimeUnit.MILLISECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            if (process.isAlive()) {
                process.destroy();
                if (exitCode(Duration.ofSeconds(2)) == Integer.MIN_VALUE) {
                    logger.warn("CellBridge server (pid {}) did not exit; killing it", process.pid());
                    process.destroyForcibly();
                    exitCode(Duration.ofSeconds(2));
                }
            }
            if (clientServer != null) {
                try {
                    clientServer.shutdown();
                } catch (RuntimeException e) {
                    logger.debug("py4j shutdown failed: {}", e.getMessage());
                }
            }
            deleteQuietly(tokenFile);
        }

        /** The last stderr lines, as a suffix for error messages. */
        String tail() {
            synchronized (stderrTail) {
                if (stderrTail.isEmpty())
                    return " (it wrote nothing to stderr)";
                return "; its last output:\n" + String.join("\n", stderrTail);
            }
        }

        private int exitCode(Duration wait) {
            try {
                if (process.waitFor(wait.toMillis(), TimeUnit.MILLISECONDS))
                    return process.exitValue();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return Integer.MIN_VALUE;
        }

        private void joinStderr() {
            try {
                if (stderrThread != null)
                    stderrThread.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }

        private static JsonObject readyEvent(String line) {
            String text = line.strip();
            if (!text.startsWith("{"))
                return null;
            try {
                JsonElement json = Json.parse(text, "ready line");
                if (json.isJsonObject() && Json.isString(json.getAsJsonObject().get("event"))
                        && "ready".equals(json.getAsJsonObject().get("event").getAsString()))
                    return json.getAsJsonObject();
            } catch (CellBridgeException e) {
                // not JSON: logged by the caller
            }
            return null;
        }

        private static BufferedReader reader(java.io.InputStream stream) {
            return new BufferedReader(new InputStreamReader(stream, StandardCharsets.UTF_8));
        }

        private static InetAddress loopback() {
            try {
                return InetAddress.getByName("127.0.0.1");
            } catch (UnknownHostException e) {
                return InetAddress.getLoopbackAddress();
            }
        }

        private static Thread daemon(String name, Runnable runnable) {
            Thread thread = new Thread(runnable, name);
            thread.setDaemon(true);
            thread.start();
            return thread;
        }
    }
}
