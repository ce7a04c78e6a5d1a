package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The Python interpreter that runs the CellBridge server: an explicit executable, a virtual environment, a conda
 * environment, or {@code python3}/{@code python} on the PATH.
 * <pre>{@code
 * PythonEnvironment python = PythonEnvironment.fromFolder(Path.of("/home/me/cellbridge/.venv"));
 * String version = python.check(Duration.ofSeconds(60));   // "0.1.0", or a CellBridgeException saying what to install
 * }</pre>
 *
 * @param executable the Python executable
 * @param environment extra environment variables for its processes (unmodifiable)
 */
public record PythonEnvironment(Path executable, Map<String, String> environment) {

    /** How long {@link #check()} waits by default (importing torch can take a while on a cold disk). */
    public static final Duration DEFAULT_CHECK_TIMEOUT = Duration.ofSeconds(60);

    private static final boolean WINDOWS = System.getProperty("os.name", "").toLowerCase(Locale.ROOT).startsWith("win");

    private static final String CHECK_SCRIPT = "import json, platform, cellbridge; "
            + "print(json.dumps({'cellbridge': getattr(cellbridge, '__version__', 'unknown'), "
            + "'python': platform.python_version()}))";

    /** Checks the executable and copies the environment. */
    public PythonEnvironment {
        Objects.requireNonNull(executable, "executable");
        environment = environment == null ? Map.of() : Map.copyOf(environment);
    }

    /**
     * @param executable a Python executable (e.g. {@code /opt/conda/envs/cb/bin/python})
     * @return the environment (not checked yet: see {@link #check()})
     */
    public static PythonEnvironment ofExecutable(Path executable) {
        return new PythonEnvironment(executable, Map.of());
    }

    /**
     * @param folder a virtual environment ({@code bin/python} or {@code Scripts\python.exe})
     * @return the environment
     * @throws CellBridgeException if the folder holds no Python
     */
    public static PythonEnvironment ofVirtualEnv(Path folder) {
        return ofFolder(folder, List.of("bin/python", "bin/python3", "Scripts/python.exe"), "virtual environment");
    }

    /**
     * @param folder a conda environment ({@code bin/python}, or {@code python.exe} on Windows)
     * @return the environment
     * @throws CellBridgeException if the folder holds no Python
     */
    public static PythonEnvironment ofConda(Path folder) {
        return ofFolder(folder, List.of("bin/python", "bin/python3", "python.exe"), "conda environment");
    }

    /**
     * A Python from a path the user chose: an executable, a virtual environment or a conda environment.
     * @param path a file or a folder
     * @return the environment
     * @throws CellBridgeException if the path does not exist or holds no Python
     */
    public static PythonEnvironment fromPath(Path path) {
        if (Files.isDirectory(path))
            return ofFolder(path, List.of("bin/python", "bin/python3", "Scripts/python.exe", "python.exe"),
                    "Python environment");
        if (!Files.exists(path))
            throw new CellBridgeException("Python not found: " + path + " does not exist; choose a Python executable, "
                    + "virtual environment or conda environment with cellbridge installed");
        return ofExecutable(path);
    }

    /**
     * The first {@code python3} or {@code python} on the PATH.
     * @return the environment
     * @throws CellBridgeException if neither is on the PATH
     */
    public static PythonEnvironment onPath() {
        String path = System.getenv("PATH");
        List<String> names = WINDOWS ? List.of("python.exe", "python3.exe") : List.of("python3", "python");
        if (path != null) {
            for (String name : names) {
                for (String dir : path.split(File.pathSeparator)) {
                    if (dir.isEmpty())
                        continue;
                    Path candidate = Path.of(dir, name);
                    if (Files.isRegularFile(candidate) && Files.isExecutable(candidate))
                        return ofExecutable(candidate);
                }
            }
        }
        throw new CellBridgeException("no Python found on the PATH (looked for " + String.join(", ", names)
                + "); choose the Python executable or environment where cellbridge is installed");
    }

    /**
     * @param variables extra environment variables for the server process (e.g. {@code CELLBRIDGE_MODEL_PATH})
     * @return an environment like this one with those variables added
     */
    public PythonEnvironment withEnvironment(Map<String, String> variables) {
        Map<String, String> merged = new java.util.LinkedHashMap<>(environment);
        merged.putAll(variables);
        return new PythonEnvironment(executable, merged);
    }

    /**
     * A process builder running this Python with the given arguments and environment.
     * @param arguments arguments after the executable, e.g. {@code "-m", "cellbridge", "serve"}
     * @return the builder (not started)
     */
    public ProcessBuilder processBuilder(List<String> arguments) {
        List<String> command = new ArrayList<>();
        command.add(executable.toString());
        command.addAll(arguments);
        ProcessBuilder builder = new ProcessBuilder(command);
        builder.environment().putAll(environment);
        builder.environment().put("PYTHONUNBUFFERED", "1");
        builder.environment().putIfAbsent("PYTHONIOENCODING", "utf-8");
        return builder;
    }

