package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonElement;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CancellationException;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * Typed calls to a {@link CellBridgeService}: envelopes are unwrapped, {@code ok: false} becomes a
 * {@link CellBridgeException} carrying the server's error unchanged, and results become {@link DetectedObject}s
 * (or whatever a {@link ChunkReader} makes of them: inside QuPath, QuPath's own objects read by QuPath's reader).
 * <pre>{@code
 * CellBridgeClient client = server.client();
 * String job = client.submit(JobRequest.nuclei("nuclei-he").imagePath(path).build());
 * List<DetectedObject> nuclei = client.collect(job, status -> updateProgress(status.progress()), task::isCancelled);
 * }</pre>
 * Instances are immutable and may be shared between threads (py4j gives each thread its own connection).
 */
public final class CellBridgeClient {

    private static final Duration DEFAULT_POLL = Duration.ofMillis(200);
    private static final Duration DEFAULT_CANCEL_WAIT = Duration.ofSeconds(30);

    private final Supplier<CellBridgeService> service;
    private final Duration pollInterval;
    private final Duration cancelWait;

    private CellBridgeClient(Supplier<CellBridgeService> service, Duration pollInterval, Duration cancelWait) {
        this.service = service;
        this.pollInterval = pollInterval;
        this.cancelWait = cancelWait;
    }

    /**
     * @param service a connected service (e.g. {@link ServerProcess#service()}, or a fake in tests)
     * @return a client calling it
     */
    public static CellBridgeClient of(CellBridgeService service) {
        Objects.requireNonNull(service, "service");
        return new CellBridgeClient(() -> service, DEFAULT_POLL, DEFAULT_CANCEL_WAIT);
    }

    /**
     * @param service gives the current service at each call (so a restarted server is picked up)
     * @return a client calling it
     */
    public static CellBridgeClient of(Supplier<CellBridgeService> service) {
        Objects.requireNonNull(service, "service");
        return new CellBridgeClient(service, DEFAULT_POLL, DEFAULT_CANCEL_WAIT);
    }

    /**
     * @param interval how long {@link #collect} waits between status polls (default 200 ms)
     * @return a client like this one with that interval
     */
    public CellBridgeClient withPollInterval(Duration interval) {
        return new CellBridgeClient(service, Objects.requireNonNull(interval), cancelWait);
    }

    /**
     * @param wait how long {@link #collect} waits for a cancelled job to stop (default 30 s)
     * @return a client like this one with that wait
     */
    public CellBridgeClient withCancelWait(Duration wait) {
        return new CellBridgeClient(service, pollInterval, Objects.requireNonNull(wait));
    }

    /** @return the server's answer, {@code "pong"} */
    public String ping() {
        return text(call("ping()", s -> s.ping()));
    }

    /** @return the server's versions and devices */
    public ServerVersion version() {
        return ServerVersion.fromJson(call("version()", CellBridgeService::version));
    }

    /** @return the models the server can run */
    public List<ModelInfo> listModels() {
        JsonElement value = call("listModels()", CellBridgeService::listModels);
        List<ModelInfo> models = new ArrayList<>();
        int i = 0;
        for (JsonElement model : Json.array(value, "listModels()"))
            models.add(ModelInfo.fromJson(model, i++));
        return List.copyOf(models);
    }

    /**
     * @param request the job
     * @return the new job's id
     * @throws CellBridgeException with the server's message if it refuses the request
     */
    public String submit(JobRequest request) {
        return submit(request.toJson());
    }

    /**
     * @param requestJson a request as JSON text (see docs/protocol.md)
     * @return the new job's id
     * @throws CellBridgeException with the server's message if it refuses the request
     */
    public String submit(String requestJson) {
        return text(call("submit()", s -> s.submit(requestJson)));
    }

    /**
     * The run signature the server gives a run (model, its version and weights, task and the options that change
     * the objects), to tell whether an image was already done with the same model and parameters.
     * @param settings the run
     * @param modelTask the model's own task, used when the settings name none (may be null)
     * @return 16 hex digits
     * @throws CellBridgeException with the server's message if it refuses the run (unknown model, wrong task, ...)
     */
    public String signature(RunSettings settings, String modelTask) {
        String request = settings.runRequestJson(modelTask);
        return text(call("signature()", s -> s.signature(request)));
    }

