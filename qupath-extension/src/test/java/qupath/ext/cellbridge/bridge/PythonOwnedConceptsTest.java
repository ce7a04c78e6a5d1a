package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.condition.EnabledIfEnvironmentVariable;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What Java takes from Python instead of computing itself, against the real server started with
 * $CELLBRIDGE_PYTHON: the run signature (the same as {@code cellbridge batch} gives the same options) and the counts
 * table (rows sent from Java make the shared fixture tests/fixtures/counts-table byte for byte).
 */
@Tag("e2e")
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@EnabledIfEnvironmentVariable(named = "CELLBRIDGE_PYTHON", matches = ".+", disabledReason = "CELLBRIDGE_PYTHON is not "
        + "set: end-to-end tests need a Python with cellbridge installed (make test-java sets it to .venv/bin/python)")
class PythonOwnedConceptsTest {

    private static final String MODEL = "nuclei-he";

    @TempDir
    static Path dir;

    @RegisterExtension
    static final RunningServer SERVER = new RunningServer();

    @Test
    void aRunIsSignedAsCellbridgeBatchSignsTheSameOptions() throws Exception {
        CellBridgeClient client = SERVER.client();
        Path slide = dir.resolve("slide.tif");
        runPython(List.of("-m", "cellbridge", "synth-slide", slide.toString(), "--size", "256x256",
                "--tissue-fraction", "0.5", "--seed", "3"));
        Path out = dir.resolve("batch");
        JsonObject summary = JsonParser.parseString(runPython(List.of("-m", "cellbridge", "batch", slide.toString(),
                "--model", MODEL, "--out-dir", out.toString(), "--device", "cpu", "--tile", "256", "--overlap", "32",
                "--cell-expansion", "2", "--threshold", "0.4", "--pixel-size", "0.5"))).getAsJsonObject();
        assertEquals(1, summary.get("done").getAsInt(), summary.toString());
        String batch = summary.get("signature").getAsString();

        RunSettings settings = RunSettings.builder(MODEL).device("cpu").batchSize(2).tileSize(256).overlap(32)
                .cellExpansion(2.0).threshold(0.4).pixelSize(0.5).build();
        assertEquals(batch, client.signature(settings, "nuclei"));
        assertTrue(Files.readAllLines(out.resolve("counts.csv")).get(1).contains("," + batch + ","));
        // how the run is done does not count; what changes the objects does
        assertEquals(batch, client.signature(settings.toBuilder().device("cuda").batchSize(8).sendTiles(true)
                .build(), "nuclei"));
        assertNotEquals(batch, client.signature(settings.toBuilder().cellExpansion(3.0).build(), "nuclei"));
        assertNotEquals(batch, client.signature(settings.toBuilder().pixelSize(null).build(), "nuclei"));
        assertNotEquals(batch, client.signature(settings.toBuilder().stain("ihc-dab").build(), "nuclei"));
        CellBridgeException e = assertThrows(CellBridgeException.class,
                () -> client.signature(settings, "detect"));
        assertTrue(e.getMessage().contains("model 'nuclei-he' is a nuclei model, not a detect model"), e.getMessage());
    }

    @Test
    void rowsSentFromJavaMakeTheSharedCountsTableFixture() throws IOException {
        CellBridgeClient client = SERVER.client();
        Path csv = dir.resolve("tables").resolve("counts.csv");
        List<CountsRow> rows = fixtureRows();
        for (CountsRow row : rows)
            client.putCountsRow(csv, row);
        byte[] expected = Files.readAllBytes(Fixtures.countsTable("counts.csv"));
        assertEquals(new String(expected, StandardCharsets.UTF_8), Files.readString(csv));
        assertArrayEquals(expected, Files.readAllBytes(csv));

        // the same image again replaces its row; a file that is not a counts table is refused, not overwritten
        CountsRow first = rows.get(0);
        client.putCountsRow(csv, CountsRow.skipped(first.project(), first.image(), first.imageId(), first.model(),
                first.signature(), first.counts()));
        List<String> lines = Files.readAllLines(csv);
        assertEquals(Files.readAllLines(Fixtures.countsTable("counts.csv")).size(), lines.size());
        assertTrue(lines.get(1).startsWith("lung-2024,slide 1.svs,1,skipped,1532,"), lines.get(1));
        Path other = dir.resolve("results.csv");
        Files.writeString(other, "sample,score\na,1\n");
        CellBridgeException e = assertThrows(CellBridgeException.class, () -> client.putCountsRow(other, first));
        assertTrue(e.getMessage().contains("not a counts table"), e.getMessage());
        assertEquals("sample,score\na,1\n", Files.readString(other));
    }

    /** The rows of tests/fixtures/counts-table/rows.json, as the Java side holds them. */
    private static List<CountsRow> fixtureRows() throws IOException {
        List<CountsRow> rows = new ArrayList<>();
        for (JsonElement element : JsonParser.parseString(Files.readString(Fixtures.countsTable("rows.json")))
                .getAsJsonArray()) {
            JsonObject o = element.getAsJsonObject();
            Map<String, Integer> counts = new TreeMap<>();
            o.getAsJsonObject("counts").entrySet().forEach(c -> counts.put(c.getKey(), c.getValue().getAsInt()));
            Double seconds = o.get("seconds").isJsonNull() ? null : o.get("seconds").getAsDouble();
            rows.add(new CountsRow(o.get("project").getAsString(), o.get("image").getAsString(),
                    o.get("image_id").getAsString(), o.get("status").getAsString(), o.get("model").getAsString(),
                    o.get("signature").getAsString(), seconds, o.get("error").getAsString(), counts));
        }
        return rows;
    }

    /** Run the Python with arguments; return its stdout, or fail with its stderr. */
    private String runPython(List<String> arguments) throws IOException, InterruptedException {
        return Fixtures.runPython(SERVER.python(), dir, arguments);
    }
}
