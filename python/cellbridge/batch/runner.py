"""Run one model over every image of QuPath projects and over slide files, without QuPath.

    summary = run_batch(["/data/p1/project.qpproj", "/data/p2", "/slides/a.svs"],
                        BatchOptions("nuclei-he", out, RunOptions(device="cpu")))

Layout of `out_dir`:

    out/counts.csv                               one row per image: counts per class (see `counts.py`)
    out/<project>/<entryID>-<image>.geojson       QuPath GeoJSON of the image's objects (File ▸ Import objects)
    out/<project>/<entryID>-<image>.cellbridge.json   what produced it: model, parameters, image file, counts,
                                                      the pixel size used and how it was found ("scale")
    out/slides/<image>.geojson                    the same for slide files given directly

Images run one after the other in this process, or (`BatchOptions.scheduler`) one task per image on Dask
distributed workers, each worker loading the model once (`batch/distributed.py`).

Resumable: an image whose GeoJSON and sidecar exist, made with the same model (name, version, weights) and
parameters from the same image file (size and modification time), is skipped; anything else is run again.
With `write_to_project`, each image's objects also go into its project's own image data through paquo,
replacing those of an earlier write and nothing else (`batch/project_writer.py`).

Every output is written to a temporary file and renamed, so an interrupted batch leaves no half-written file
and simply continues where it stopped. A failing image (missing file, unreadable slide, …) is reported in its
row and the batch goes on. The model is loaded once, and only when some image needs it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cellbridge.batch.counts import CountsRow, SharedCountsTable
from cellbridge.batch.projects import ProjectError, ProjectImage, QuPathProject, read_project
from cellbridge.batch.signature import run_parameters, signature_of
from cellbridge.errors import CellBridgeError
from cellbridge.io.atomic import atomic_write, remove_leftovers
from cellbridge.pipeline.options import RunOptions

log = logging.getLogger(__name__)

CSV_NAME = "counts.csv"
SLIDES_LABEL = "slides"  # the output folder of slide files given directly
SIDECAR_SUFFIX = ".cellbridge.json"
SIDECAR_FORMAT = "cellbridge.batch-output"
SIDECAR_VERSION = 1
_UNSAFE = re.compile(r"[^\w.\-]+")


class BatchCancelled(CellBridgeError):
    """The batch was cancelled between images; everything finished so far is kept (and skipped next time)."""


@dataclass
class BatchOptions:
    """What to run (`run`: the options of every image's run, as the CLI and the bridge build them) and how."""

    model: str
    out_dir: Path
    run: RunOptions = field(default_factory=RunOptions)
    resume: bool = True
    reader: str = "auto"
    progress: bool = True
    csv_name: str = CSV_NAME
    scheduler: str | None = None      # None: in this process; "local": a LocalCluster; else a scheduler address
    workers: int | None = None        # LocalCluster workers (default: one per GPU, else one per 2 cores, ≤ 4)
    threads: int | None = None        # torch threads per image (default: the cores of the host over its workers)
    write_to_project: bool = False    # also put each image's objects into its QuPath project (paquo)


@dataclass
class ImageOutcome:
    """What happened to one image."""

    project: str
    image: str
    image_id: str
    status: str                       # done | skipped | failed
    output: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    error: str = ""
    seconds: float | None = None
    worker: str = ""                  # who ran it: "host:pid"

    @property
    def objects(self) -> int:
        """All objects found."""
        return sum(self.counts.values())


@dataclass
class BatchSummary:
    """The outcome of a batch."""

    outcomes: list[ImageOutcome]
    csv: Path
    signature: str
    parameters: dict[str, Any]

    def count(self, status: str) -> int:
        """How many images ended with `status`."""
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failures(self) -> list[ImageOutcome]:
        """The failed images."""
        return [o for o in self.outcomes if o.status == "failed"]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"images": len(self.outcomes), "done": self.count("done"), "skipped": self.count("skipped"),
                "failed": self.count("failed"), "objects": sum(o.objects for o in self.outcomes),
                "csv": str(self.csv), "signature": self.signature,
                "failures": [{"project": o.project, "image": o.image, "image_id": o.image_id, "error": o.error}
                             for o in self.failures]}


@dataclass(frozen=True)
class ImageTask:
    """One image to run: its output label (the project's folder name), output folder and entry."""

    label: str
    folder: Path
    image: ProjectImage