    /**
     * {@link #check(Duration)} with {@link #DEFAULT_CHECK_TIMEOUT}.
     * @return the cellbridge version
     */
    public String check() {
        return check(DEFAULT_CHECK_TIMEOUT);
    }

    /**
     * Check that this Python runs and can import cellbridge.
     * @param timeout how long to wait
     * @return the installed cellbridge version, e.g. {@code "0.1.0"}
     * @throws CellBridgeException saying what is wrong and what to install, with Python's own error line
     */
    public String check(Duration timeout) {
        if (!Files.exists(executable))
            throw new CellBridgeException("Python not found: " + executable + " does not exist; choose a Python "
                    + "executable, virtual environment or conda environment with cellbridge installed");
        if (Files.isDirectory(executable) || !Files.isExecutable(executable))
            throw new CellBridgeException("Python not usable: " + executable + " is not an executable file");
        Process process;
        try {
            process = processBuilder(List.of("-c", CHECK_SCRIPT)).start();
        } catch (IOException e) {
            throw new CellBridgeException("cannot run " + executable + ": " + e.getMessage(), e);
        }
        CompletableFuture<String> out = drain(process.getInputStream());
        CompletableFuture<String> err = drain(process.getErrorStream());
        try {
            process.getOutputStream().close();
            if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                process.destroyForcibly();
                throw new CellBridgeException(executable + " did not finish `import cellbridge` within "
                        + describe(timeout));
            }
            String stdout = out.get(5, TimeUnit.SECONDS);
            String stderr = err.get(5, TimeUnit.SECONDS);
            if (process.exitValue() != 0)
                throw new CellBridgeException(failure(process.exitValue(), stderr));
            return parseVersion(stdout, stderr);
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new CellBridgeException("interrupted while checking " + executable, e);
        } catch (ExecutionException | TimeoutException | IOException e) {
            process.destroyForcibly();
            throw new CellBridgeException("cannot read the output of " + executable + ": " + e.getMessage(), e);
        }
    }

    private String failure(int exitCode, String stderr) {
        String errorLine = lastLine(stderr);
        if (stderr.contains("ModuleNotFoundError") && stderr.contains("'cellbridge'"))
            return "cellbridge is not installed in " + executable + ": run `" + executable
                    + " -m pip install -e python` from the CellBridge folder (" + errorLine + ")";
        if (stderr.contains("ModuleNotFoundError") || stderr.contains("ImportError"))
            return "cellbridge is installed in " + executable + " but cannot be imported, a dependency is missing: "
                    + "run `" + executable + " -m pip install -e python` from the CellBridge folder (" + errorLine + ")";
        return executable + " failed to import cellbridge (exit code " + exitCode + "): "
                + (errorLine.isEmpty() ? "no error message" : errorLine);
    }

    private String parseVersion(String stdout, String stderr) {
        String line = lastLine(stdout);
        try {
            JsonElement json = Json.parse(line, "the version check's output");
            JsonObject object = Json.object(json, "the version check's output");
            return Json.string(object, "cellbridge", "version");
        } catch (CellBridgeException e) {
            throw new CellBridgeException(executable + " printed an unexpected answer to the cellbridge check: '"
                    + Json.shorten(line) + "'" + (stderr.isBlank() ? "" : " (" + lastLine(stderr) + ")"), e);
        }
    }

    private static PythonEnvironment ofFolder(Path folder, List<String> candidates, String what) {
        if (!Files.isDirectory(folder))
            throw new CellBridgeException("Python not found: " + what + " folder " + folder + " does not exist");
        for (String candidate : candidates) {
            Path python = folder.resolve(candidate);
            if (Files.isRegularFile(python))
                return ofExecutable(python);
        }
        throw new CellBridgeException("Python not found: " + folder + " is not a " + what + " (no "
                + String.join(" or ", candidates) + " in it)");
    }

    /** "300 ms", "60 s": a duration for messages. */
    static String describe(Duration duration) {
        long millis = duration.toMillis();
        if (millis < 1000)
            return millis + " ms";
        return millis % 1000 == 0 ? millis / 1000 + " s" : String.format(Locale.ROOT, "%.1f s", millis / 1000.0);
    }

    static String lastLine(String text) {
        String[] lines = text.strip().split("\\R");
        return lines.length == 0 ? "" : lines[lines.length - 1].strip();
    }

    private static CompletableFuture<String> drain(InputStream stream) {
        return CompletableFuture.supplyAsync(() -> {
            try (InputStream in = stream; ByteArrayOutputStream bytes = new ByteArrayOutputStream()) {
                in.transferTo(bytes);
                return bytes.toString(StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }, runnable -> {
            Thread thread = new Thread(runnable, "cellbridge-python-check");
            thread.setDaemon(true);
            thread.start();
        });
    }
}
