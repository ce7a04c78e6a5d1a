"""The bridge service: a job queue running pipelines off the py4j threads, results kept as GeoJSON chunks.

Every public method returns a JSON envelope (`{"ok": true, "value": …}` or `{"ok": false, "error": …}`), so a
bad call never raises into py4j and never stops the server (docs/protocol.md).
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellbridge import __version__
from cellbridge.errors import CellBridgeError
from cellbridge.io.qupath_geojson import objects_to_json
from cellbridge.io.slides import Slide
from cellbridge.objects import PathObject
from cellbridge.server.requests import (PROTOCOL_VERSION, JobRequest, RequestError, parse_request,
                                        parse_run_request)

log = logging.getLogger(__name__)

CHUNK_SIZE = 1000
MAX_CACHED_PIPELINES = 3


@dataclass
class Job:
    """One submitted request and what it has produced so far."""

    id: str
    request: JobRequest
    slide: Slide | None = None       # opened (and checked) at submit; closed when the job ends
    state: str = "queued"            # queued, running, done, failed, cancelled
    progress: float = 0.0
    message: str = "waiting in the queue"
    objects: int = 0
    scale: dict[str, Any] | None = None  # the pixel size used and how it was found, once the job has started
    chunks: list[str] = field(default_factory=list)
    released: str = ""               # why the chunks were dropped (read to the end, cancel, shutdown)
    pending: list[PathObject] = field(default_factory=list)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, obj: PathObject) -> None:
        with self.lock:
            self.pending.append(obj)
            self.objects += 1
            if len(self.pending) >= CHUNK_SIZE:
                self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.chunks.append(objects_to_json(self.pending))
            self.pending = []

    def close(self) -> None:
        """Close the job's slide and drop its pixels (the job will not run, or has run)."""
        if self.slide is not None:
            self.slide.close()
        self.slide = None
        self.request.tiles = []  # the decoded tiles a tile request carried

    def release(self, reason: str) -> None:
        """Drop the results (the caller holds `lock`)."""
        self.chunks, self.pending, self.released = [], [], reason

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {"state": self.state, "progress": round(self.progress, 4), "message": self.message,
                    "objects": self.objects, "chunks": len(self.chunks), "scale": self.scale}


def envelope(method: Callable[..., Any]) -> Callable[..., str]:
    """Wrap a method so it returns an envelope and never raises (errors are logged with their traceback)."""

    @functools.wraps(method)
    def wrapper(self: CellBridgeService, *args: Any) -> str:
        self.touch()
        try:
            return json.dumps({"ok": True, "value": method(self, *args)})
        except CellBridgeError as error:
            return json.dumps({"ok": False, "error": str(error), "type": type(error).__name__})
        except Exception as error:  # a bug must not stop the server: report it to the caller
            log.error("%s failed:\n%s", method.__name__, traceback.format_exc())
            return json.dumps({"ok": False, "error": f"internal error in {method.__name__}: "
                                                     f"{type(error).__name__}: {error}",
                               "type": type(error).__name__})

    return wrapper


