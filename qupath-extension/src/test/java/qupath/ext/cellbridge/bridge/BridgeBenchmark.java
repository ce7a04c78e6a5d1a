package qupath.ext.cellbridge.bridge;

import java.awt.image.BufferedImage;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import javax.imageio.ImageIO;

/**
 * Bridge throughput, run by benchmarks/bridge.sh (not a test): one run, printed as a table.
 * <ol>
 *   <li>objects through the bridge: a path-based job on IMAGE; after it is done, the time to read every chunk and
 *       parse it into JTS objects (seconds, MB/s, objects/s);</li>
 *   <li>the same job via the bridge (submit → all objects in Java) vs via the CLI (`cellbridge nuclei`, whose time
 *       includes starting Python and loading the model);</li>
 *   <li>PNG tiles sent from Java vs the path-based job on the same image.</li>
 * </ol>
 * Arguments: PYTHON IMAGE.png MODEL [TILE_SIZE]
 */
public final class BridgeBenchmark {

    private BridgeBenchmark() {
    }

    public static void main(String[] args) throws Exception {
        Path python = Path.of(args[0]);
        Path image = Path.of(args[1]).toAbsolutePath();
        String model = args[2];
        int tileSize = args.length > 3 ? Integer.parseInt(args[3]) : 1024;
        try (ServerProcess server = ServerProcess.start(PythonEnvironment.fromPath(python))) {
            CellBridgeClient client = server.client();
            JobRequest pathJob = JobRequest.nuclei(model).imagePath(image.toString()).build();
            client.run(pathJob, null, null);  // warm-up: loads and caches the model in the server

            long start = System.nanoTime();
            String job = client.submit(pathJob);
            while (!client.status(job).state().isFinal())
                Thread.sleep(20);
            double compute = seconds(start);
            long transferStart = System.nanoTime();
            long bytes = 0;
            int objects = 0;
            for (int i = 0; ; i++) {
                String chunk = client.resultChunk(job, i);
                if (chunk == null)
                    break;
                bytes += chunk.getBytes(StandardCharsets.UTF_8).length;
                objects += GeoJsonObjects.parse(chunk).size();
            }
            double transfer = seconds(transferStart);

            start = System.nanoTime();
            List<DetectedObject> viaBridge = client.run(pathJob, null, null);
            double bridge = seconds(start);

            Path out = Files.createTempFile("cellbridge-bench", ".geojson");
            start = System.nanoTime();
            Process cli = new ProcessBuilder(python.toString(), "-m", "cellbridge", "nuclei", image.toString(),
                    "--model", model, "--out", out.toString()).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            if (!cli.waitFor(30, TimeUnit.MINUTES) || cli.exitValue() != 0)
                throw new IllegalStateException("cellbridge nuclei failed");
            double viaCli = seconds(start);
            Files.deleteIfExists(out);

            BufferedImage rgb = ImageIO.read(image.toFile());
            start = System.nanoTime();
            List<TileImage> tiles = new ArrayList<>();
            for (int y = 0; y < rgb.getHeight(); y += tileSize)
                for (int x = 0; x < rgb.getWidth(); x += tileSize)
                    tiles.add(TileImage.fromImage(x, y, 1.0, rgb.getSubimage(x, y,
                            Math.min(tileSize, rgb.getWidth() - x), Math.min(tileSize, rgb.getHeight() - y))));
            List<DetectedObject> viaTiles = client.run(JobRequest.nuclei(model)
                    .tiles(rgb.getWidth(), rgb.getHeight(), tiles).build(), null, null);
            double tileBased = seconds(start);

            System.out.printf("image %s (%dx%d), model %s%n", image.getFileName(), rgb.getWidth(), rgb.getHeight(),
                    model);
            System.out.printf("%-58s %s%n", "measure", "value");
            System.out.printf("%-58s %d objects, %.1f MB in %.2f s: %.1f MB/s, %.0f objects/s%n",
                    "chunks read + parsed to JTS after the job", objects, bytes / 1e6, transfer,
                    bytes / 1e6 / transfer, objects / transfer);
            System.out.printf("%-58s %.2f s (compute %.2f s before reading)%n", "bridge job, submit → objects in Java",
                    bridge, compute);
            System.out.printf("%-58s %.2f s%n", "CLI (`cellbridge nuclei`, incl. Python start + model load)", viaCli);
            System.out.printf("%-58s %.2f (target ≥ 0.9)%n", "CLI time / bridge time", viaCli / bridge);
            System.out.printf("%-58s %.2f s (%d tiles of %d px, PNG encode included), %d vs %d objects%n",
                    "PNG tiles from Java", tileBased, tiles.size(), tileSize, viaTiles.size(), viaBridge.size());
            System.out.printf("%-58s %.2f%n", "path-based time / tile-based time", bridge / tileBased);
        }
    }

    private static double seconds(long startNanos) {
        return (System.nanoTime() - startNanos) / 1e9;
    }
}