def run_batch(inputs: Sequence[str | os.PathLike[str]], options: BatchOptions,
              cancelled: Callable[[], bool] = lambda: False) -> BatchSummary:
    """Run `options.model` over every image of `inputs` (QuPath projects or slide files); see the module
    docstring for outputs and resume."""
    from cellbridge.models.package import read_spec, resolve_model_dir

    if not inputs:
        raise CellBridgeError("no QuPath projects or slides given")
    if options.workers is not None and options.scheduler != "local":
        raise CellBridgeError("--workers sets the size of --scheduler local; a cluster's size is its own")
    out_dir = Path(options.out_dir)
    model_dir = resolve_model_dir(options.model)
    spec = read_spec(model_dir)
    if options.run.cell_expansion > 0 and spec.task != "nuclei":
        raise CellBridgeError(f"model {options.model!r} is a {spec.task} model; cell expansion needs a nuclei model")
    parameters = run_parameters(options.model, options.run, spec, model_dir)
    signature = signature_of(parameters)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / options.csv_name
    table = SharedCountsTable(csv_path)
    table.check()  # a hand-edited or foreign table is refused before any work
    runner = ImageRunner(options, parameters, signature)
    plan = read_inputs(inputs, options.reader)
    writer = _project_writer(options, plan, signature)

    outcomes: dict[int, ImageOutcome] = {}
    to_run: dict[int, ImageTask] = {}
    images: dict[int, ProjectImage] = {}
    keys: list[tuple[str, str]] = []
    for label, project in plan:
        if not isinstance(project, QuPathProject):  # the project itself cannot be read
            outcomes[len(keys)] = ImageOutcome(label, "", "", "failed", error=project)
            keys.append((label, ""))
            continue
        for image in project.images:
            images[len(keys)] = image
            task = ImageTask(label, out_dir / label, image)
            before = runner.before(task)
            if before is None:
                to_run[len(keys)] = task
            else:
                outcomes[len(keys)] = before
            keys.append((label, image.entry_id or image.name))
    _check_unique_outputs(to_run.values())

    bar = tqdm(total=len(keys), desc="images", unit="image", disable=not options.progress)

    def record(index: int, outcome: ImageOutcome) -> None:
        if writer is not None and outcome.status != "failed" and outcome.output is not None:
            _write_into_project(writer, images[index], outcome)
        outcomes[index] = outcome
        table.put([_row(outcome, options.model, signature)])  # after every image: an interrupted batch keeps it
        bar.set_postfix_str(f"{outcome.project}: {outcome.image}", refresh=False)
        bar.update()

    with logging_redirect_tqdm():   # a log line (a scale estimate) above the bar, not glued to it
        try:
            for index in sorted(outcomes):  # skipped images: their project data may still lack this run's objects
                if writer is not None and outcomes[index].status == "skipped" and outcomes[index].output is not None:
                    _write_into_project(writer, images[index], outcomes[index])
            table.put([_row(outcomes[i], options.model, signature) for i in sorted(outcomes)])
            bar.update(len(outcomes))
            if options.scheduler:
                from cellbridge.batch.distributed import run_on_dask

                results = run_on_dask(runner, to_run, cancelled)
            else:
                results = _run_here(runner, to_run, cancelled)
            for index, outcome in results:
                record(index, outcome)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            table.arrange(keys)
    return BatchSummary([outcomes[i] for i in range(len(keys))], csv_path, signature, parameters)


def _project_writer(options: BatchOptions, plan: list[tuple[str, QuPathProject | str]], signature: str) -> Any:
    """The writer of `--write-to-project` (None without it); every input must then be a QuPath project."""
    if not options.write_to_project:
        return None
    for _, project in plan:
        if isinstance(project, QuPathProject) and project.reader == "files":
            names = ", ".join(image.name for image in project.images)
            raise CellBridgeError(f"--write-to-project writes into QuPath projects; {names} "
                                  f"{'is a slide file' if len(project.images) == 1 else 'are slide files'}, "
                                  "not a project")
    from cellbridge.batch.project_writer import ProjectWriter

    return ProjectWriter(signature, options.model)


def _write_into_project(writer: Any, image: ProjectImage, outcome: ImageOutcome) -> None:
    """Put an image's objects into its project entry; a failure fails the image (its GeoJSON stays)."""
    try:
        result = writer.write(image, outcome.output)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as error:  # paquo/JPype raise many kinds: report it in the image's row
        log.debug("%s: writing into the project failed", image.name, exc_info=True)
        outcome.status, outcome.error = "failed", f"cannot write into the project: {_describe(error)}"
        return
    if result.written:
        log.info("%s: %d objects into the project (%d of an earlier run removed)", image.name, result.added,
                 result.removed)


