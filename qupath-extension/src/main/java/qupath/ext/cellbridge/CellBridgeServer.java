package qupath.ext.cellbridge;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.cellbridge.bridge.CellBridgeClient;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.ext.cellbridge.bridge.ModelInfo;
import qupath.ext.cellbridge.bridge.PythonEnvironment;
import qupath.ext.cellbridge.bridge.ServerProcess;

import java.io.File;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Supplier;

/**
 * The one CellBridge Python server of this QuPath, shared by the menu commands and scripts: started on first use
 * with the Python, model folder and device of its {@link Configuration} (the extension's preferences once the
 * extension is installed; without it, {@code $CELLBRIDGE_PYTHON} or the first Python on the PATH), restarted if it
 * died or when the configuration names another Python or model folder (e.g. the preferences changed), stopped on
 * request or when QuPath exits (the server also exits by itself when QuPath's process ends).
 * <p>
 * Starting takes seconds (Python imports PyTorch): call {@link #client()} from a background thread, never from
 * the JavaFX application thread.
 */
public final class CellBridgeServer {

    private static final Logger logger = LoggerFactory.getLogger(CellBridgeServer.class);

    /** The environment variable the Python side reads extra model folders from. */
    public static final String MODEL_PATH_ENV = "CELLBRIDGE_MODEL_PATH";

    /** The environment variable naming the Python used when no configuration was set (before the PATH). */
    public static final String PYTHON_ENV = "CELLBRIDGE_PYTHON";

    /**
     * What the server is started with.
     *
     * @param python the Python executable, virtual environment or conda environment with cellbridge (blank: the
     *               first Python on the PATH)
     * @param modelFolder a folder of model packages added to the server's search path (blank: none)
     * @param device "auto", "cpu", "cuda", "cuda:N" or "mps" (blank: the server's default)
     */
    public record Configuration(String python, String modelFolder, String device) {

        /** @return $CELLBRIDGE_PYTHON (else the PATH's Python), $CELLBRIDGE_MODEL_PATH as it is, the default device */
        public static Configuration fromEnvironment() {
            return new Configuration(System.getenv(PYTHON_ENV), null, null);
        }

        /**
         * @param other another configuration
         * @return true when a server started with this one is the server {@code other} asks for: the same Python
         *         and model folder (the device is given with each run, so it does not count)
         */
        public boolean sameServer(Configuration other) {
            return other != null && text(python).equals(text(other.python))
                    && text(modelFolder).equals(text(other.modelFolder));
        }

        private static String text(String value) {
            return value == null ? "" : value.strip();
        }
    }

    private static volatile Supplier<Configuration> configuration = Configuration::fromEnvironment;
    private static final List<Runnable> listeners = new CopyOnWriteArrayList<>();
    private static ServerProcess server;
    private static Configuration startedWith;
    private static boolean hookInstalled;
    // read without the lock (by the FX thread), so that the UI never waits for a server that is starting
    private static volatile String status = "stopped";
    private static volatile boolean running;

    private CellBridgeServer() {
    }

    /**
     * Where the server's settings come from (read at each start; the extension sets its preferences here).
     * @param source called for the current configuration
     */
    public static void setConfiguration(Supplier<Configuration> source) {
        configuration = Objects.requireNonNull(source, "source");
    }

    /**
     * The configured Python (or the first on the PATH), with the configured model folder on {@value #MODEL_PATH_ENV}.
     * @return the environment
     * @throws CellBridgeException if the configuration names no Python
     */
    public static PythonEnvironment python() {
        return python(configuration.get());
    }

    private static PythonEnvironment python(Configuration config) {
        String path = config.python();
        PythonEnvironment python = path == null || path.isBlank() ? PythonEnvironment.onPath()
                : PythonEnvironment.fromPath(Path.of(path.strip()));
        String models = config.modelFolder();
        if (models != null && !models.isBlank()) {
            String inherited = System.getenv(MODEL_PATH_ENV);
            python = python.withEnvironment(Map.of(MODEL_PATH_ENV, inherited == null || inherited.isBlank()
                    ? models.strip() : models.strip() + File.pathSeparator + inherited));
        }
        return python;
    }

