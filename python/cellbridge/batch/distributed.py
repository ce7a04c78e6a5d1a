"""Batch images as Dask distributed tasks: one task per image, the model loaded once per worker process.

`scheduler="local"` starts a LocalCluster on this machine: single-threaded worker processes, one per GPU, else
one per two cores (at most four). Any other value is the address of a running scheduler, for a cluster:

    dask scheduler                                  # prints tcp://HOST:8786
    dask worker tcp://HOST:8786 --nthreads 1        # on each machine; one per GPU (CUDA_VISIBLE_DEVICES)
    cellbridge batch /projects/*/ --scheduler tcp://HOST:8786 --out-dir /shared/out

Workers must see the slides and the output folder at the same paths (a shared file system). Each image runs as
one task with the cores of its host shared among the workers there (torch threads). A worker that dies (killed,
out of memory) loses its task to another worker, which runs the image again; an image that kills more workers
than `distributed.scheduler.allowed-failures` allows is reported as failed. Workers write each image's results
atomically (temporary file, then rename), so an image is finished exactly once however often it was started.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from cellbridge.batch.runner import BatchCancelled, ImageOutcome, ImageRunner, ImageTask
from cellbridge.errors import CellBridgeError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5   # how often the driver looks for cancellation while it waits
MAX_LOCAL_WORKERS = 4
CONNECT_TIMEOUT = "20s"  # how long to try reaching a scheduler address

_RUNNERS: dict[str, ImageRunner] = {}  # per worker process: the runner (and its loaded model) per signature


def run_on_dask(runner: ImageRunner, tasks: dict[int, ImageTask],
                cancelled: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, ImageOutcome]]:
    """Submit one task per image to the scheduler of `runner.options`; yield (index, outcome) as each finishes."""
    if not tasks:
        return
    from distributed import wait

    with _client(runner.options) as client:
        if runner.options.progress and client.dashboard_link and _has_dashboard():
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        hosts = workers_per_host(client)
        batch = uuid.uuid4().hex[:8]
        futures = {client.submit(run_task, runner, task, hosts, pure=False,
                                 key=f"cellbridge-{batch}-{index}"): index for index, task in tasks.items()}
        pending = set(futures)
        try:
            while pending:
                if cancelled():
                    raise BatchCancelled(f"batch cancelled with {len(pending)} image(s) left; images already "
                                         "running finish on their workers; run it again to go on")
                with contextlib.suppress(TimeoutError):
                    done, pending = wait(pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
                    for future in done:
                        index = futures[future]
                        yield index, _outcome(future, tasks[index])
        finally:
            client.cancel(list(pending))


def run_task(runner: ImageRunner, task: ImageTask, hosts: dict[str, int]) -> ImageOutcome:
    """On a worker: run one image with this process's runner for the signature (loading its model once)."""
    cached = _RUNNERS.get(runner.signature)
    if cached is None:
        if not runner.options.threads:
            from distributed import get_worker
            from distributed.comm import get_address_host

            from cellbridge.device import available_cores

            share = hosts.get(get_address_host(get_worker().address), 1)
            runner.options = replace(runner.options, threads=max(1, available_cores() // share))
        cached = _RUNNERS[runner.signature] = runner
    return cached.run(task)


def model_loads() -> int:
    """How many times this process loaded a model for batch tasks (for tests: once per worker)."""
    return sum(runner.loads for runner in _RUNNERS.values())


def workers_per_host(client: Any) -> dict[str, int]:
    """How many workers each host runs (they share its cores)."""
    counts: dict[str, int] = {}
    for info in client.scheduler_info(n_workers=-1)["workers"].values():
        counts[info["host"]] = counts.get(info["host"], 0) + 1
    return counts


def default_local_workers() -> int:
    """One worker per GPU, else one per two cores (at most four)."""
    import torch

    from cellbridge.device import available_cores

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, min(MAX_LOCAL_WORKERS, available_cores() // 2))


@contextlib.contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Errors only from Dask's own loggers while the batch runs (its INFO lines about starting schedulers,
    registering workers and closing connections would flood the progress bar), unless debug logging is on."""
    logger = logging.getLogger("distributed")
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def _client(options: Any) -> Iterator[Any]:
    with _quiet_dask_logs(), _connect(options) as client:
        yield client


@contextlib.contextmanager
def _connect(options: Any) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if options.scheduler == "local":
        workers = options.workers or default_local_workers()
        if workers < 1:
            raise CellBridgeError(f"--workers must be at least 1, got {workers}")
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0" if _has_dashboard() else None,
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(options.scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:
        raise CellBridgeError(f"cannot reach the Dask scheduler at {options.scheduler!r}: {error}") from None
    with client:
        if not client.scheduler_info(n_workers=-1)["workers"]:
            client.wait_for_workers(1, timeout=60)
        yield client


def _outcome(future: Any, task: ImageTask) -> ImageOutcome:
    """The task's outcome, or a failed one saying why the task itself failed (e.g. it killed its workers)."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        error = ("the Dask workers running this image died repeatedly (out of memory?); it was not finished")
    except Exception as exc:  # the task never returned: report it on this image, go on with the others
        error = f"{type(exc).__name__}: {exc}"
    return ImageOutcome(task.label, task.image.name, task.image.entry_id, "failed", error=error)


def _has_dashboard() -> bool:
    try:
        import bokeh  # noqa: F401  (the Dask dashboard needs it)
    except ImportError:
        return False
    return True
