"""benchmarks/slide_sanity.py: the share of a run's objects whose hematoxylin is below the nuclear range."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from shapely.geometry import Point

from cellbridge.io.qupath_geojson import read_objects, write_objects
from cellbridge.objects import PathObject
from cellbridge.synth import SynthConfig, generate_slide
from benchmark_scripts import load_benchmark


def test_stroma_outlined_as_nuclei_is_counted_below_the_nuclear_range(tmp_path: Path) -> None:
    result = generate_slide(tmp_path / "he.tif", SynthConfig(width=768, height=768, tissue_fraction=1.0, seed=5),
                            tmp_path / "truth.geojson", tile=256)
    nuclei = read_objects(result.truth_path)
    occupied = [n.geometry.buffer(6) for n in nuclei]
    rng = np.random.default_rng(0)
    stroma = []
    while len(stroma) < 40:  # circles of nucleus size on pink stroma, away from every nucleus
        candidate = Point(*rng.uniform(20, 748, 2)).buffer(5)
        if not any(candidate.intersects(o) for o in occupied):
            stroma.append(PathObject(candidate))
            occupied.append(candidate.buffer(2))
    run = tmp_path / "run.geojson"
    write_objects([PathObject(n.geometry) for n in nuclei] + stroma, run)
    numbers = load_benchmark("slide_sanity").sanity(result.path, run, tmp_path / "crop.png", (0, 0, 400, 300))
    assert numbers["objects"] == len(nuclei) + 40
    assert numbers["below_nuclear_range"] == 40, numbers  # every stroma circle, no true nucleus
    crop = cv2.imread(str(tmp_path / "crop.png"))
    assert crop.shape == (300, 400, 3)
    yellow = (crop[..., 0] < 80) & (crop[..., 1] > 180) & (crop[..., 2] > 220)   # BGR of (255, 220, 0)
    green = (crop[..., 0] < 80) & (crop[..., 1] > 150) & (crop[..., 2] < 80)
    assert yellow.sum() > 50 and green.sum() > 200
