"""QuPath's built-in cell detection as a benchmark peer, scored with CellBridge's own nuclei scorer.

Runs QuPath's WatershedCellDetection (H&E: hematoxylin OD) or PositiveCellDetection (IHC: H-DAB) headless, with
the plugin's default parameters in µm for the given pixel size and QuPath's default stain vectors, on every image
of a labelled folder (instance labels: `images/` + `labels/`; centre points: `images/` + `points/`), then scores the
nucleus outlines exactly as `cellbridge evaluate --task nuclei` scores a model (`cellbridge.evaluate.nuclei`:
instance F1 / PQ at IoU 0.5 where there are labels, centre F1 at 4 and 8 px everywhere).

QuPath comes from ../shared/qupath-runtime (QuPath 0.6.0 classes, no GUI, no OpenCV): the Java runner
`benchmarks/qupath_builtin/QuPathCellDetection.java` is compiled at run time against its class path with the
JDK >= 21 that its env.sh finds; nothing of QuPath is part of this repository.

Usage:
  python benchmarks/qupath_builtin.py ../shared/data/tnbc --pixel-size 0.25
  python benchmarks/qupath_builtin.py ../shared/data/dsb2018-stage1-test --modality histology --pixel-size 0.25
  python benchmarks/qupath_builtin.py ../shared/data/endonuke --split test --detector positive --pixel-size 0.5
Options: --out DIR keeps QuPath's GeoJSON per image (default: a temporary folder), --json FILE the full scores.
Prints the overall scores as JSON.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cellbridge.errors import CellBridgeError
from cellbridge.evaluate.nuclei import LabelledImage, read_nuclei_truth, score_image, summarize_scores
from cellbridge.io.atomic import atomic_write
from cellbridge.io.qupath_geojson import read_objects

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "qupath_builtin" / "QuPathCellDetection.java"
RUNTIME = HERE.parent / ".." / "shared" / "qupath-runtime"
DETECTORS = ("watershed", "positive")


class QuPathUnavailable(CellBridgeError):
    """The QuPath runtime or a JDK >= 21 is missing."""


def qupath_environment(runtime: Path = RUNTIME) -> tuple[Path, str]:
    """The JDK home and the class path that the QuPath runtime's env.sh reports."""
    env_sh = runtime / "env.sh"
    if not env_sh.is_file():
        raise QuPathUnavailable(f"{runtime}: no QuPath runtime (env.sh) here")
    done = subprocess.run(["bash", str(env_sh)], capture_output=True, text=True)
    if done.returncode != 0:
        raise QuPathUnavailable(f"{env_sh}: {done.stderr.strip() or f'exit status {done.returncode}'}")
    values = {}
    for line in done.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return Path(values["QUPATH_JAVA_HOME"]), values["QUPATH_RUNTIME_CP"]


@functools.cache
def compiled_runner(java_home: Path, class_path: str) -> Path:
    """The runner compiled (once per process) into a temporary folder removed at exit."""
    classes = Path(tempfile.mkdtemp(prefix="qupath-builtin-classes-"))
    atexit.register(shutil.rmtree, classes, ignore_errors=True)
    done = subprocess.run([str(java_home / "bin" / "javac"), "--release", "21", "-nowarn", "-cp", class_path,
                           "-d", str(classes), str(RUNNER)], capture_output=True, text=True)
    if done.returncode != 0:
        raise QuPathUnavailable(f"{RUNNER.name} does not compile against the QuPath runtime: {done.stderr[-500:]}")
    return classes


def run_qupath(images: Path, names: list[str], out: Path, pixel_size: float, detector: str,
               runtime: Path = RUNTIME) -> dict[str, int]:
    """Run QuPath's detector on the named images of `images` into `out`; return the cells found per image."""
    if detector not in DETECTORS:
        raise CellBridgeError(f"--detector must be one of {', '.join(DETECTORS)}, not {detector!r}")
    java_home, class_path = qupath_environment(runtime)
    classes = compiled_runner(java_home, class_path)
    with tempfile.TemporaryDirectory(prefix="qupath-builtin-") as work:
        names_file = Path(work) / "names.txt"
        names_file.write_text("\n".join(names) + "\n")
        done = subprocess.run([str(java_home / "bin" / "java"), "-Djava.awt.headless=true",
                               "-cp", f"{classes}{os.pathsep}{class_path}", "QuPathCellDetection", str(images),
                               str(out), repr(float(pixel_size)), detector, str(names_file)],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise CellBridgeError(f"QuPath {detector} detection failed: {done.stderr.strip().splitlines()[-1:]}")
    counts = {}
    for line in done.stdout.splitlines():
        name, _, count = line.partition("\t")
        counts[name] = int(count)
    return counts


def score_qupath(images: list[LabelledImage], out: Path) -> dict:
    """Score QuPath's nucleus outlines (`out/<name>.geojson`) with the scorer CellBridge's models get."""
    per_image = []
    for image in images:
        found = [obj.locating_geometry for obj in read_objects(out / f"{image.name}.geojson")]
        per_image.append(score_image(image, found))
    return {"overall": summarize_scores(per_image), "per_image": per_image}


def benchmark(data: Path, pixel_size: float, detector: str, out: Path, split: str = "all",
              modality: str | None = None) -> dict:
    """QuPath's detector on a labelled folder, scored; with the settings it ran with."""
    images = read_nuclei_truth(data, modality=modality, split=split)
    run_qupath(data / "images", [image.name for image in images], out, pixel_size, detector)
    result = score_qupath(images, out)
    parameters = json.loads((out / "parameters.json").read_text())
    result["settings"] = {"data": str(data), "split": split, "modality": modality, "pixel_size": pixel_size,
                          "detector": detector, "qupath_parameters": parameters}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder with images/ and labels/ or points/")
    parser.add_argument("--pixel-size", type=float, required=True, help="µm per pixel of the images")
    parser.add_argument("--detector", choices=DETECTORS, default="watershed",
                        help="watershed (H&E, WatershedCellDetection) or positive (IHC, PositiveCellDetection)")
    parser.add_argument("--split", default="all", choices=["all", "test", "train"],
                        help="images by id: test = numeric id mod 5 == 0 (default all)")
    parser.add_argument("--modality", help="only images whose manifest modality contains this text")
    parser.add_argument("--out", type=Path, help="keep QuPath's GeoJSON per image here")
    parser.add_argument("--json", dest="json_out", type=Path, help="write the full scores (per image too) here")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="qupath-builtin-out-") as scratch:
            out = args.out or Path(scratch)
            result = benchmark(args.data, args.pixel_size, args.detector, out, args.split, args.modality)
    except CellBridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json_out:
        with atomic_write(args.json_out) as handle:
            json.dump(result, handle, indent=2)
    print(json.dumps({**result["overall"], **{k: v for k, v in result["settings"].items()
                                              if k != "qupath_parameters"}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
