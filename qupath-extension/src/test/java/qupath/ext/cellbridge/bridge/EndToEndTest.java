package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.locationtech.jts.geom.Coordinate;
import py4j.ClientServer;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.net.ConnectException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.NetworkInterface;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.CancellationException;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The real Python server, started by {@link ServerProcess} with $CELLBRIDGE_PYTHON, on synthetic slides made by
 * {@code cellbridge synth-slide}. The model is $CELLBRIDGE_E2E_MODEL (default "nuclei-he"); set
 * $CELLBRIDGE_MODEL_PATH to find a model outside the package.
 */
@Tag("e2e")
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
@EnabledIfEnvironmentVariable(named = "CELLBRIDGE_PYTHON", matches = ".+", disabledReason = "CELLBRIDGE_PYTHON is not "
        + "set: end-to-end tests need a Python with cellbridge installed (make test-java sets it to .venv/bin/python)")
class EndToEndTest {

    private static final String MODEL = System.getenv().getOrDefault("CELLBRIDGE_E2E_MODEL", "nuclei-he");
    private static final int SIZE = 1024;

    @RegisterExtension
    static final RunningServer SERVER = new RunningServer();

    @TempDir
    static Path dir;

    private PythonEnvironment python;
    private ServerProcess server;
    private CellBridgeClient client;
    private Path slide;
    private Path truth;
    private List<DetectedObject> pathBased;

    @BeforeAll
    void makeSlide() throws Exception {
        python = SERVER.python();
        server = SERVER.process();
        client = SERVER.client();
        slide = dir.resolve("slide.tif");
        truth = dir.resolve("truth.geojson");
        runPython(List.of("-m", "cellbridge", "synth-slide", slide.toString(), "--size", SIZE + "x" + SIZE,
                "--tissue-fraction", "0.5", "--seed", "7", "--truth", truth.toString()));
    }

    @Test
    @Order(1)
    void serverAnswersAndDescribesItself() {
        assertEquals("pong", client.ping());
        ServerVersion version = client.version();
        assertEquals(1, version.protocol());
        assertEquals(python.check(), version.cellbridge());
        assertEquals(server.ready().version(), version.cellbridge());
        assertTrue(version.devices().contains("cpu"), version.toString());
        List<ModelInfo> models = client.listModels();
        assertTrue(models.stream().anyMatch(m -> m.name().equals(MODEL) && "nuclei".equals(m.task())),
                "model " + MODEL + " not listed: " + models);
    }

    @Test
    @Order(2)
    void serverListensOnLoopbackOnlyAndNeedsTheToken() throws Exception {
        int port = server.ready().port();
        Path procTcp = Path.of("/proc/net/tcp");
        if (Files.isReadable(procTcp)) {
            String hexPort = String.format(Locale.ROOT, ":%04X", port);
            List<String> listening = new ArrayList<>();
            for (Path table : List.of(procTcp, Path.of("/proc/net/tcp6"))) {
                if (!Files.isReadable(table))
                    continue;
                for (String line : Files.readAllLines(table)) {
                    String[] f = line.trim().split("\\s+");
                    if (f.length > 3 && f[1].endsWith(hexPort) && f[3].equals("0A"))  // 0A: LISTEN
                        listening.add(f[1]);
                }
            }
            assertEquals(List.of("0100007F" + hexPort), listening, "listening sockets on port " + port);
        }
        for (NetworkInterface nic : Collections.list(NetworkInterface.getNetworkInterfaces())) {
            for (InetAddress address : Collections.list(nic.getInetAddresses())) {
                if (address.isLoopbackAddress() || !(address instanceof Inet4Address))
                    continue;
                try (Socket socket = new Socket()) {
                    socket.connect(new InetSocketAddress(address, port), 2000);
                    fail("the server accepts connections on " + address.getHostAddress() + ":" + port);
                } catch (ConnectException expected) {
                    // refused: good
                }
            }
        }
        // a client with the wrong token is refused, and the server keeps serving
        ClientServer intruder = new ClientServer.ClientServerBuilder().javaPort(0).pythonPort(port)
                .authToken("not-the-token").readTimeout(10_000).build();
        try {
            CellBridgeService service = (CellBridgeService) intruder.getPythonServerEntryPoint(
                    new Class<?>[]{CellBridgeService.class});
            CellBridgeException e = assertThrows(CellBridgeException.class, () -> CellBridgeClient.of(service).ping());
            assertTrue(e.getMessage().startsWith("the CellBridge server did not answer ping()"), e.getMessage());
        } finally {
            intruder.shutdown();
        }
        assertEquals("pong", client.ping());
    }

