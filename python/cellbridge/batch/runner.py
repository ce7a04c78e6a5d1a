"""Run one model over every image of one or more QuPath projects, without QuPath.

    summary = run_batch(["/data/p1/project.qpproj", "/data/p2"], BatchOptions("nuclei-he", Path("out")))

Layout of `out_dir`:

    out/counts.csv                               one row per image: counts per class (see `counts.py`)
    out/<project>/<entryID>-<image>.geojson       QuPath GeoJSON of the image's objects (File ▸ Import objects)
    out/<project>/<entryID>-<image>.cellbridge.json   what produced it: model, parameters, image file, counts

Resumable: an image whose GeoJSON and sidecar exist, made with the same model (name, version, weights) and
parameters from the same image file (size and modification time), is skipped; anything else is run again.
Every output is written to a temporary file and renamed, so an interrupted batch leaves no half-written file
and simply continues where it stopped. A failing image (missing file, unreadable slide, …) is reported in its
row and the batch goes on. The model is loaded once, and only when some image needs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cellbridge.batch.counts import CountsRow, CountsTable
from cellbridge.batch.projects import ProjectError, ProjectImage, QuPathProject, read_project
from cellbridge.errors import CellBridgeError
from cellbridge.io.atomic import atomic_write

log = logging.getLogger(__name__)

CSV_NAME = "counts.csv"
SIDECAR_SUFFIX = ".cellbridge.json"
SIDECAR_FORMAT = "cellbridge.batch-output"
SIDECAR_VERSION = 1
_UNSAFE = re.compile(r"[^\w.\-]+")


class BatchCancelled(CellBridgeError):
    """The batch was cancelled between images; everything finished so far is kept (and skipped next time)."""


@dataclass
class BatchOptions:
    """What to run and how (None: the model package's own value)."""

    model: str
    out_dir: Path
    device: str = "auto"
    batch_size: int = 4
    tile_size: int | None = None
    overlap: int | None = None
    cell_expansion: float = 0.0
    threshold: float | None = None
    tissue: bool = True
    pixel_size: float | None = None
    resume: bool = True
    reader: str = "auto"
    progress: bool = True
    csv_name: str = CSV_NAME


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


def run_batch(projects: Sequence[str | os.PathLike[str]], options: BatchOptions,
              cancelled: Callable[[], bool] = lambda: False) -> BatchSummary:
    """Run `options.model` over every image of `projects`; see the module docstring for outputs and resume."""
    from cellbridge.models.package import read_spec, resolve_model_dir

    if not projects:
        raise CellBridgeError("no QuPath projects given")
    out_dir = Path(options.out_dir)
    model_dir = resolve_model_dir(options.model)
    spec = read_spec(model_dir)
    if options.cell_expansion > 0 and spec.task != "nuclei":
        raise CellBridgeError(f"model {options.model!r} is a {spec.task} model; cell expansion needs a nuclei model")
    parameters = run_parameters(options, spec, model_dir)
    signature = signature_of(parameters)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / options.csv_name
    table = CountsTable.read(csv_path)
    plan = _read_projects(projects, options.reader)
    runner = _ImageRunner(options, parameters, signature)
    outcomes: list[ImageOutcome] = []

    def record(outcome: ImageOutcome) -> None:
        outcomes.append(outcome)
        table.put(_row(outcome, options.model, signature))
        table.write(csv_path)  # after every image: an interrupted batch keeps its table
        bar.update()

    total = sum(len(p.images) if isinstance(p, QuPathProject) else 1 for _, p in plan)
    bar = tqdm(total=total, desc="images", unit="image", disable=not options.progress)
    try:
        for label, project in plan:
            if not isinstance(project, QuPathProject):  # the project itself cannot be read
                record(ImageOutcome(label, "", "", "failed", error=project))
                continue
            for image in project.images:
                if cancelled():
                    raise BatchCancelled(f"batch cancelled after {len(outcomes)} image(s); run it again to go on")
                bar.set_postfix_str(f"{label}: {image.name}", refresh=False)
                record(runner.run(label, out_dir / label, image))
    finally:
        bar.close()
    table.write(csv_path)
    return BatchSummary(outcomes, csv_path, signature, parameters)


def run_parameters(options: BatchOptions, spec: Any, model_dir: Path) -> dict[str, Any]:
    """Everything that changes the objects an image gets: the model's identity and the effective parameters."""
    return {
        "model": options.model,
        "modelVersion": spec.version,
        "modelWeights": _file_digest(model_dir / spec.weights),
        "task": spec.task,
        "tileSize": options.tile_size or spec.tile_size,
        "overlap": spec.overlap if options.overlap is None else options.overlap,
        "cellExpansion": float(options.cell_expansion),
        "threshold": options.threshold,
        "tissue": bool(options.tissue),
        "pixelSize": options.pixel_size,
    }


def signature_of(parameters: dict[str, Any]) -> str:
    """A short, stable fingerprint of run parameters (sorted keys, compact JSON, SHA-256)."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def output_paths(folder: Path, image: ProjectImage) -> tuple[Path, Path]:
    """The GeoJSON and sidecar of an image: `<entryID>-<safe image name>` in the project's output folder."""
    stem = f"{image.entry_id}-{_UNSAFE.sub('_', Path(image.name).stem or image.name).strip('_') or 'image'}"
    return folder / f"{stem}.geojson", folder / f"{stem}{SIDECAR_SUFFIX}"


class _ImageRunner:
    """Runs or skips one image at a time; loads the pipeline on first use."""

    def __init__(self, options: BatchOptions, parameters: dict[str, Any], signature: str) -> None:
        self.options = options
        self.parameters = parameters
        self.signature = signature
        self._pipeline: Any = None

    def run(self, label: str, folder: Path, image: ProjectImage) -> ImageOutcome:
        outcome = ImageOutcome(label, image.name, image.entry_id, "failed")
        if image.problem is not None or image.path is None:
            outcome.error = image.problem or "the entry names no image file"
            return outcome
        geojson, sidecar = output_paths(folder, image)
        outcome.output = geojson
        try:
            stamp = _file_stamp(image.path)
            previous = self._previous(geojson, sidecar, stamp) if self.options.resume else None
            if previous is not None:
                outcome.status, outcome.counts = "skipped", previous
                return outcome
            started = time.perf_counter()
            counts = self._detect(image.path, geojson)
            outcome.seconds = time.perf_counter() - started
            self._write_sidecar(sidecar, image, stamp, counts, geojson, outcome.seconds)
            outcome.status, outcome.counts = "done", counts
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as error:  # one bad image must not stop the batch: report it in its row
            log.debug("%s: %s failed", label, image.name, exc_info=True)
            outcome.error = _describe(error)
        return outcome

    def _detect(self, path: Path, geojson: Path) -> dict[str, int]:
        from cellbridge.io.slides import open_slide

        pipeline = self._load()
        with open_slide(path, mpp=self.options.pixel_size) as slide:
            result = pipeline.run(slide, geojson)
        return dict(result.class_counts)

    def _load(self) -> Any:
        if self._pipeline is None:
            from cellbridge.pipeline.run import Pipeline, RunOptions

            task = self.parameters["task"]
            engine: dict[str, Any] = {}
            if self.options.threshold is not None:
                engine["score_threshold" if task == "detect" else "peak_threshold"] = self.options.threshold
            self._pipeline = Pipeline(self.options.model, RunOptions(
                device=self.options.device, batch_size=self.options.batch_size, tile_size=self.options.tile_size,
                overlap=self.options.overlap, tissue=self.options.tissue, pixel_size=self.options.pixel_size,
                cell_expansion=self.options.cell_expansion, engine=engine, progress=False))
        return self._pipeline

    def _previous(self, geojson: Path, sidecar: Path, stamp: dict[str, int]) -> dict[str, int] | None:
        """The counts of an earlier run with the same signature on the same file, else None."""
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
        return {str(k): v for k, v in counts.items()}

    def _write_sidecar(self, sidecar: Path, image: ProjectImage, stamp: dict[str, int], counts: dict[str, int],
                       geojson: Path, seconds: float) -> None:
        data = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "signature": self.signature,
                "parameters": self.parameters, "project": str(image.project), "imageId": image.entry_id,
                "image": image.name, "uri": image.uri, "imageFile": stamp, "geojson": geojson.name,
                "objects": sum(counts.values()), "counts": counts, "seconds": round(seconds, 2),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with atomic_write(sidecar) as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")


def _read_projects(projects: Sequence[str | os.PathLike[str]], reader: str) -> list[tuple[str, QuPathProject | str]]:
    """(output label, project or the reason it cannot be read) per project; labels are unique folder names."""
    plan: list[tuple[str, QuPathProject | str]] = []
    used: set[str] = set()
    for given in projects:
        try:
            project: QuPathProject | str = read_project(given, reader)
            name = project.name  # type: ignore[union-attr]
        except ProjectError as error:
            path = Path(given)
            project, name = str(error), path.parent.name if path.suffix == ".qpproj" else path.name
        base = _UNSAFE.sub("_", name).strip("_") or "project"
        label, n = base, 2
        while label in used:
            label, n = f"{base}-{n}", n + 1
        used.add(label)
        plan.append((label, project))
    return plan


def _row(outcome: ImageOutcome, model: str, signature: str) -> CountsRow:
    return CountsRow(outcome.project, outcome.image, outcome.image_id, outcome.status, model,
                     signature if outcome.status != "failed" else "", outcome.seconds, outcome.error,
                     dict(outcome.counts))


def _file_stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtimeNs": stat.st_mtime_ns}


def _file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(error, (CellBridgeError, OSError)) and message else \
        f"{type(error).__name__}: {message}" if message else type(error).__name__
