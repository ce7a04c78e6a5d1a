package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

import java.util.Locale;

/**
 * A job's state as {@code status(id)} reports it.
 *
 * @param state where the job is
 * @param progress 0..1: tiles done / tiles planned
 * @param message what the job is doing, or why it failed (may be empty)
 * @param objects objects found so far
 * @param chunks result chunks available so far (final once {@link State#DONE})
 */
public record JobStatus(State state, double progress, String message, int objects, int chunks) {

    /** Job states: {@code queued → running → done | failed | cancelled}. */
    public enum State {
        /** Waiting for a worker. */
        QUEUED,
        /** Working. */
        RUNNING,
        /** Finished; all chunks are available. */
        DONE,
        /** Stopped by an error; the message says why. */
        FAILED,
        /** Stopped on request. */
        CANCELLED;

        /** @return true for done, failed and cancelled */
        public boolean isFinal() {
            return this == DONE || this == FAILED || this == CANCELLED;
        }

        static State parse(String text) {
            try {
                return valueOf(text.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new CellBridgeException("the CellBridge server reported an unknown job state '" + text + "'");
            }
        }
    }

    /** Keeps the message non-null. */
    public JobStatus {
        message = message == null ? "" : message;
    }

    static JobStatus fromJson(JsonElement value, String jobId) {
        String where = "status(" + jobId + ")";
        JsonObject o = Json.object(value, where);
        return new JobStatus(State.parse(Json.string(o, "state", where)),
                Json.isMissing(o.get("progress")) ? 0.0 : Json.number(o, "progress", where),
                Json.optionalText(o, "message", where),
                Json.isMissing(o.get("objects")) ? 0 : Json.integer(o, "objects", where),
                Json.isMissing(o.get("chunks")) ? 0 : Json.integer(o, "chunks", where));
    }
}