    @Test
    @Order(3)
    void nucleiMatchTheTruth() {
        List<DetectedObject> nuclei = pathBasedNuclei();
        List<Coordinate> expected = truthCentres();
        List<Coordinate> found = centres(nuclei);
        assertTrue(nuclei.stream().allMatch(o -> o.objectType().equals("detection") || o.isCell()), "object types");
        double recall = matched(expected, found, 4.0) / (double) expected.size();
        double precision = matched(found, expected, 4.0) / (double) found.size();
        String summary = String.format(Locale.ROOT, "%d true nuclei, %d found: recall %.3f, precision %.3f",
                expected.size(), found.size(), recall, precision);
        System.out.println("e2e nuclei: " + summary);
        assertTrue(recall >= 0.9, summary);
        assertTrue(precision >= 0.9, summary);
        assertTrue(nuclei.stream().allMatch(o -> o.className() != null && o.color() != null), "classified");
    }

    @Test
    @Order(4)
    void ihcSettingsScoreDabPositivityAsTheTruth() throws Exception {
        Path ihc = dir.resolve("ihc.tif");
        Path ihcTruth = dir.resolve("ihc-truth.geojson");
        runPython(List.of("-m", "cellbridge", "synth-slide", ihc.toString(), "--size", "768x768", "--stain", "ihc-dab",
                "--tissue-fraction", "0.6", "--seed", "11", "--truth", ihcTruth.toString()));
        RunSettings settings = RunSettings.builder(MODEL).stain("ihc-dab").stainVectors("estimate")
                .positivity(0.2, 0.4, 0.6).build();
        List<DetectedObject> found = client.run(settings.request("nuclei").imagePath(ihc.toString()).build(), null, null);
        List<DetectedObject> truth = GeoJsonObjects.read(ihcTruth);
        Set<String> intensity = Set.of("Negative", "1+", "2+", "3+");
        assertTrue(found.size() > 50 && found.stream().allMatch(o -> intensity.contains(o.className())),
                "classes: " + found.stream().map(DetectedObject::className).distinct().toList());
        assertTrue(found.stream().allMatch(o -> !Double.isNaN(o.measurement("Nucleus: DAB OD mean"))));
        double positive = found.stream().filter(o -> !"Negative".equals(o.className())).count() / (double) found.size();
        double truePositive = truth.stream().filter(o -> !"Negative".equals(o.className())).count() / (double) truth.size();
        System.out.printf(Locale.ROOT, "e2e IHC: %d nuclei, positive %.1f %% (truth %.1f %% of %d)%n", found.size(),
                100 * positive, 100 * truePositive, truth.size());
        assertEquals(truePositive, positive, 0.05, "positive fraction");
    }

