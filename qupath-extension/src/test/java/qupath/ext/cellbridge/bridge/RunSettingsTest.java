package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RunSettingsTest {

    private static RunSettings typical() {
        return RunSettings.builder("nuclei-he").device("auto").tileSize(1024).overlap(64).cellExpansion(3.0).build();
    }

    @Test
    void requestCarriesTheModelTaskAndOptions() {
        JobRequest request = typical().request("nuclei").imagePath("/slides/a.svs").build();
        JsonObject json = JsonParser.parseString(request.toJson()).getAsJsonObject();
        assertEquals("nuclei", json.get("task").getAsString());
        assertEquals("nuclei-he", json.get("model").getAsString());
        JsonObject options = json.getAsJsonObject("options");
        assertEquals(Map.of("device", "auto", "tileSize", 1024, "overlap", 64, "cellExpansion", 3.0),
                Map.of("device", options.get("device").getAsString(), "tileSize", options.get("tileSize").getAsInt(),
                        "overlap", options.get("overlap").getAsInt(),
                        "cellExpansion", options.get("cellExpansion").getAsDouble()));
        assertEquals(4, options.size());
        assertFalse(json.getAsJsonObject("image").has("pixelSize"));
    }

    @Test
    void taskComesFromTheSettingsElseTheModelElseNuclei() {
        assertEquals(JobRequest.Task.DETECT, typical().resolveTask("detect"));
        assertEquals(JobRequest.Task.NUCLEI, typical().resolveTask(null));
        assertEquals(JobRequest.Task.NUCLEI, typical().toBuilder().task("NUCLEI").build().resolveTask("detect"));
        assertThrows(IllegalArgumentException.class, () -> RunSettings.builder("m").task("segment"));
    }

    @Test
    void badValuesAreRefusedWithTheirName() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> RunSettings.builder("m").tileSize(0).build())
                .getMessage().contains("tile size"));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> RunSettings.builder("m").tileSize(256).overlap(128).build()).getMessage().contains("overlap"));
        assertThrows(IllegalArgumentException.class, () -> RunSettings.builder("m").cellExpansion(-1.0).build());
        assertThrows(IllegalArgumentException.class, () -> RunSettings.builder(" ").build());
        assertThrows(IllegalArgumentException.class, () -> RunSettings.builder("m").pixelSize(0.0).build());
    }

    @Test
    void builderScriptRebuildsTheSettings() {
        RunSettings settings = typical().toBuilder().task("nuclei").threshold(0.4).replaceExisting(false).build();
        assertEquals("CellBridge.builder('nuclei-he').task('nuclei').device('auto').tileSize(1024).overlap(64)"
                + ".cellExpansion(3.0d).threshold(0.4d).replaceExisting(false)", settings.builderScript("CellBridge"));
        assertEquals(List.of("model", "task", "device", "tileSize", "overlap", "cellExpansion", "threshold",
                "replaceExisting"), List.copyOf(settings.parameters().keySet()));
        assertEquals("'C:\\\\models\\\\it\\'s $x'", RunSettings.groovyString("C:\\models\\it's $x"));
    }

    @Test
    void ihcSettingsAreCheckedAndScripted() {
        RunSettings ihc = typical().toBuilder().stain("ihc-dab").stainVectors("default").positivity(0.2, 0.4, 0.6).build();
        assertEquals("CellBridge.builder('nuclei-he').device('auto').tileSize(1024).overlap(64).cellExpansion(3.0d)"
                + ".stain('ihc-dab').stainVectors('default').positivity(0.2d, 0.4d, 0.6d).replaceExisting(true)",
                ihc.builderScript("CellBridge"));
        assertEquals(List.of(0.2, 0.4, 0.6), ihc.request("nuclei").imagePath("/a").build().options().positivity());
        var e = assertThrows(IllegalArgumentException.class,
                () -> typical().toBuilder().positivity(0.4, 0.2, 0.6).build());
        assertEquals("positivity thresholds must be positive and ascending: [0.4, 0.2, 0.6]", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> typical().toBuilder().positivity(0.2, 0.4).build());
        assertThrows(IllegalArgumentException.class, () -> typical().toBuilder().stain("ihc").build());
    }
}
