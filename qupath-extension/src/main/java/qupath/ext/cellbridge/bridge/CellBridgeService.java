package qupath.ext.cellbridge.bridge;

/**
 * The service the CellBridge Python server exposes over py4j (protocol version 1, see {@code docs/protocol.md}).
 * <p>
 * Every method returns a JSON <em>envelope</em>: {@code {"ok": true, "value": ...}} or
 * {@code {"ok": false, "error": "...", "type": "..."}}. Use {@link CellBridgeClient} for typed calls that turn
 * failed envelopes into {@link CellBridgeException}s.
 */
public interface CellBridgeService {

    /** Envelope with value {@code "pong"}. */
    String ping();

    /** Envelope with value {@code {"cellbridge", "protocol", "python", "torch", "devices": [...]}}. */
    String version();

    /** Envelope with value {@code [{"name","task","architecture","classes":[..],"mpp","version","path"}]}. */
    String listModels();

    /** Envelope with the new job's id as value. */
    String submit(String requestJson);

    /**
     * Envelope with the run signature of a request as value (16 hex digits): the request as for {@link #submit},
     * its image optional (only {@code image.pixelSize} counts); the same signature {@code cellbridge batch} gives
     * the same model and options.
     */
    String signature(String requestJson);

    /**
     * Envelope with value {@code true} once one image's row is in the counts table at {@code csvPath} (added, or
     * replacing the row of the same project and image; the file is created when missing, and written whole).
     */
    String putCountsRow(String csvPath, String rowJson);

    /** Envelope with value {@code {"state","progress","message","objects","chunks"}}. */
    String status(String jobId);

    /** Envelope with value {@code true} when the job was queued or running and is now cancelling. */
    String cancel(String jobId);

    /** Envelope with a QuPath GeoJSON FeatureCollection string as value, or {@code null} after the last chunk. */
    String resultChunk(String jobId, int index);

    /** Envelope with value {@code true}; the server stops after replying. */
    String shutdown();
}