    @Test
    @Order(5)
    void tileBasedJobGivesTheSameObjects() throws Exception {
        Path png = dir.resolve("slide.png");
        String info = runPython(List.of("-c", "import sys, json, cv2\n"
                + "from cellbridge.io.slides import open_slide\n"
                + "with open_slide(sys.argv[1]) as s:\n"
                + "    w, h = s.dimensions\n"
                + "    cv2.imwrite(sys.argv[2], cv2.cvtColor(s.read_region(0, 0, w, h), cv2.COLOR_RGB2BGR))\n"
                + "    print(json.dumps({'width': w, 'height': h, 'mpp': s.mpp}))\n", slide.toString(), png.toString()));
        JsonObject size = JsonParser.parseString(PythonEnvironment.lastLine(info)).getAsJsonObject();
        BufferedImage image = ImageIO.read(png.toFile());
        assertEquals(SIZE, image.getWidth());
        int tileSize = 384;  // not a divisor of 1024: edge tiles are smaller
        List<TileImage> tiles = new ArrayList<>();
        for (int y = 0; y < image.getHeight(); y += tileSize) {
            for (int x = 0; x < image.getWidth(); x += tileSize) {
                int w = Math.min(tileSize, image.getWidth() - x);
                int h = Math.min(tileSize, image.getHeight() - y);
                tiles.add(TileImage.fromImage(x, y, 1.0, image.getSubimage(x, y, w, h)));
            }
        }
        JobRequest.Builder request = JobRequest.nuclei(MODEL).tiles(size.get("width").getAsInt(),
                size.get("height").getAsInt(), tiles);
        if (!size.get("mpp").isJsonNull())
            request.pixelSize(size.get("mpp").getAsDouble());
        List<DetectedObject> tileBased = client.run(request.build(), null, null);
        List<DetectedObject> reference = pathBasedNuclei();
        String summary = tileBased.size() + " objects from tiles, " + reference.size() + " from the path";
        assertTrue(Math.abs(tileBased.size() - reference.size()) <= Math.max(1, reference.size() / 100), summary);
        List<Coordinate> a = centres(tileBased);
        List<Coordinate> b = centres(reference);
        assertTrue(matched(b, a, 1.0) >= 0.99 * b.size(), summary + "; centres differ");
        assertTrue(matched(a, b, 1.0) >= 0.99 * a.size(), summary + "; centres differ");
    }