def _run_here(runner: ImageRunner, tasks: dict[int, ImageTask],
              cancelled: Callable[[], bool]) -> Iterator[tuple[int, ImageOutcome]]:
    """Run the tasks one after the other in this process."""
    for done, (index, task) in enumerate(tasks.items()):
        if cancelled():
            raise BatchCancelled(f"batch cancelled after {done} image(s); run it again to go on")
        yield index, runner.run(task)


def output_paths(folder: Path, image: ProjectImage) -> tuple[Path, Path]:
    """The GeoJSON and sidecar of an image: `<entryID>-<safe image name>` in the project's output folder."""
    stem = _output_stem(image.name, image.entry_id)
    return folder / f"{stem}.geojson", folder / f"{stem}{SIDECAR_SUFFIX}"


def _output_stem(name: str, entry_id: str) -> str:
    safe = _UNSAFE.sub("_", Path(name).stem or name).strip("_") or "image"
    return f"{entry_id}-{safe}" if entry_id else safe


def _check_unique_outputs(tasks: Iterable[ImageTask]) -> None:
    """Refuse a batch in which two images would write one output file (checked before any work)."""
    seen: dict[str, ImageTask] = {}
    for task in tasks:
        geojson = str(output_paths(task.folder, task.image)[0]).casefold()  # case-insensitive file systems too
        if geojson in seen:
            other = seen[geojson].image
            raise CellBridgeError(f"{other.path or other.name} and {task.image.path or task.image.name} would both "
                                  f"be written to {output_paths(task.folder, task.image)[0]}")
        seen[geojson] = task


class ImageRunner:
    """Decides whether an image needs running (`before`) and runs it (`run`); loads the pipeline on first use.

    Picklable without its pipeline, so that Dask workers get a copy and each loads the model once."""

    def __init__(self, options: BatchOptions, parameters: dict[str, Any], signature: str) -> None:
        self.options = options
        self.parameters = parameters
        self.signature = signature
        self._pipeline: Any = None
        self.loads = 0                # how many times this runner loaded the model

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pipeline": None, "loads": 0}

    def before(self, task: ImageTask) -> ImageOutcome | None:
        """The outcome of an image that needs no run (it cannot be read, or it is already done), else None."""
        image = task.image
        outcome = ImageOutcome(task.label, image.name, image.entry_id, "failed")
        if image.problem is not None or image.path is None:
            outcome.error = _unreadable(image)
            return outcome
        if not self.options.resume:
            return None
        geojson, sidecar = output_paths(task.folder, image)
        try:
            previous = self._previous(geojson, sidecar, _file_stamp(image.path))
        except OSError as error:
            outcome.error = _describe(error)
            return outcome
        if previous is None:
            return None
        outcome.status, outcome.output = "skipped", geojson
        outcome.counts, outcome.seconds = previous
        return outcome

    def run(self, task: ImageTask) -> ImageOutcome:
        """Run the model over one image and write its GeoJSON and sidecar; failures are reported, not raised."""
        image = task.image
        outcome = ImageOutcome(task.label, image.name, image.entry_id, "failed", worker=worker_name())
        if image.path is None:
            outcome.error = _unreadable(image)
            return outcome
        geojson, sidecar = output_paths(task.folder, image)
        outcome.output = geojson
        try:
            stamp = _file_stamp(image.path)
            started = time.perf_counter()
            counts, scale = self._detect(image.path, geojson)
            outcome.seconds = time.perf_counter() - started
            self._write_sidecar(sidecar, image, stamp, counts, geojson, outcome.seconds, scale)
            outcome.status, outcome.counts = "done", counts
            remove_leftovers(geojson)  # of an earlier attempt killed mid-write (e.g. a lost Dask worker)
            remove_leftovers(sidecar)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as error:  # one bad image must not stop the batch: report it in its row
            log.debug("%s: %s failed", task.label, image.name, exc_info=True)
            outcome.error = _describe(error)
        return outcome

    def _detect(self, path: Path, geojson: Path) -> tuple[dict[str, int], dict[str, Any] | None]:
        from cellbridge.io.slides import open_slide

        pipeline = self._load()
        with open_slide(path) as slide:
            result = pipeline.run(slide, geojson)
        return dict(result.class_counts), None if result.scale is None else result.scale.to_json()

    def _load(self) -> Any:
        if self._pipeline is None:
            from cellbridge.pipeline.run import Pipeline
            from cellbridge.process_settings import apply_process_settings

            apply_process_settings(self.options.threads)  # here or in a Dask worker: the process that runs
            self.loads += 1
            self._pipeline = Pipeline(self.options.model, self.options.run.with_changes(progress=False))
        return self._pipeline

    def _previous(self, geojson: Path, sidecar: Path,
                  stamp: dict[str, int]) -> tuple[dict[str, int], float | None] | None:
        """The counts and seconds of an earlier run with the same signature on the same file, else None."""
        if not geojson.is_file() or not sidecar.is_file():
            return None
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("signature") != self.signature or data.get("imageFile") != stamp:
            return None
        counts = data.get("counts")
        if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
            return None
        seconds = data.get("seconds")
        return {str(k): v for k, v in counts.items()}, float(seconds) if isinstance(seconds, (int, float)) else None

    def _write_sidecar(self, sidecar: Path, image: ProjectImage, stamp: dict[str, int], counts: dict[str, int],
                       geojson: Path, seconds: float, scale: dict[str, Any] | None) -> None:
        data = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "signature": self.signature,
                "parameters": self.parameters, "project": str(image.project), "imageId": image.entry_id,
                "image": image.name, "uri": image.uri, "imageFile": stamp, "geojson": geojson.name,
                "objects": sum(counts.values()), "counts": counts, "scale": scale, "seconds": round(seconds, 2),
                "worker": worker_name(), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with atomic_write(sidecar) as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")


