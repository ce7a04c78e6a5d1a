package qupath.ext.cellbridge.bridge;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * What the bridge tests share: paths of the repository's test fixtures (the repo root comes from -Dcellbridge.repo,
 * set by build-local.sh) and, for the end-to-end tests, the Python of $CELLBRIDGE_PYTHON and a way to run it.
 */
final class Fixtures {

    private Fixtures() {
    }

    static Path repo() {
        String repo = System.getProperty("cellbridge.repo");
        Path root = repo != null ? Path.of(repo) : Path.of("").toAbsolutePath();
        // also work when started from qupath-extension/ (e.g. an IDE) without the property
        if (!Files.isDirectory(root.resolve("tests/fixtures")) && root.getParent() != null
                && Files.isDirectory(root.getParent().resolve("tests/fixtures")))
            root = root.getParent();
        return root;
    }

    static Path countsTable(String name) {
        return fixture("counts-table", name);
    }

    static Path geojson(String name) {
        return fixture("qupath_geojson", name);
    }

    private static Path fixture(String folder, String name) {
        Path file = repo().resolve("tests/fixtures").resolve(folder).resolve(name);
        if (!Files.isRegularFile(file))
            throw new IllegalStateException("fixture " + file + " not found; set -Dcellbridge.repo to the repository root");
        return file;
    }

    /** @return the Python of $CELLBRIDGE_PYTHON (the end-to-end tests run only when it is set) */
    static PythonEnvironment python() {
        return PythonEnvironment.fromPath(Path.of(System.getenv("CELLBRIDGE_PYTHON")));
    }

    /**
     * Run {@code python} with arguments, its output and errors in temporary files under {@code dir}.
     * @return its stdout; the test fails with its stderr when it exits with an error or runs for over 300 s
     */
    static String runPython(PythonEnvironment python, Path dir, List<String> arguments)
            throws IOException, InterruptedException {
        Path out = Files.createTempFile(dir, "python", ".out");
        Path err = Files.createTempFile(dir, "python", ".err");
        Process process = python.processBuilder(arguments).redirectOutput(out.toFile()).redirectError(err.toFile())
                .start();
        if (!process.waitFor(300, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            fail("python " + arguments + " did not finish within 300 s");
        }
        if (process.exitValue() != 0)
            fail("python " + arguments + " failed with code " + process.exitValue() + ":\n" + Files.readString(err));
        return Files.readString(out);
    }
}
