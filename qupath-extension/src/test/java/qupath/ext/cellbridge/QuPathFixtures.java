package qupath.ext.cellbridge;

import qupath.ext.cellbridge.bridge.CellBridgeClient;
import qupath.ext.cellbridge.bridge.CliProcess;
import qupath.ext.cellbridge.bridge.PythonEnvironment;
import qupath.ext.cellbridge.bridge.ServerProcess;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.ImageServer;
import qupath.lib.images.servers.ImageServers;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * What the QuPath-layer tests share: the Python of $CELLBRIDGE_PYTHON, one real CellBridge server for the whole
 * test run (stopped when the JVM exits), and synthetic slides written as plain TIFFs that both QuPath's ImageJ
 * server and the Python side read (0.5 µm/px).
 */
public final class QuPathFixtures {

    /** Why the end-to-end tests are skipped without a Python. */
    public static final String NO_PYTHON = "CELLBRIDGE_PYTHON is not set: end-to-end tests need a Python with "
            + "cellbridge installed (make test-java sets it to .venv/bin/python)";

    private static ServerProcess server;

    private QuPathFixtures() {
    }

    /** @return the Python of $CELLBRIDGE_PYTHON */
    public static PythonEnvironment python() {
        return PythonEnvironment.fromPath(Path.of(System.getenv("CELLBRIDGE_PYTHON")));
    }

    /**
     * The shared server, started on first use; also made the extension's server configuration, so that the
     * commands run through {@link CellBridgeServer#python()} (export-coco, train, classify) use the same Python.
     * @return a client of it
     */
    public static synchronized CellBridgeClient client() {
        if (server == null) {
            CellBridgeServer.setConfiguration(() -> new CellBridgeServer.Configuration(
                    System.getenv("CELLBRIDGE_PYTHON"), null, "cpu"));
            server = ServerProcess.start(python(), ServerProcess.Settings.defaults().withDevice("cpu"));
            ServerProcess started = server;
            Runtime.getRuntime().addShutdownHook(new Thread(started::stop, "test-server-stop"));
        }
        return server.client().withPollInterval(Duration.ofMillis(50));
    }

    /**
     * Write a synthetic slide ({@code cellbridge synth-slide}) as a plain RGB TIFF with ImageJ's calibration, and its
     * true nuclei as {@code <name>.geojson}.
     * @param dir the folder
     * @param name the file name without suffix
     * @param synthArguments extra synth-slide arguments (size, seed, stain ...)
     * @return the TIFF
     */
    public static Path slide(Path dir, String name, String... synthArguments) {
        Path pyramid = dir.resolve(name + "-pyramid.tif");
        Path tif = dir.resolve(name + ".tif");
        List<String> arguments = new ArrayList<>(List.of("synth-slide", pyramid.toString(), "--mpp", "0.5",
                "--compression", "none", "--truth", dir.resolve(name + ".geojson").toString()));
        arguments.addAll(List.of(synthArguments));
        CliProcess.run(python(), arguments, null, null);
        String convert = "import sys, tifffile; a = tifffile.imread(sys.argv[1], level=0); "
                + "tifffile.imwrite(sys.argv[2], a, photometric='rgb', imagej=True, resolution=(2.0, 2.0), "
                + "metadata={'unit': 'um'})";
        try {
            Process process = python().processBuilder(List.of("-c", convert, pyramid.toString(), tif.toString()))
                    .redirectErrorStream(true).start();
            String output = new String(process.getInputStream().readAllBytes());
            if (process.waitFor() != 0)
                throw new IllegalStateException("cannot convert " + pyramid + ": " + output);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
        return tif;
    }

    /**
     * @param tif a TIFF that ImageJ reads
     * @return a brightfield ImageData over QuPath's ImageJ server for it
     */
    public static ImageData<BufferedImage> open(Path tif) throws IOException {
        ImageServer<BufferedImage> server = ImageServers.buildServer(tif.toUri());
        return new ImageData<>(server, ImageData.ImageType.BRIGHTFIELD_H_E);
    }
}