def read_inputs(inputs: Sequence[str | os.PathLike[str]],
                reader: str = "auto") -> list[tuple[str, QuPathProject | str]]:
    """(output label, project or the reason it cannot be read) per project; labels are unique folder names.

    Slide files given directly (anything that is not a folder or a .qpproj file) are gathered, in their order,
    in one project labelled `slides`, whose entry IDs are empty (a repeated file name gets "2", "3", …)."""
    plan: list[tuple[str, QuPathProject | str]] = []
    used: set[str] = set()
    slides: list[ProjectImage] = []
    stems: set[str] = set()
    for given in inputs:
        path = Path(given).expanduser()
        if not path.is_dir() and path.suffix.lower() != ".qpproj":
            slides.append(_slide_entry(path.absolute(), _free_entry_id(path.name, stems)))
            continue
        try:
            project: QuPathProject | str = read_project(path, reader)
            name = project.name  # type: ignore[union-attr]
        except ProjectError as error:
            project, name = str(error), path.parent.name if path.suffix == ".qpproj" else path.name
        plan.append((_unique(name, used), project))
    if slides:
        plan.append((_unique(SLIDES_LABEL, used), QuPathProject(Path(SLIDES_LABEL), SLIDES_LABEL, None, slides,
                                                               "files")))
    return plan


def _free_entry_id(name: str, used: set[str]) -> str:
    """An entry id for a slide file given directly: "" while its output name is free, else "2", "3", … (so
    `x y.tif` and `x_y.tif`, or `w.tif` and `w.tiff`, never share an output file)."""
    entry_id, n = "", 2
    while _output_stem(name, entry_id).casefold() in used or f"\0{entry_id}" in used:
        entry_id, n = str(n), n + 1
    used.add(_output_stem(name, entry_id).casefold())
    if entry_id:
        used.add(f"\0{entry_id}")  # ids key the counts table's rows: each is given once
    return entry_id


def _slide_entry(path: Path, entry_id: str) -> ProjectImage:
    problem = None if path.is_file() else (f"{path} does not exist (expected a slide file, a QuPath project "
                                           "folder or a project.qpproj)")
    return ProjectImage(path, entry_id, path.name, path.as_uri(), path if problem is None else None, problem)


def _unique(name: str, used: set[str]) -> str:
    base = _UNSAFE.sub("_", name).strip("_") or "project"
    label, n = base, 2
    while label in used:
        label, n = f"{base}-{n}", n + 1
    used.add(label)
    return label


def worker_name() -> str:
    """This process, as "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _unreadable(image: ProjectImage) -> str:
    return image.problem or "the entry names no image file"


def _row(outcome: ImageOutcome, model: str, signature: str) -> CountsRow:
    return CountsRow(outcome.project, outcome.image, outcome.image_id, outcome.status, model,
                     signature if outcome.status != "failed" else "", outcome.seconds, outcome.error,
                     dict(outcome.counts))


def _file_stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtimeNs": stat.st_mtime_ns}


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(error, (CellBridgeError, OSError)) and message else \
        f"{type(error).__name__}: {message}" if message else type(error).__name__
