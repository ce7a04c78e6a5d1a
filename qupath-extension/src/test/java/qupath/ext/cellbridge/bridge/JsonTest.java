package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** Typed field access on the server's JSON: the value when it has the right kind, else one error naming the field. */
class JsonTest {

    private static final JsonObject REPLY = JsonParser.parseString("{\"name\": \"nuclei-he\", \"mpp\": 0.5, "
            + "\"tiles\": 4, \"classes\": [\"Tumor\", 2], \"version\": 3, \"path\": null, \"info\": {\"a\": 1}, "
            + "\"half\": 2.5, \"long\": \"" + "x".repeat(80) + "\"}").getAsJsonObject();

    private static void assertError(String message, Executable call) {
        assertEquals(message, assertThrows(CellBridgeException.class, call).getMessage());
    }

    @Test
    void fieldsOfTheRightKindAreRead() {
        assertEquals("nuclei-he", Json.string(REPLY, "name", "model"));
        assertEquals(0.5, Json.number(REPLY, "mpp", "model"));
        assertEquals(4, Json.integer(REPLY, "tiles", "model"));
        assertEquals("3", Json.optionalText(REPLY, "version", "model"), "a number is read as text");
        assertNull(Json.optionalText(REPLY, "path", "model"));
        assertNull(Json.optionalText(REPLY, "absent", "model"));
        assertNull(Json.optionalNumber(REPLY, "path", "model"));
        assertEquals(0.5, Json.optionalNumber(REPLY, "mpp", "model"));
        assertEquals(List.of("Tumor", "2"), Json.strings(REPLY, "classes", "model"));
        assertEquals(List.of(), Json.strings(REPLY, "absent", "model"));
        assertEquals(1, Json.object(REPLY.get("info"), "info").get("a").getAsInt());
        assertEquals(2, Json.array(REPLY.get("classes"), "classes").size());
    }

    @Test
    void aFieldOfTheWrongKindIsOneErrorNamingItAndWhatItIs() {
        assertError("model.mpp must be a string, not a number (0.5)", () -> Json.string(REPLY, "mpp", "model"));
        assertError("model.absent must be a string, not missing", () -> Json.string(REPLY, "absent", "model"));
        assertError("model.name must be a number, not a string (\"nuclei-he\")",
                () -> Json.number(REPLY, "name", "model"));
        assertError("model.path must be a number, not null", () -> Json.number(REPLY, "path", "model"));
        assertError("model.name must be a number, not a string (\"nuclei-he\")",
                () -> Json.optionalNumber(REPLY, "name", "model"));
        assertError("model.half must be an integer, not 2.5", () -> Json.integer(REPLY, "half", "model"));
        assertError("model.info must be a string, not an object", () -> Json.optionalText(REPLY, "info", "model"));
        assertError("model.long must be a number, not a string (\"" + "x".repeat(56) + "...)",
                () -> Json.number(REPLY, "long", "model"));
        assertError("listModels() must be a JSON array, not an object",
                () -> Json.array(REPLY.get("info"), "listModels()"));
        assertError("version() must be a JSON object, not an array",
                () -> Json.object(REPLY.get("classes"), "version()"));
        assertError("status must be a JSON object, not missing", () -> Json.object(null, "status"));
    }
}