    /**
     * A client of the running server, starting it when needed, restarting it when it died or when the
     * configuration now names another Python or model folder. Blocks while the server starts.
     * @return the client
     * @throws CellBridgeException if Python or cellbridge is missing or the server does not start
     */
    public static synchronized CellBridgeClient client() {
        if (server != null && !startedWith.sameServer(configuration.get())) {
            logger.info("The CellBridge Python or model folder changed: restarting the server");
            restart();
        } else if (server == null) {
            start();
        } else {
            try {
                if (server.ensureRunning())
                    setStatus(describe(server), true);
            } catch (CellBridgeException e) {
                setStatus("not running: " + e.getMessage(), false);
                throw e;
            }
        }
        return server.client();
    }

    /**
     * Start the server if it is not running (or restart it when the configuration now names another Python or
     * model folder). Blocks while it starts.
     * @throws CellBridgeException if Python or cellbridge is missing or the server does not start
     */
    public static synchronized void start() {
        if (server != null && server.isAlive() && startedWith.sameServer(configuration.get()))
            return;
        if (server != null)
            stop();
        Configuration config = configuration.get();
        PythonEnvironment python = python(config);
        setStatus("starting (" + python.executable() + ")", false);
        try {
            python.check();
            String device = config.device();
            server = ServerProcess.start(python, ServerProcess.Settings.defaults()
                    .withDevice(device == null || device.isBlank() ? null : device.strip()));
            startedWith = config;
        } catch (CellBridgeException e) {
            setStatus("not running: " + e.getMessage(), false);
            throw e;
        }
        installShutdownHook();
        setStatus(describe(server), true);
    }

    /** Stop the server (its running jobs are cancelled). */
    public static synchronized void stop() {
        if (server == null)
            return;
        ServerProcess s = server;
        server = null;
        s.stop();
        setStatus("stopped", false);
        logger.info("CellBridge server stopped");
    }

    /** Stop the server and start it again (with the configuration as it is now). */
    public static synchronized void restart() {
        stop();
        start();
    }

    /**
     * @return true when the server was started and not stopped (never blocks; a server whose process died is
     *         noticed, and restarted, by the next {@link #client()})
     */
    public static boolean isRunning() {
        return running;
    }

    /**
     * @return what the server is doing, e.g. "running: cellbridge 0.1.0 on 127.0.0.1:41234 (pid 1234)" (never
     *         blocks, so the FX thread may call it)
     */
    public static String status() {
        return status;
    }

    /**
     * @param listener told (on any thread) whenever the status changes
     */
    public static void addStatusListener(Runnable listener) {
        listeners.add(listener);
    }

    /**
     * @return the models the server can run (starts it if needed)
     */
    public static List<ModelInfo> listModels() {
        return client().listModels();
    }

    /**
     * @param name a model name, or a model folder
     * @return the server's description of it, when it is one of {@link #listModels()} (by name or folder)
     */
    public static Optional<ModelInfo> findModel(String name) {
        return ModelInfo.find(listModels(), name);
    }

    private static String describe(ServerProcess s) {
        ServerProcess.Ready ready = s.ready();
        return "running: cellbridge " + ready.version() + " on 127.0.0.1:" + ready.port() + " (pid " + ready.pid() + ")";
    }

    private static void setStatus(String text, boolean isRunning) {
        status = text;
        running = isRunning;
        for (Runnable listener : listeners) {
            try {
                listener.run();
            } catch (RuntimeException e) {
                logger.debug("CellBridge status listener failed: {}", e.getMessage());
            }
        }
    }

    private static void installShutdownHook() {
        if (hookInstalled)
            return;
        hookInstalled = true;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            ServerProcess s;
            synchronized (CellBridgeServer.class) {
                s = server;
                server = null;
            }
            if (s != null)
                s.stop();
        }, "cellbridge-server-shutdown-hook"));
    }
}
