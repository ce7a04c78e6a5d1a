"""The run signature: a short fingerprint of everything that changes the objects a run gives an image (the
model's name, version and weights, its task, and the effective result-changing options), not how the run is done
(device, batch size, how the pixels travel). It decides what a batch may skip.

One owner for every caller: `cellbridge batch` (the sidecars and the counts table), `--write-to-project` and the
QuPath extension, which asks the server (`CellBridgeService.signature`) instead of hashing anything itself.

    parameters = run_parameters("nuclei-brightfield", RunOptions(cell_expansion=3.0))
    signature = signature_of(parameters)        # 16 hex digits
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from cellbridge.pipeline.options import RunOptions

DEFAULTS = RunOptions()


def run_parameters(model: str, run: RunOptions, spec: Any = None,
                   model_dir: Path | None = None) -> dict[str, Any]:
    """Everything that changes the objects an image gets: the model's identity and the effective options (the
    model's own tile size and overlap where the run leaves them unset). `spec` and `model_dir` (the model's
    `ModelSpec` and folder) are looked up from `model` when not given.

    Options at their default that were added after the first signatures (test-time augmentation, measurements,
    IHC scoring) are left out, so runs that do not use them keep the signatures they had."""
    if spec is None or model_dir is None:
        from cellbridge.models.package import read_spec, resolve_model_dir

        model_dir = resolve_model_dir(model)
        spec = read_spec(model_dir)
    parameters: dict[str, Any] = {
        "model": model,
        "modelVersion": spec.version,
        "modelWeights": _file_digest(Path(model_dir) / spec.weights),
        "task": spec.task,
        "tileSize": run.tile_size or spec.tile_size,
        "overlap": spec.overlap if run.overlap is None else run.overlap,
        "cellExpansion": float(run.cell_expansion),
        "threshold": run.threshold,
        "tissue": bool(run.tissue),
        "pixelSize": run.pixel_size,  # None: the file's, else estimated (see the sidecar's scale)
    }
    if run.tta != DEFAULTS.tta:
        parameters["tta"] = run.tta
    if run.measure != DEFAULTS.measure:
        parameters["measure"] = run.measure
    if run.stain != DEFAULTS.stain:
        parameters.update(stain=run.stain, stainVectors=run.stains, positivity=list(run.positivity))
    return parameters


def signature_of(parameters: dict[str, Any]) -> str:
    """A short, stable fingerprint of run parameters (sorted keys, compact JSON, SHA-256): 16 hex digits."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _file_digest(path: Path) -> str | None:
    """The first 16 hex digits of a file's SHA-256 (None when it does not exist); read again only when the
    file's size or modification time changed."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
