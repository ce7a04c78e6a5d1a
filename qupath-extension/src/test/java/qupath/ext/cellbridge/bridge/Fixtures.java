package qupath.ext.cellbridge.bridge;

import java.nio.file.Files;
import java.nio.file.Path;

/** Paths of the repository's test fixtures (the repo root comes from -Dcellbridge.repo, set by build-local.sh). */
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
        Path file = repo().resolve("tests/fixtures/counts-table").resolve(name);
        if (!Files.isRegularFile(file))
            throw new IllegalStateException("fixture " + file + " not found; set -Dcellbridge.repo to the repository root");
        return file;
    }

    static Path geojson(String name) {
        Path file = repo().resolve("tests/fixtures/qupath_geojson").resolve(name);
        if (!Files.isRegularFile(file))
            throw new IllegalStateException("fixture " + file + " not found; set -Dcellbridge.repo to the repository root");
        return file;
    }
}