class CellBridgeService:
    """Implements the Java interface `qupath.ext.cellbridge.bridge.CellBridgeService` for py4j."""

    class Java:
        implements = ["qupath.ext.cellbridge.bridge.CellBridgeService"]

    def __init__(self, device: str = "auto", on_shutdown: Callable[[], None] | None = None) -> None:
        self.device = device
        self.jobs: dict[str, Job] = {}
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.pipelines: dict[tuple, Any] = {}
        self.last_call = time.monotonic()
        self.on_shutdown = on_shutdown
        self.worker = threading.Thread(target=self._work, name="cellbridge-jobs", daemon=True)
        self.worker.start()

    def touch(self) -> None:
        """Note activity (for the idle timeout)."""
        self.last_call = time.monotonic()

    @property
    def busy(self) -> bool:
        """True while a job is queued or running."""
        return any(j.state in ("queued", "running") for j in self.jobs.values())

    # ---- the interface -------------------------------------------------------------------------------------
    @envelope
    def ping(self) -> str:
        return "pong"

    @envelope
    def version(self) -> dict[str, Any]:
        import torch

        from cellbridge.device import available_devices
        return {"cellbridge": __version__, "protocol": PROTOCOL_VERSION, "python": platform.python_version(),
                "torch": torch.__version__, "devices": available_devices()}

    @envelope
    def listModels(self) -> list[dict[str, Any]]:  # noqa: N802 (Java interface name)
        from cellbridge.models.package import list_models
        return list_models()

    @envelope
    def submit(self, request_json: str) -> str:
        request = parse_request(request_json)
        pipeline = self._pipeline(request)  # load (and cache) the model now: an unknown model fails the submit
        slide = request.open()  # an unreadable slide or a region outside it fails now, with its reason
        try:
            _check_region(request, slide.dimensions)
            _check_size(pipeline, request, slide)
        except BaseException:
            slide.close()
            raise
        job = Job(uuid.uuid4().hex, request, slide)
        self.jobs[job.id] = job
        self.queue.put(job)
        return job.id

    @envelope
    def signature(self, request_json: str) -> str:
        """The run signature of a request (`cellbridge.batch.signature`, as `cellbridge batch` computes it): the
        request as for `submit`, its image optional (only `image.pixelSize` counts); the model is not loaded."""
        from cellbridge.batch.signature import run_parameters, signature_of
        from cellbridge.models.package import read_spec, resolve_model_dir

        run = parse_run_request(request_json)
        model_dir = resolve_model_dir(run.model)
        spec = read_spec(model_dir)
        if run.task != spec.task:
            raise RequestError(f"model {run.model!r} is a {spec.task} model, not a {run.task} model")
        return signature_of(run_parameters(run.model, run.options, spec, model_dir))

    @envelope
    def putCountsRow(self, csv_path: str, row_json: str) -> bool:  # noqa: N802 (Java interface name)
        """Add or replace one image's row in a counts table (`cellbridge.batch.counts`; created when missing),
        under the table's file lock, written whole (temporary file + rename)."""
        from cellbridge.batch.counts import CountsRow, CountsTableError, SharedCountsTable

        if not isinstance(csv_path, str) or not csv_path or "\0" in csv_path:
            raise RequestError(f"the counts table must be a file path, got {csv_path!r}")
        try:
            row = CountsRow.from_json(json.loads(row_json))
        except (TypeError, json.JSONDecodeError) as error:
            raise RequestError(f"the counts row is not valid JSON ({error})") from None
        path = Path(csv_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            SharedCountsTable(path).put([row])
        except OSError as error:
            reason = error.strerror or error
            raise CountsTableError(f"{path}: cannot write the counts table ({reason})") from None
        return True

    @envelope
    def status(self, job_id: str) -> dict[str, Any]:
        return self._job(job_id).status()

    @envelope
    def cancel(self, job_id: str) -> bool:
        job = self._job(job_id)
        if job.state in ("queued", "running"):
            job.cancel_requested.set()
            with job.lock:
                if job.state == "queued":
                    job.state, job.message = "cancelled", "cancelled before it started"
                    job.close()
            return True
        with job.lock:
            job.release("cancelled")
        return False

    @envelope
    def resultChunk(self, job_id: str, index: int) -> str | None:  # noqa: N802 (Java interface name)
        job = self._job(job_id)
        with job.lock:
            if index < 0:
                raise RequestError(f"chunk index must be ≥ 0, got {index}")
            if job.released:
                raise RequestError(f"the results of job {job_id} were released ({job.released})")
            if index < len(job.chunks):
                return job.chunks[index]
            if job.state == "done":
                job.release("read to the end")  # as docs/protocol.md says: results stay until read past the end
                return None
            if job.state in ("failed", "cancelled"):
                raise RequestError(f"job {job_id} {job.state}: {job.message}")
            raise RequestError(f"chunk {index} of job {job_id} is not ready yet")

    @envelope
    def shutdown(self) -> bool:
        for job in self.jobs.values():
            job.cancel_requested.set()
            with job.lock:
                job.release("the server shut down")
        self.queue.put(None)
        if self.on_shutdown is not None:
            threading.Timer(0.2, self.on_shutdown).start()  # reply first, then stop
        return True

    # ---- jobs -----------------------------------------------------------------------------------------------
    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise RequestError(f"unknown job id {job_id!r}")
        return job

    def _pipeline(self, request: JobRequest) -> Any:
        """The loaded model for the request (cached by model, device and batch size; never changed by a job)."""
        from cellbridge.pipeline.run import Pipeline, RunOptions

        device = request.options.device if "device" in request.given else self.device
        key = (request.model, device, request.options.batch_size)
        pipeline = self.pipelines.get(key)
        if pipeline is None:
            pipeline = Pipeline(request.model, RunOptions(device=device, batch_size=request.options.batch_size))
            if len(self.pipelines) >= MAX_CACHED_PIPELINES:
                self.pipelines.pop(next(iter(self.pipelines)))
            self.pipelines[key] = pipeline
        model_task = pipeline.package.spec.task
        if request.task != model_task:
            raise RequestError(f"model {request.model!r} is a {model_task} model, not a {request.task} model")
        pipeline.check(request.options)  # e.g. cell expansion with a model that grows no cells
        return pipeline

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if job.cancel_requested.is_set():
                job.close()
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        from cellbridge.pipeline.run import Cancelled

        with job.lock:
            job.state, job.message = "running", "reading tiles"
        try:
            pipeline = self._pipeline(job.request)
            options = job.request.options
            if job.slide is None:
                job.slide = job.request.open()
            slide = job.slide
            if job.cancel_requested.is_set():  # between the long steps, not only between tiles
                raise Cancelled("run cancelled")

            def progress(done: int, total: int) -> None:
                job.progress = done / max(total, 1)
                job.message = f"{done} of {total} tiles"

            def planned(plan: Any) -> None:
                with job.lock:
                    job.scale = plan.scale.to_json()
                log.info("job %s: %s", job.id, plan.scale.note)

            pipeline.run(slide, None, job.request.region, cancelled=job.cancel_requested.is_set,
                         on_object=job.add, on_progress=progress, options=options, on_plan=planned)
            with job.lock:
                job._flush()
                job.state, job.progress, job.message = "done", 1.0, f"{job.objects} objects"
        except Cancelled:
            with job.lock:
                job.state, job.message = "cancelled", "cancelled"
                job.release("cancelled")
        except CellBridgeError as error:
            with job.lock:
                job.state, job.message = "failed", str(error)
        except Exception as error:  # the job fails; the server goes on
            log.error("job %s crashed:\n%s", job.id, traceback.format_exc())
            with job.lock:
                job.state, job.message = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.close()


def _check_size(pipeline: Any, request: JobRequest, slide: Slide) -> None:
    """Refuse, at submit, a job whose tiles at the model's scale would be runaway work (with the given or the
    file's pixel size, else the model's own; a run checks again with the scale it estimates, before any tile is
    read)."""
    from cellbridge.tiling.plan import check_tile_count

    spec = pipeline.package.spec
    pixel_size = request.options.pixel_size or slide.mpp
    downsample = spec.mpp / pixel_size if spec.mpp and pixel_size else float(spec.downsample)
    tile_size = request.options.tile_size or spec.tile_size
    overlap = min(spec.overlap if request.options.overlap is None else request.options.overlap, tile_size // 2 - 1)
    check_tile_count(*slide.dimensions, tile_size=tile_size, overlap=overlap, downsample=downsample,
                     roi=request.region, what=f"{slide.path.name} at " + (f"{pixel_size:g} µm/px" if pixel_size
                                                                           else "the model's scale"))


def _check_region(request: JobRequest, size: tuple[int, int]) -> None:
    if request.region is None:
        return
    x0, y0, x1, y1 = request.region.bounds
    if x0 >= size[0] or y0 >= size[1] or x1 <= 0 or y1 <= 0:
        raise RequestError(f"the region {tuple(round(v) for v in request.region.bounds)} lies outside the image "
                           f"({size[0]}x{size[1]})")
