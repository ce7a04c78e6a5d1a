"""QuPath's built-in cell detection as a benchmark peer (benchmarks/qupath_builtin.py), on generated H&E."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from cellbridge.io.qupath_geojson import read_objects
from cellbridge.synth import SynthConfig, build_scene, render_region
from benchmark_scripts import load_benchmark, script
from scene_labels import instance_labels

SCRIPT = script("qupath_builtin")

benchmark = load_benchmark("qupath_builtin")
try:
    benchmark.qupath_environment()
    UNAVAILABLE = ""
except benchmark.QuPathUnavailable as exc:
    UNAVAILABLE = str(exc)
pytestmark = pytest.mark.skipif(bool(UNAVAILABLE), reason=f"QuPath runtime unavailable: {UNAVAILABLE}")


@pytest.fixture(scope="module")
def he_folder(tmp_path_factory) -> Path:
    """Two generated H&E tiles at 0.5 µm/px with instance labels, ids 10 (test split) and 11 (train split)."""
    root = tmp_path_factory.mktemp("he")
    for sub in ("images", "labels"):
        (root / sub).mkdir()
    for seed in (10, 11):
        scene = build_scene(SynthConfig(width=256, height=256, tissue_fraction=1.0, seed=seed))
        labels = instance_labels(scene, 256, 256)
        rgb = render_region(scene, 0, 0, 256, 256)
        cv2.imwrite(str(root / "images" / f"{seed}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "labels" / f"{seed}.png"), labels)
    return root


@pytest.fixture(scope="module")
def cli_run(he_folder: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The benchmark's command line on the test split of the folder at the true pixel size."""
    out = tmp_path_factory.mktemp("qupath")
    scores = out.parent / "scores.json"
    done = subprocess.run([sys.executable, str(SCRIPT), str(he_folder), "--pixel-size", "0.5", "--split", "test",
                           "--out", str(out), "--json", str(scores)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out, json.loads(scores.read_text())


def test_qupath_detects_generated_nuclei_and_is_scored_by_our_scorer(cli_run: tuple[Path, dict]) -> None:
    out, result = cli_run
    assert [p["image"] for p in result["per_image"]] == ["10"] and sorted(p.name for p in out.iterdir()) == \
        ["10.geojson", "parameters.json"]
    cells = read_objects(out / "10.geojson")
    assert all(c.nucleus_geometry is not None for c in cells)  # QuPath cells with their nucleus outline
    assert result["per_image"][0]["found"] == len(cells)
    overall = result["overall"]
    # QuPath's watershed with its defaults finds most of the generated nuclei at the right scale
    assert overall["centre_f1_8px"] >= 0.8 and overall["f1_iou50"] >= 0.6
    assert result["settings"]["qupath_parameters"]["requestedPixelSizeMicrons"] == 0.5
    assert result["settings"]["qupath_parameters"]["sigmaMicrons"] == 1.5


def test_the_pixel_size_reaches_qupath(he_folder: Path, cli_run: tuple[Path, dict], tmp_path: Path) -> None:
    """At a pixel size 4x too small the nuclei are 16x smaller in µm²: QuPath's 10 µm² minimum area drops them."""
    at_true_size = cli_run[1]["per_image"][0]["found"]
    too_small = benchmark.run_qupath(he_folder / "images", ["10"], tmp_path, 0.125, "watershed")["10"]
    assert at_true_size > 20 and too_small < at_true_size / 3
