package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CellBridgeClientTest {

    /** An in-memory server with one scripted job "job-1": each status() call moves one step through the script. */
    static class FakeService implements CellBridgeService {

        final List<String> calls = new CopyOnWriteArrayList<>();
        final List<String> script = new ArrayList<>();   // status values, one per poll; the last repeats
        final List<String> chunks = new ArrayList<>();   // chunk JSON strings
        String pingReply = ok("\"pong\"");
        String lastRequest;
        int polls;
        boolean cancelRequested;

        static String ok(String value) {
            return "{\"ok\": true, \"value\": " + value + "}";
        }

        static String error(String message, String type) {
            JsonObject o = new JsonObject();
            o.addProperty("ok", false);
            o.addProperty("error", message);
            o.addProperty("type", type);
            return o.toString();
        }

        static String status(String state, double progress, int objects, int chunks, String message) {
            JsonObject o = new JsonObject();
            o.addProperty("state", state);
            o.addProperty("progress", progress);
            o.addProperty("message", message);
            o.addProperty("objects", objects);
            o.addProperty("chunks", chunks);
            return o.toString();
        }

        String current() {
            return script.get(Math.max(0, Math.min(polls - 1, script.size() - 1)));
        }

        int chunksNow() {
            return JsonParser.parseString(current()).getAsJsonObject().get("chunks").getAsInt();
        }

        @Override
        public String ping() {
            calls.add("ping");
            return pingReply;
        }

        @Override
        public String version() {
            calls.add("version");
            return ok("{\"cellbridge\": \"0.1.0\", \"protocol\": 1, \"python\": \"3.11.2\", \"torch\": \"2.4.0\","
                    + " \"devices\": [\"cpu\", \"cuda:0\"]}");
        }

        @Override
        public String listModels() {
            calls.add("listModels");
            return ok("[{\"name\": \"nuclei-he\", \"task\": \"nuclei\", \"architecture\": \"unet\", "
                    + "\"classes\": [\"Tumor\", \"Stroma\"], \"mpp\": 0.5, \"version\": \"1\", \"path\": \"/m/nuclei-he\"},"
                    + "{\"name\": \"boxes\", \"task\": \"detect\", \"architecture\": \"fasterrcnn\", \"classes\": [],"
                    + " \"mpp\": null, \"version\": null, \"path\": null}]");
        }

        @Override
        public String submit(String requestJson) {
            calls.add("submit");
            lastRequest = requestJson;
            if (requestJson.contains("missing-model"))
                return error("unknown model 'missing-model'; available: nuclei-he", "ModelError");
            return ok("\"job-1\"");
        }

        @Override
        public String signature(String requestJson) {
            calls.add("signature");
            lastRequest = requestJson;
            if (requestJson.contains("missing-model"))
                return error("unknown model 'missing-model'; available: nuclei-he", "ModelError");
            return ok("\"0123456789abcdef\"");
        }

        @Override
        public String putCountsRow(String csvPath, String rowJson) {
            calls.add("putCountsRow " + csvPath);
            lastRequest = rowJson;
            return ok("true");
        }

        @Override
        public String status(String jobId) {
            calls.add("status " + jobId);
            if (!jobId.equals("job-1"))
                return error("unknown job id '" + jobId + "'", "KeyError");
            if (cancelRequested)
                return ok(status("cancelled", 0.5, 0, 0, "cancelled"));
            polls++;
            return ok(current());
        }

        @Override
        public String cancel(String jobId) {
            calls.add("cancel " + jobId);
            cancelRequested = true;
            return ok("true");
        }

        @Override
        public String resultChunk(String jobId, int index) {
            calls.add("chunk " + index);
            if (index < chunksNow())
                return ok(new com.google.gson.JsonPrimitive(chunks.get(index)).toString());
            String last = current();
            if (last.contains("\"done\""))
                return ok("null");
            return error("chunk " + index + " of job " + jobId + " is not ready yet", "NotReady");
        }

        @Override
        public String shutdown() {
            calls.add("shutdown");
            return ok("true");
        }
    }

    private static String chunk(int first, int count) {
        StringBuilder sb = new StringBuilder("{\"type\":\"FeatureCollection\",\"features\":[");
        for (int i = first; i < first + count; i++) {
            if (i > first)
                sb.append(',');
            sb.append("{\"type\":\"Feature\",\"id\":\"id-").append(i).append("\",\"geometry\":{\"type\":\"Polygon\","
                    + "\"coordinates\":[[[").append(i).append(",0],[").append(i + 1).append(",0],[").append(i + 1)
                    .append(",1],[").append(i).append(",0]]]},\"properties\":{\"objectType\":\"detection\","
                    + "\"classification\":{\"name\":\"Tumor\",\"color\":[200,0,0]},\"measurements\":{\"Area\":0.5,"
                    + "\"Hematoxylin OD mean\":\"NaN\"}}}");
        }
        return sb.append("]}").toString();
    }

    private static CellBridgeClient client(FakeService fake) {
        return CellBridgeClient.of(fake).withPollInterval(Duration.ofMillis(1)).withCancelWait(Duration.ofSeconds(2));
    }

    @Test
    void unwrapsValues() {
        FakeService fake = new FakeService();
        CellBridgeClient client = client(fake);
        assertEquals("pong", client.ping());
        ServerVersion version = client.version();
        assertEquals(new ServerVersion("0.1.0", 1, "3.11.2", "2.4.0", List.of("cpu", "cuda:0")), version);
        List<ModelInfo> models = client.listModels();
        assertEquals(2, models.size());
        assertEquals(new ModelInfo("nuclei-he", "nuclei", "unet", List.of("Tumor", "Stroma"), 0.5, "1", "/m/nuclei-he"),
                models.get(0));
        assertNull(models.get(1).mpp());
        assertNull(models.get(1).path());
        assertEquals("job-1", client.submit(JobRequest.nuclei("nuclei-he").imagePath("/a.tif").build()));
        assertEquals("nuclei-he", JsonParser.parseString(fake.lastRequest).getAsJsonObject().get("model").getAsString());
        assertTrue(client.cancel("job-1"));
        client.shutdown();
        assertEquals(List.of("ping", "version", "listModels", "submit", "cancel job-1", "shutdown"), fake.calls);
    }

    @Test
    void signatureSendsTheRunWithoutAnImageAndReturnsTheServersAnswer() {
        FakeService fake = new FakeService();
        RunSettings settings = RunSettings.builder("nuclei-he").device("cuda").tileSize(256).cellExpansion(2.0)
                .pixelSize(0.5).build();
        assertEquals("0123456789abcdef", client(fake).signature(settings, "nuclei"));
        JsonObject sent = JsonParser.parseString(fake.lastRequest).getAsJsonObject();
        assertEquals(JsonParser.parseString("{\"protocol\": 1, \"task\": \"nuclei\", \"model\": \"nuclei-he\", "
                + "\"image\": {\"pixelSize\": 0.5}, \"options\": {\"device\": \"cuda\", \"tileSize\": 256, "
                + "\"cellExpansion\": 2.0}}"), sent);
        // the model's own task when the settings name none; no image at all without a pixel size override
        client(fake).signature(RunSettings.builder("boxes").build(), "detect");
        assertEquals(JsonParser.parseString("{\"protocol\": 1, \"task\": \"detect\", \"model\": \"boxes\", "
                + "\"options\": {}}"), JsonParser.parseString(fake.lastRequest));
        CellBridgeException e = assertThrows(CellBridgeException.class,
                () -> client(fake).signature(RunSettings.builder("missing-model").build(), null));
        assertEquals("unknown model 'missing-model'; available: nuclei-he", e.getMessage());
    }

    @Test
    void putCountsRowSendsTheRowAsTheServerReadsIt() {
        FakeService fake = new FakeService();
        client(fake).putCountsRow(java.nio.file.Path.of("/data/counts.csv"), CountsRow.done("p1", "a b.tif", "3",
                "nuclei-he", "0123456789abcdef", 1.5, java.util.Map.of("Tumor", 4, "Stroma", 2)));
        assertEquals("putCountsRow /data/counts.csv", fake.calls.get(fake.calls.size() - 1));
        assertEquals(JsonParser.parseString("{\"project\": \"p1\", \"image\": \"a b.tif\", \"image_id\": \"3\", "
                + "\"status\": \"done\", \"model\": \"nuclei-he\", \"signature\": \"0123456789abcdef\", "
                + "\"seconds\": 1.5, \"error\": \"\", \"counts\": {\"Stroma\": 2, \"Tumor\": 4}}"),
                JsonParser.parseString(fake.lastRequest));
        client(fake).putCountsRow(java.nio.file.Path.of("/data/counts.csv"),
                CountsRow.failed("p1", "b.tif", "4", "nuclei-he", "no such file"));
        assertEquals(JsonParser.parseString("{\"project\": \"p1\", \"image\": \"b.tif\", \"image_id\": \"4\", "
                + "\"status\": \"failed\", \"model\": \"nuclei-he\", \"signature\": \"\", \"seconds\": null, "
                + "\"error\": \"no such file\", \"counts\": {}}"), JsonParser.parseString(fake.lastRequest));
    }

    @Test
    void errorEnvelopesBecomeExceptionsWithTheMessageUnchanged() {
        FakeService fake = new FakeService();
        fake.script.add(FakeService.status("running", 0.0, 0, 0, ""));
        CellBridgeClient client = client(fake);
        CellBridgeException e = assertThrows(CellBridgeException.class,
                () -> client.submit(JobRequest.nuclei("missing-model").imagePath("/a.tif").build()));
        assertEquals("unknown model 'missing-model'; available: nuclei-he", e.getMessage());
        assertEquals("ModelError", e.pythonType());
        e = assertThrows(CellBridgeException.class, () -> client.status("nope"));
        assertEquals("unknown job id 'nope'", e.getMessage());
        e = assertThrows(CellBridgeException.class, () -> client.resultChunk("job-1", 5));
        assertEquals("chunk 5 of job job-1 is not ready yet", e.getMessage());
    }

    @Test
    void malformedRepliesAndBrokenConnectionsAreClearErrors() {
        FakeService fake = new FakeService();
        CellBridgeClient client = client(fake);
        fake.pingReply = "not json {";
        assertTrue(assertThrows(CellBridgeException.class, client::ping).getMessage()
                .startsWith("the CellBridge server's reply to ping() is not valid JSON"));
        fake.pingReply = "{\"value\": 1}";
        assertEquals("the CellBridge server's reply to ping() is not an envelope with \"ok\": {\"value\": 1}",
                assertThrows(CellBridgeException.class, client::ping).getMessage());
        fake.pingReply = null;
        assertEquals("the CellBridge server sent no reply to ping()",
                assertThrows(CellBridgeException.class, client::ping).getMessage());
        fake.pingReply = "{\"ok\": false}";
        assertEquals("the CellBridge server reported an error in ping() without a message",
                assertThrows(CellBridgeException.class, client::ping).getMessage());
        CellBridgeClient broken = CellBridgeClient.of(new FakeService() {
            @Override
            public String ping() {
                throw new IllegalStateException("Error while sending a command.");
            }
        });
        CellBridgeException e = assertThrows(CellBridgeException.class, broken::ping);
        assertEquals("the CellBridge server did not answer ping(): Error while sending a command.", e.getMessage());
        assertTrue(e.getCause() instanceof IllegalStateException);
    }

    @Test
    void collectReadsChunksAsTheyArriveAndReportsProgress() {
        FakeService fake = new FakeService();
        fake.chunks.addAll(List.of(chunk(0, 3), chunk(3, 2), chunk(5, 1)));
        fake.script.addAll(List.of(
                FakeService.status("queued", 0.0, 0, 0, "waiting"),
                FakeService.status("running", 0.25, 3, 1, "tile 1 of 4"),
                FakeService.status("running", 0.5, 3, 1, "tile 2 of 4"),
                FakeService.status("running", 0.75, 5, 2, "tile 3 of 4"),
                FakeService.status("done", 1.0, 6, 3, "done")));
        List<JobStatus> updates = new ArrayList<>();
        List<DetectedObject> objects = client(fake).collect("job-1", updates::add, () -> false);
        assertEquals(6, objects.size());
        assertEquals(List.of("id-0", "id-1", "id-2", "id-3", "id-4", "id-5"),
                objects.stream().map(DetectedObject::id).toList());
        assertEquals("Tumor", objects.get(5).className());
        assertTrue(Double.isNaN(objects.get(5).measurement("Hematoxylin OD mean")));
        assertEquals(List.of(0.0, 0.25, 0.5, 0.75, 1.0), updates.stream().map(JobStatus::progress).toList());
        assertEquals(JobStatus.State.QUEUED, updates.get(0).state());
        assertEquals("tile 3 of 4", updates.get(3).message());
        assertEquals(5, updates.get(3).objects());
        // chunk 0 read while running (after poll 2), chunk 1 after poll 4, chunk 2 and the end marker once done
        assertEquals(List.of("status job-1", "status job-1", "chunk 0", "status job-1", "status job-1", "chunk 1",
                "status job-1", "chunk 2", "chunk 3"), fake.calls);
    }

    @Test
    void failedJobThrowsItsMessage() {
        FakeService fake = new FakeService();
        fake.script.addAll(List.of(FakeService.status("running", 0.1, 0, 0, "tile 1 of 10"),
                FakeService.status("failed", 0.1, 0, 0, "cannot read slide /a.tif: not a TIFF file")));
        CellBridgeException e = assertThrows(CellBridgeException.class,
                () -> client(fake).collect("job-1", null, null));
        assertEquals("cannot read slide /a.tif: not a TIFF file", e.getMessage());
    }

    @Test
    void cancellingStopsTheJobOnTheServer() {
        FakeService fake = new FakeService();
        fake.chunks.add(chunk(0, 2));
        fake.script.add(FakeService.status("running", 0.1, 2, 1, "tile 1 of 10"));
        AtomicInteger asked = new AtomicInteger();
        List<JobStatus> updates = new ArrayList<>();
        CancellationException e = assertThrows(CancellationException.class,
                () -> client(fake).collect("job-1", updates::add, () -> asked.incrementAndGet() > 3));
        assertEquals("job job-1 was cancelled", e.getMessage());
        assertEquals(3, updates.size());
        assertTrue(fake.calls.contains("cancel job-1"));
        assertEquals("status job-1", fake.calls.get(fake.calls.size() - 1), "waits until the job reports cancelled");
    }

    @Test
    void jobCancelledByTheServerThrowsCancellation() {
        FakeService fake = new FakeService();
        fake.script.addAll(List.of(FakeService.status("running", 0.1, 0, 0, ""),
                FakeService.status("cancelled", 0.1, 0, 0, "cancelled")));
        assertThrows(CancellationException.class, () -> client(fake).collect("job-1", null, null));
        assertFalse(fake.calls.contains("cancel job-1"));
    }

    @Test
    void interruptCancelsTheJob() {
        FakeService fake = new FakeService();
        fake.script.add(FakeService.status("running", 0.1, 0, 0, ""));
        Thread.currentThread().interrupt();
        try {
            assertThrows(CancellationException.class, () -> client(fake).collect("job-1", null, null));
            assertTrue(fake.calls.contains("cancel job-1"));
        } finally {
            assertTrue(Thread.interrupted(), "the interrupt flag is kept");
        }
    }

    @Test
    void malformedChunkNamesTheChunk() {
        FakeService fake = new FakeService();
        fake.chunks.add("{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"properties\":"
                + "{\"objectType\":\"detection\"}}]}");
        fake.script.add(FakeService.status("done", 1.0, 1, 1, ""));
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> client(fake).collect("job-1", null, null));
        assertEquals("chunk 0 of job job-1: feature 0: missing geometry", e.getMessage());
    }

    @Test
    void unknownStateIsAnError() {
        FakeService fake = new FakeService();
        fake.script.add("{\"state\": \"paused\", \"progress\": 0}");
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> client(fake).status("job-1"));
        assertEquals("the CellBridge server reported an unknown job state 'paused'", e.getMessage());
    }
}