    @Test
    @Order(6)
    void malformedRequestsGiveClearErrorsAndTheServerKeepsServing() throws Exception {
        Path notASlide = Files.writeString(dir.resolve("notes.tif"), "not a TIFF");
        String path = slide.toString();
        String good = "\"protocol\": 1, \"task\": \"nuclei\", \"model\": \"" + MODEL + "\"";
        String image = "\"image\": {\"path\": " + quote(path) + "}";
        String png = base64Png(new BufferedImage(16, 16, BufferedImage.TYPE_INT_RGB));
        String grayPng = base64Png(new BufferedImage(16, 16, BufferedImage.TYPE_BYTE_GRAY));
        List<Object[]> cases = List.of(
                bad("bad JSON", () -> client.submit("{\"protocol\": 1, \"task\": "), "the request is not valid JSON"),
                bad("not an object", () -> client.submit("[1, 2]"), "the request must be a JSON object"),
                bad("unknown field", () -> client.submit("{" + good + ", " + image + ", \"colour\": 3}"),
                        "unknown request field(s): colour"),
                bad("protocol version", () -> client.submit("{\"protocol\": 2, \"task\": \"nuclei\", \"model\": \"m\", "
                        + image + "}"), "unsupported protocol version 2"),
                bad("unknown task", () -> client.submit("{\"protocol\": 1, \"task\": \"segment\", \"model\": \"m\", "
                        + image + "}"), "unknown task 'segment'"),
                bad("missing model", () -> client.submit("{\"protocol\": 1, \"task\": \"nuclei\", " + image + "}"),
                        "the request needs 'model'"),
                bad("unknown model", () -> client.submit(JobRequest.nuclei("no-such-model").imagePath(path).build()),
                        "model 'no-such-model' not found"),
                bad("missing image", () -> client.submit("{" + good + "}"), "the request needs 'image'"),
                bad("missing file", () -> client.submit(JobRequest.nuclei(MODEL).imagePath(path + ".missing").build()),
                        path + ".missing: no such file"),
                bad("unreadable slide", () -> client.submit(JobRequest.nuclei(MODEL).imagePath(notASlide.toString())
                        .build()), notASlide + ": unreadable"),
                bad("region outside", () -> client.submit(JobRequest.nuclei(MODEL).imagePath(path)
                        .region(5000, 5000, 100, 100).build()), "lies outside the image (1024x1024)"),
                bad("unknown option", () -> client.submit("{" + good + ", " + image + ", \"options\": {\"colour\": 1}}"),
                        "unknown option(s): colour"),
                bad("bad option", () -> client.submit(JobRequest.nuclei(MODEL).imagePath(path).options(
                        new JobRequest.Options(null, 0, null, null, null, null, null, null, null, null, null)).build()),
                        "option 'batchSize' must be a positive integer"),
                bad("bad pixel size", () -> client.submit("{" + good + ", \"image\": {\"path\": " + quote(path)
                        + ", \"pixelSize\": -1}}"), "'image.pixelSize' must be a positive number"),
                bad("ROI without area", () -> client.submit("{" + good + ", " + image + ", \"roi\": {\"type\": "
                        + "\"LineString\", \"coordinates\": [[0, 0], [10, 10]]}}"), "'roi' has no area"),
                bad("tile not base64", () -> client.submit("{" + good + ", \"image\": {\"width\": 16, \"height\": 16}, "
                        + "\"tiles\": [" + tile(0, 1.0, "%%%") + "]}"), "tile 0: 'png' is not base64"),
                bad("tile not a PNG", () -> client.submit("{" + good + ", \"image\": {\"width\": 16, \"height\": 16}, "
                        + "\"tiles\": [" + tile(0, 1.0, Base64.getEncoder().encodeToString("hello".getBytes(
                        StandardCharsets.UTF_8))) + "]}"), "tile 0: 'png' cannot be decoded as an image"),
                bad("gray tile", () -> client.submit("{" + good + ", \"image\": {\"width\": 16, \"height\": 16}, "
                        + "\"tiles\": [" + tile(0, 1.0, grayPng) + "]}"), "tile 0: expected an 8-bit RGB or RGBA PNG"),
                bad("mixed downsamples", () -> client.submit("{" + good + ", \"image\": {\"width\": 64, \"height\": 64}, "
                        + "\"tiles\": [" + tile(0, 1.0, png) + ", " + tile(16, 2.0, png) + "]}"),
                        "all tiles must have the same downsample"),
                bad("tiles without size", () -> client.submit("{" + good + ", \"image\": {}, \"tiles\": ["
                        + tile(0, 1.0, png) + "]}"), "'image.width' must be a positive integer"),
                bad("status of unknown job", () -> client.status("no-such-job"), "unknown job id 'no-such-job'"),
                bad("cancel of unknown job", () -> client.cancel("no-such-job"), "unknown job id 'no-such-job'"),
                bad("chunk of unknown job", () -> client.resultChunk("no-such-job", 0), "unknown job id 'no-such-job'"));
        assertTrue(cases.size() >= 20);
        List<String> problems = new ArrayList<>();
        for (Object[] c : cases) {
            String name = (String) c[0];
            @SuppressWarnings("unchecked")
            Supplier<Object> call = (Supplier<Object>) c[1];
            String expected = (String) c[2];
            try {
                Object result = call.get();
                problems.add(name + ": no error, got " + result);
            } catch (CellBridgeException e) {
                if (e.getMessage() == null || !e.getMessage().contains(expected) || e.getMessage().startsWith("internal error"))
                    problems.add(name + ": expected '" + expected + "' in '" + e.getMessage() + "'");
            }
            assertEquals("pong", client.ping(), "the server stopped answering after: " + name);
        }
        assertTrue(problems.isEmpty(), String.join("\n", problems));
    }

