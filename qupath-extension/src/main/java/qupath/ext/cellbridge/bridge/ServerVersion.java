package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.util.List;

/**
 * What the server reports about itself ({@code version()}).
 *
 * @param cellbridge the cellbridge package version
 * @param protocol the protocol version it speaks
 * @param python the Python version
 * @param torch the PyTorch version, or null if unknown
 * @param devices the devices it can run on, e.g. {@code ["cpu", "cuda:0"]}
 */
public record ServerVersion(String cellbridge, int protocol, String python, String torch, List<String> devices) {

    /** Copies the device list. */
    public ServerVersion {
        devices = devices == null ? List.of() : List.copyOf(devices);
    }

    static ServerVersion fromJson(JsonElement value) {
        String where = "version()";
        JsonObject o = Json.object(value, where);
        return new ServerVersion(Json.optionalText(o, "cellbridge", where), Json.integer(o, "protocol", where),
                Json.optionalText(o, "python", where), Json.optionalText(o, "torch", where),
                Json.strings(o, "devices", where));
    }
}
