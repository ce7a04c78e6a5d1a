package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonObject;

import java.util.Collections;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * One image's row of the counts table: what happened to it and its objects per class. The table itself (columns,
 * number format, the file) belongs to Python ({@code cellbridge.batch.counts}, docs/protocol.md "The counts
 * table"): {@link CellBridgeClient#putCountsRow} sends a row to the server, which puts it into the file.
 *
 * @param project the project's name (its folder's name)
 * @param image the image's name
 * @param imageId the image's entry ID in the project
 * @param status {@link #DONE}, {@link #SKIPPED} or {@link #FAILED}
 * @param model the model name
 * @param signature the run's signature ({@link CellBridgeClient#signature}; empty for failures)
 * @param seconds how long the image took, or null
 * @param error why it failed, or empty
 * @param counts objects per class name (unmodifiable, sorted by name)
 */
public record CountsRow(String project, String image, String imageId, String status, String model, String signature,
                        Double seconds, String error, Map<String, Integer> counts) {

    /** Status of an image run now. */
    public static final String DONE = "done";
    /** Status of an image done before with the same model and parameters. */
    public static final String SKIPPED = "skipped";
    /** Status of an image that failed ({@code error} says why). */
    public static final String FAILED = "failed";

    /** Replaces nulls by empty values and copies the counts. */
    public CountsRow {
        project = Objects.requireNonNullElse(project, "");
        image = Objects.requireNonNullElse(image, "");
        imageId = Objects.requireNonNullElse(imageId, "");
        status = Objects.requireNonNullElse(status, "");
        model = Objects.requireNonNullElse(model, "");
        signature = Objects.requireNonNullElse(signature, "");
        error = Objects.requireNonNullElse(error, "");
        counts = counts == null ? Map.of() : Collections.unmodifiableMap(new TreeMap<>(counts));
    }

    /**
     * @param project project name
     * @param image image name
     * @param imageId entry ID
     * @param model model name
     * @param signature run signature
     * @param seconds time taken, or null
     * @param counts objects per class
     * @return the row of an image run now
     */
    public static CountsRow done(String project, String image, String imageId, String model, String signature,
                                 Double seconds, Map<String, Integer> counts) {
        return new CountsRow(project, image, imageId, DONE, model, signature, seconds, "", counts);
    }

    /**
     * @param project project name
     * @param image image name
     * @param imageId entry ID
     * @param model model name
     * @param signature run signature
     * @param counts the objects the image holds, per class
     * @return the row of an image already done with this signature
     */
    public static CountsRow skipped(String project, String image, String imageId, String model, String signature,
                                    Map<String, Integer> counts) {
        return new CountsRow(project, image, imageId, SKIPPED, model, signature, null, "", counts);
    }

    /**
     * @param project project name
     * @param image image name (empty when the project itself failed)
     * @param imageId entry ID (empty when the project itself failed)
     * @param model model name
     * @param error why it failed
     * @return the row of a failed image
     */
    public static CountsRow failed(String project, String image, String imageId, String model, String error) {
        return new CountsRow(project, image, imageId, FAILED, model, "", null, error, Map.of());
    }

    /** @return all objects of the image */
    public int objects() {
        return counts.values().stream().mapToInt(Integer::intValue).sum();
    }

    /** @return the row as the JSON {@link CellBridgeService#putCountsRow} takes */
    public String toJson() {
        JsonObject json = new JsonObject();
        json.addProperty("project", project);
        json.addProperty("image", image);
        json.addProperty("image_id", imageId);
        json.addProperty("status", status);
        json.addProperty("model", model);
        json.addProperty("signature", signature);
        json.add("seconds", Json.numberOrNull(seconds));
        json.addProperty("error", error);
        JsonObject classes = new JsonObject();
        counts.forEach(classes::addProperty);
        json.add("counts", classes);
        return json.toString();
    }
}
