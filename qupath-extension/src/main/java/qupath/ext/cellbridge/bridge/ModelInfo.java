package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

/**
 * A model the server can run ({@code listModels()}).
 *
 * @param name the name to put in a request
 * @param task {@code "nuclei"}, {@code "detect"}, {@code "semantic"} or {@code "instance"}
 * @param architecture the engine, e.g. {@code "unet"}
 * @param classes the class names it predicts
 * @param mpp the pixel size (µm) it was trained at, or null if not fixed
 * @param version the model package's version, or null
 * @param path the model folder on the server's machine, or null
 */
public record ModelInfo(String name, String task, String architecture, List<String> classes, Double mpp,
                        String version, String path) {

    /** Copies the class list. */
    public ModelInfo {
        classes = classes == null ? List.of() : List.copyOf(classes);
    }

    /**
     * @param models the server's models
     * @param nameOrFolder a model name, or a model folder
     * @return the model of that name, or whose folder is that folder
     */
    public static Optional<ModelInfo> find(List<ModelInfo> models, String nameOrFolder) {
        for (ModelInfo model : models) {
            if (model.name().equals(nameOrFolder) || (model.path() != null && samePath(model.path(), nameOrFolder)))
                return Optional.of(model);
        }
        return Optional.empty();
    }

    private static boolean samePath(String a, String b) {
        try {
            return Path.of(a).toAbsolutePath().normalize().equals(Path.of(b).toAbsolutePath().normalize());
        } catch (RuntimeException e) {
            return false;
        }
    }

    static ModelInfo fromJson(JsonElement value, int index) {
        String where = "listModels()[" + index + "]";
        JsonObject o = Json.object(value, where);
        return new ModelInfo(Json.string(o, "name", where), Json.optionalText(o, "task", where),
                Json.optionalText(o, "architecture", where), Json.strings(o, "classes", where),
                Json.optionalNumber(o, "mpp", where), Json.optionalText(o, "version", where),
                Json.optionalText(o, "path", where));
    }
}
