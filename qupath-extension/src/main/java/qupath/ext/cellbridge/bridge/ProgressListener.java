package qupath.ext.cellbridge.bridge;

/**
 * Told about a job's progress while {@link CellBridgeClient#collect} waits for it.
 */
@FunctionalInterface
public interface ProgressListener {

    /** A listener that ignores all updates. */
    ProgressListener NONE = status -> { };

    /**
     * Called after every status poll, on the thread that runs {@code collect}.
     * @param status the job's latest status (progress 0..1, message, objects so far)
     */
    void onProgress(JobStatus status);
}
