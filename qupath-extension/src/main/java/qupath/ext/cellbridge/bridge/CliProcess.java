package qupath.ext.cellbridge.bridge;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;

/**
 * One {@code python -m cellbridge COMMAND ...} run as a child process, for the work the server protocol does not
 * cover (exporting COCO training tiles, training, classifying objects in a GeoJSON file). Its output (stdout and
 * stderr together, tqdm's carriage-return updates as separate lines) goes to a listener line by line; it can be
 * cancelled; a non-zero exit becomes a {@link CellBridgeException} with the command's last output line, which is
 * its one-line error message.
 * <pre>{@code
 * CliProcess.Result result = CliProcess.run(python, List.of("export-coco", slide, geojson, outDir),
 *         line -> updateMessage(line), task::isCancelled);
 * }</pre>
 */
public final class CliProcess {

    private static final Logger logger = LoggerFactory.getLogger(CliProcess.class);

    private static final int TAIL = 40;
    private static final long POLL_MILLIS = 100;
    private static final long STOP_GRACE_MILLIS = 5000;

    /**
     * A finished command.
     *
     * @param exitCode always 0 (other codes throw)
     * @param output every output line, in order
     */
    public record Result(int exitCode, List<String> output) {

        /** Copies the output. */
        public Result {
            output = List.copyOf(output);
        }

        /** @return the output as one text */
        public String text() {
            return String.join("\n", output);
        }
    }

    private CliProcess() {
    }

    /**
     * Run {@code python -m cellbridge} with arguments and wait for it.
     * @param python the Python with cellbridge installed
     * @param arguments the command and its arguments, e.g. {@code ["train", "--task", "nuclei", ...]}
     * @param lines told each output line, on a reader thread (may be null)
     * @param cancelled polled while waiting; when it returns true the process is stopped (may be null)
     * @return the output
     * @throws CellBridgeException if it cannot start or exits with a non-zero code (with its last output line)
     * @throws CancellationException if it was cancelled or the calling thread was interrupted
     */
    public static Result run(PythonEnvironment python, List<String> arguments, Consumer<String> lines,
                             BooleanSupplier cancelled) {
        List<String> command = new ArrayList<>(List.of("-m", "cellbridge"));
        command.addAll(arguments);
        ProcessBuilder builder = python.processBuilder(command).redirectErrorStream(true);
        String name = "cellbridge " + (arguments.isEmpty() ? "" : arguments.get(0));
        logger.info("Running {}", String.join(" ", builder.command()));
        Process process;
        try {
            process = builder.start();
        } catch (IOException e) {
            throw new CellBridgeException("cannot run " + name + " with " + python.executable() + ": " + e.getMessage(), e);
        }
        List<String> output = new ArrayList<>();
        Deque<String> tail = new ArrayDeque<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(process.getInputStream(),
                    StandardCharsets.UTF_8))) {
                for (String line = in.readLine(); line != null; line = in.readLine()) {
                    synchronized (output) {
                        output.add(line);
                        if (!line.isBlank()) {
                            tail.addLast(line);
                            if (tail.size() > TAIL)
                                tail.removeFirst();
                        }
                    }
                    logger.debug("[{}] {}", name, line);
                    if (lines != null)
                        lines.accept(line);
                }
            } catch (IOException e) {
                logger.debug("{} output closed: {}", name, e.getMessage());
            }
        }, "cellbridge-cli-output");
        reader.setDaemon(true);
        reader.start();
        BooleanSupplier stop = cancelled == null ? () -> false : cancelled;
        try {
            process.getOutputStream().close();
            while (!process.waitFor(POLL_MILLIS, TimeUnit.MILLISECONDS)) {
                if (stop.getAsBoolean())
                    throw stop(process, name);
            }
            reader.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw stop(process, name);
        } catch (IOException e) {
            throw new CellBridgeException("cannot talk to " + name + ": " + e.getMessage(), e);
        }
        int code = process.exitValue();
        synchronized (output) {
            if (code != 0) {
                String last = tail.isEmpty() ? "(no output)" : tail.getLast().strip();
                throw new CellBridgeException(name + " failed (exit code " + code + "): " + last);
            }
            return new Result(code, output);
        }
    }

    private static CancellationException stop(Process process, String name) {
        process.destroy();
        try {
            if (!process.waitFor(STOP_GRACE_MILLIS, TimeUnit.MILLISECONDS)) {
                process.destroyForcibly();
                process.waitFor(STOP_GRACE_MILLIS, TimeUnit.MILLISECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
        return new CancellationException(name + " was cancelled");
    }
}