    /**
     * Add or replace one image's row in a counts table (the server writes it: docs/protocol.md, "The counts
     * table").
     * @param csv the counts table (created with its folder when missing)
     * @param row the image's row
     * @throws CellBridgeException if the file is not a counts table or cannot be written
     */
    public void putCountsRow(Path csv, CountsRow row) {
        String path = csv.toAbsolutePath().toString();
        String json = row.toJson();
        call("putCountsRow()", s -> s.putCountsRow(path, json));
    }

    /**
     * @param jobId a job id from {@link #submit}
     * @return its status
     */
    public JobStatus status(String jobId) {
        return JobStatus.fromJson(call("status(" + jobId + ")", s -> s.status(jobId)), jobId);
    }

    /**
     * Ask a job to stop; its results are discarded.
     * @param jobId a job id
     * @return true when the job was queued or running and is now cancelling
     */
    public boolean cancel(String jobId) {
        JsonElement value = call("cancel(" + jobId + ")", s -> s.cancel(jobId));
        return Json.isBoolean(value) && value.getAsBoolean();
    }

    /**
     * One result chunk as GeoJSON text.
     * @param jobId a job id
     * @param index chunk number from 0
     * @return a FeatureCollection string, or null after the last chunk of a finished job
     */
    public String resultChunk(String jobId, int index) {
        JsonElement value = call("resultChunk(" + jobId + ", " + index + ")", s -> s.resultChunk(jobId, index));
        if (value.isJsonNull())
            return null;
        // the protocol sends a FeatureCollection string; a JSON object is accepted too
        return value.isJsonPrimitive() ? value.getAsString() : value.toString();
    }

    /**
     * Reads one result chunk (a QuPath GeoJSON FeatureCollection) into objects of some kind: {@link DetectedObject}s
     * here, QuPath's own objects inside QuPath.
     *
     * @param <T> the object type
     */
    @FunctionalInterface
    public interface ChunkReader<T> {

        /** Reads the server's chunks into {@link DetectedObject}s (for clients without QuPath). */
        ChunkReader<DetectedObject> DETECTED_OBJECTS = GeoJsonObjects::parse;

        /**
         * @param chunk a FeatureCollection as JSON text
         * @return its objects, in order
         * @throws CellBridgeException naming the feature and the problem when the chunk cannot be read
         */
        List<T> read(String chunk);
    }

    /**
     * One result chunk as objects.
     * @param jobId a job id
     * @param index chunk number from 0
     * @return the chunk's objects, or null after the last chunk of a finished job
     */
    public List<DetectedObject> readChunk(String jobId, int index) {
        return readChunk(jobId, index, ChunkReader.DETECTED_OBJECTS);
    }

    /**
     * One result chunk, read by a reader.
     * @param jobId a job id
     * @param index chunk number from 0
     * @param reader turns the chunk's GeoJSON into objects
     * @param <T> the object type
     * @return the chunk's objects, or null after the last chunk of a finished job
     * @throws CellBridgeException naming the chunk and the job when the reader cannot read it
     */
    public <T> List<T> readChunk(String jobId, int index, ChunkReader<T> reader) {
        String chunk = resultChunk(jobId, index);
        if (chunk == null)
            return null;
        try {
            return reader.read(chunk);
        } catch (CellBridgeException e) {
            throw new CellBridgeException("chunk " + index + " of job " + jobId + ": " + e.getMessage(), e);
        }
    }

    /**
     * Wait for a job, reading its chunks as they become available.
     * @param jobId a job id from {@link #submit}
     * @param listener told the status after every poll (may be null)
     * @param cancelled polled between status calls; when it returns true the job is cancelled (may be null)
     * @return all objects of the job, in chunk order
     * @throws CellBridgeException with the job's message if it fails, or the server's error
     * @throws CancellationException if the job was cancelled (by {@code cancelled}, the server, or an interrupt)
     */
    public List<DetectedObject> collect(String jobId, ProgressListener listener, BooleanSupplier cancelled) {
        return collect(jobId, listener, cancelled, ChunkReader.DETECTED_OBJECTS);
    }

