"""A real QuPath 0.6.0 with the CellBridge extension, for the tests in this folder.

QuPath is compiled from ``../shared/qupath-src`` with its Maven Central libraries by
``qupath-extension/qupath-build/build-qupath.sh`` (cached outside the repository), and the extension jar a user installs
by ``build-extension.sh``; both are reused when their inputs did not change. Without the sources, a JDK >= 21 or
Maven the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
from shapely.geometry import shape

from cellbridge.cli.main import main as cellbridge_main

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "qupath-extension" / "qupath-build"
SKIP_STATUS = 3  # the build scripts' "cannot build here" exit status
PIXEL_SIZE = "0.5"  # µm/px of the synthetic slides: their ImageJ calibration, which QuPath reads and gives the server


@dataclass(frozen=True)
class QuPathApp:
    """QuPath's launcher (``qupath.QuPath``) with the extension jar on its class path."""

    home: Path
    extension_jar: Path
    prefs: Path

    @property
    def java(self) -> Path:
        return Path((self.home / "java-home.txt").read_text().strip()) / "bin" / "java"

    def command(self, *arguments: str, headless: bool = True) -> list[str]:
        """The java command line running QuPath with ``arguments``; QuPath's preferences go to ``prefs``."""
        class_path = self.home.joinpath("classpath.txt").read_text().split()
        return [str(self.java), "--enable-native-access=ALL-UNNAMED", f"-Djava.util.prefs.userRoot={self.prefs}",
                f"-Djava.awt.headless={'true' if headless else 'false'}",
                "-cp", os.pathsep.join([*class_path, str(self.extension_jar)]), "qupath.QuPath", *arguments]

    def environment(self) -> dict[str, str]:
        """This test run's Python (and its ``cellbridge``) for the extension's server."""
        env = dict(os.environ)
        env["CELLBRIDGE_PYTHON"] = sys.executable
        python_path = str(REPO / "python")
        env["PYTHONPATH"] = python_path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def script(self, script: Path, *, project: Path | None = None, image: str | None = None, save: bool = False,
               arguments: list[str] = (), timeout: float = 900) -> subprocess.CompletedProcess:
        """Run ``QuPath script`` (QuPath's own headless command); the completed process, output in ``stdout``."""
        command = ["script"]
        if project is not None:
            command += ["-p", str(project)]
        if image is not None:
            command += ["-i", image]
        if save:
            command.append("-s")
        for argument in arguments:
            command += ["--args", str(argument)]
        command.append(str(script))
        return subprocess.run(self.command(*command), env=self.environment(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)


def _build(script: str) -> Path:
    started = time.monotonic()
    process = subprocess.run([str(BUILD / script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             check=False)
    if process.returncode == SKIP_STATUS:
        pytest.skip(process.stderr.strip().splitlines()[-1])
    if process.returncode != 0:
        raise AssertionError(f"{script} failed:\n{process.stderr[-4000:]}")
    print(f"{script}: {time.monotonic() - started:.1f} s", file=sys.stderr)
    return Path(process.stdout.strip().splitlines()[-1])


def build_qupath(prefs: Path) -> QuPathApp:
    """Build (or reuse) QuPath and the extension jar; skip the calling test when they cannot be built here."""
    if not (REPO.parent / "shared" / "qupath-src").is_dir() and not os.environ.get("QUPATH_SRC"):
        pytest.skip(f"no QuPath sources at {REPO.parent / 'shared' / 'qupath-src'} (set QUPATH_SRC)")
    home = _build("build-qupath.sh")
    jar = _build("build-extension.sh")
    return QuPathApp(home=home, extension_jar=jar, prefs=prefs)


def region_feature(name: str, box: tuple[int, int, int, int]) -> dict:
    """A named rectangle annotation (x0, y0, x1, y1 in level-0 pixels) as a QuPath GeoJSON feature."""
    x0, y0, x1, y1 = box
    return {"type": "Feature", "properties": {"objectType": "annotation", "name": name},
            "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}


def write_geojson(path: Path, features: list[dict]) -> Path:
    """Write a FeatureCollection of ``features``."""
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def synthetic_slide(folder: Path, name: str, seed: int, size: int = 768) -> Path:
    """A synthetic H&E slide as a plain RGB TIFF that QuPath's ImageJ reader and the Python side both read."""
    pyramid = folder / f"{Path(name).stem}-pyramid.tif"
    assert cellbridge_main(["synth-slide", str(pyramid), "--size", f"{size}x{size}", "--tissue-fraction", "0.6",
                            "--seed", str(seed), "--compression", "none"]) == 0
    pixels = tifffile.imread(pyramid, level=0)
    tifffile.imwrite(folder / name, pixels, photometric="rgb", imagej=True, resolution=(2.0, 2.0),
                     metadata={"unit": "um"})
    pyramid.unlink()
    return folder / name


def centroids(features: list[dict]) -> np.ndarray:
    """The centroids of GeoJSON features (of a cell's nucleus), sorted, as an (n, 2) array."""
    points = [shape(f.get("nucleusGeometry") or f["geometry"]).centroid for f in features]
    return np.array(sorted((p.x, p.y) for p in points)).reshape(-1, 2)