    @Test
    @Order(7)
    void runningJobCanBeCancelled() throws Exception {
        Path big = dir.resolve("big.tif");
        runPython(List.of("-m", "cellbridge", "synth-slide", big.toString(), "--size", "4096x4096",
                "--tissue-fraction", "0.5", "--seed", "8"));
        String job = client.submit(JobRequest.nuclei(MODEL).imagePath(big.toString()).build());
        List<JobStatus.State> seen = new ArrayList<>();
        long start = System.nanoTime();
        assertThrows(CancellationException.class, () -> client.collect(job, status -> seen.add(status.state()),
                () -> seen.contains(JobStatus.State.RUNNING)));
        assertTrue(seen.contains(JobStatus.State.RUNNING), seen.toString());
        JobStatus status = client.status(job);
        assertEquals(JobStatus.State.CANCELLED, status.state(), status.toString());
        assertTrue(status.progress() < 1.0, status.toString());
        assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(60), "cancelling took too long");
        assertFalse(client.cancel(job), "a cancelled job cannot be cancelled again");
        assertEquals("pong", client.ping());
    }

    @Test
    @Order(8)
    void crashedServerIsRestartedAndStopEndsIt() throws Exception {
        long oldPid = server.ready().pid();
        ProcessHandle.of(oldPid).ifPresent(ProcessHandle::destroyForcibly);
        for (int i = 0; i < 100 && server.isAlive(); i++)
            Thread.sleep(50);
        assertFalse(server.isAlive());
        assertThrows(CellBridgeException.class, () -> client.ping());
        assertTrue(server.ensureRunning());
        assertTrue(server.isAlive());
        assertTrue(server.ready().pid() != oldPid);
        assertEquals("pong", client.ping(), "the client follows the restarted server");
        assertFalse(server.ensureRunning(), "a healthy server is not restarted");
        long pid = server.ready().pid();
        server.stop();
        assertFalse(server.isAlive());
        assertFalse(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false), "the server process ended");
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> client.ping());
        assertEquals("the CellBridge server is not running (it was stopped)", e.getMessage());
    }

    // ---------------------------------------------------------------------------------------------- helpers

    private List<DetectedObject> pathBasedNuclei() {
        if (pathBased == null) {
            List<Double> progress = new ArrayList<>();
            pathBased = client.run(JobRequest.nuclei(MODEL).imagePath(slide.toString()).build(),
                    status -> progress.add(status.progress()), null);
            assertEquals(1.0, progress.get(progress.size() - 1), "the last status is done");
        }
        return pathBased;
    }

    private List<Coordinate> truthCentres() {
        List<Coordinate> centres = new ArrayList<>();
        for (DetectedObject o : GeoJsonObjects.read(truth)) {
            double x = o.measurement("Centre X px");
            double y = o.measurement("Centre Y px");
            centres.add(Double.isNaN(x) || Double.isNaN(y) ? o.centroid().getCoordinate() : new Coordinate(x, y));
        }
        return centres;
    }

    private static List<Coordinate> centres(List<DetectedObject> objects) {
        return objects.stream().map(o -> o.centroid().getCoordinate()).toList();
    }

    /** How many of {@code from} have a point of {@code to} within {@code distance}. */
    private static int matched(List<Coordinate> from, List<Coordinate> to, double distance) {
        int count = 0;
        for (Coordinate a : from) {
            for (Coordinate b : to) {
                if (a.distance(b) <= distance) {
                    count++;
                    break;
                }
            }
        }
        return count;
    }

    private static Object[] bad(String name, Supplier<Object> call, String expected) {
        return new Object[]{name, call, expected};
    }

    private static String tile(int x, double downsample, String png) {
        int size = (int) Math.round(16 * downsample);
        return "{\"x\": " + x + ", \"y\": 0, \"width\": " + size + ", \"height\": " + size + ", \"downsample\": "
                + downsample + ", \"png\": \"" + png + "\"}";
    }

    private static String base64Png(BufferedImage image) {
        return Base64.getEncoder().encodeToString(TileImage.encodePng(image));
    }

    private static String quote(String text) {
        return new com.google.gson.JsonPrimitive(text).toString();
    }

    /** Run the Python with arguments; return its stdout, or fail with its stderr. */
    private String runPython(List<String> arguments) throws IOException, InterruptedException {
        return Fixtures.runPython(python, dir, arguments);
    }
}