    /**
     * Wait for a job, reading its chunks with a reader as they become available.
     * @param jobId a job id from {@link #submit}
     * @param listener told the status after every poll (may be null)
     * @param cancelled polled between status calls; when it returns true the job is cancelled (may be null)
     * @param reader turns each chunk's GeoJSON into objects
     * @param <T> the object type
     * @return all objects of the job, in chunk order
     * @throws CellBridgeException with the job's message if it fails, the server's error, or the reader's
     * @throws CancellationException if the job was cancelled (by {@code cancelled}, the server, or an interrupt)
     */
    public <T> List<T> collect(String jobId, ProgressListener listener, BooleanSupplier cancelled,
                               ChunkReader<T> reader) {
        Objects.requireNonNull(reader, "reader");
        ProgressListener progress = listener == null ? ProgressListener.NONE : listener;
        BooleanSupplier stop = cancelled == null ? () -> false : cancelled;
        List<T> objects = new ArrayList<>();
        int next = 0;
        while (true) {
            if (stop.getAsBoolean() || Thread.currentThread().isInterrupted())
                throw cancelAndWait(jobId);
            JobStatus status = status(jobId);
            while (next < status.chunks())
                objects.addAll(chunkOrEmpty(jobId, next++, reader));
            progress.onProgress(status);
            switch (status.state()) {
                case DONE -> {
                    // read to the end: the null past the last chunk also releases the results on the server
                    for (List<T> chunk = readChunk(jobId, next, reader); chunk != null;
                         chunk = readChunk(jobId, ++next, reader))
                        objects.addAll(chunk);
                    return objects;
                }
                case FAILED -> throw new CellBridgeException(status.message().isEmpty()
                        ? "job " + jobId + " failed" : status.message());
                case CANCELLED -> throw new CancellationException("job " + jobId + " was cancelled");
                default -> {
                }
            }
            try {
                Thread.sleep(pollInterval.toMillis());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw cancelAndWait(jobId);
            }
        }
    }

    /**
     * Submit a job and {@link #collect} it.
     * @param request the job
     * @param listener told the status after every poll (may be null)
     * @param cancelled polled between status calls (may be null)
     * @return all objects of the job
     */
    public List<DetectedObject> run(JobRequest request, ProgressListener listener, BooleanSupplier cancelled) {
        return collect(submit(request), listener, cancelled);
    }

    /**
     * Submit a job and {@link #collect(String, ProgressListener, BooleanSupplier, ChunkReader) collect} it.
     * @param request the job
     * @param listener told the status after every poll (may be null)
     * @param cancelled polled between status calls (may be null)
     * @param reader turns each chunk's GeoJSON into objects
     * @param <T> the object type
     * @return all objects of the job
     */
    public <T> List<T> run(JobRequest request, ProgressListener listener, BooleanSupplier cancelled,
                           ChunkReader<T> reader) {
        return collect(submit(request), listener, cancelled, reader);
    }

    /** Ask the server to stop (it replies first). */
    public void shutdown() {
        call("shutdown()", CellBridgeService::shutdown);
    }

    private <T> List<T> chunkOrEmpty(String jobId, int index, ChunkReader<T> reader) {
        List<T> chunk = readChunk(jobId, index, reader);
        return chunk == null ? List.of() : chunk;
    }

    /** Cancel, wait (bounded) for the job to stop, and return the exception to throw. */
    private CancellationException cancelAndWait(String jobId) {
        try {
            cancel(jobId);
            long deadline = System.nanoTime() + cancelWait.toNanos();
            while (System.nanoTime() < deadline && !status(jobId).state().isFinal()) {
                if (Thread.currentThread().isInterrupted())
                    break;
                try {
                    Thread.sleep(Math.max(1, pollInterval.toMillis()));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
        } catch (CellBridgeException e) {
            // the job is gone or the server is unreachable: nothing left to stop
        }
        return new CancellationException("job " + jobId + " was cancelled");
    }

    private static String text(JsonElement value) {
        return value.isJsonPrimitive() ? value.getAsString() : value.toString();
    }

    private interface Call {
        String apply(CellBridgeService service);
    }

    private JsonElement call(String name, Call call) {
        String reply;
        try {
            reply = call.apply(service.get());
        } catch (CellBridgeException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new CellBridgeException("the CellBridge server did not answer " + name + ": " + describe(e), e);
        }
        return Json.unwrap(reply, name);
    }

    private static String describe(Throwable e) {
        String message = e.getMessage();
        return message == null || message.isBlank() ? e.getClass().getSimpleName() : message.strip();
    }
}
