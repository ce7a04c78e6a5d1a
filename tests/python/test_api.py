"""The public Python API (`import cellbridge`) end to end on a synthetic image with known nuclei."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cellbridge
import cv2
import numpy as np
import pytest
from cellbridge.evaluate import keypoint_f1
from cellbridge.synth import SynthConfig, build_scene, render_region
from shapely.geometry import box


def centres(objects) -> np.ndarray:
    return np.array([[o.geometry.centroid.x, o.geometry.centroid.y] for o in objects]).reshape(-1, 2)


@pytest.fixture(scope="module")
def scene():
    return build_scene(SynthConfig(width=384, height=384, tissue_fraction=1.0, seed=77))


def test_import_is_cheap_and_every_public_name_resolves() -> None:
    script = ("import sys, cellbridge\n"
              "print(sorted(m for m in sys.modules if m.startswith(('cellbridge', 'torch'))))\n"
              "missing = [n for n in cellbridge.__all__ if getattr(cellbridge, n, None) is None]\n"
              "print(missing, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    loaded, resolved = done.stdout.splitlines()
    assert loaded == "['cellbridge']"               # nothing else, and no torch, until a name is used
    assert resolved == "[] True"                    # every public name resolves (the model code loads torch)
    assert set(cellbridge.__all__) == {"__version__", *cellbridge._PUBLIC}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cellbridge.nope  # noqa: B018


def test_detect_finds_the_true_nuclei_in_an_array_and_a_file(scene, tmp_path: Path) -> None:
    rgb = render_region(scene, 0, 0, 384, 384)
    pipeline = cellbridge.Pipeline("nuclei-he", cellbridge.RunOptions(device="cpu", tissue=False))
    found = cellbridge.detect(rgb, pipeline, pixel_size=0.5)
    score = keypoint_f1(centres(found), scene.centres, 4.0)
    assert score["precision"] >= 0.9 and score["recall"] >= 0.9, score
    assert all(o.object_type == "detection" and "Nucleus: Area µm^2" in o.measurements for o in found)

    image = tmp_path / "tile.png"
    cv2.imwrite(str(image), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    from_file = cellbridge.detect(image, pipeline, pixel_size=0.5)
    assert np.allclose(np.sort(centres(from_file), axis=0), np.sort(centres(found), axis=0))

    left = cellbridge.detect(rgb, pipeline, pixel_size=0.5, roi=box(0, 0, 192, 384))
    assert 0 < len(left) < len(found) and (centres(left)[:, 0] < 192).all()

    out = tmp_path / "nuclei.geojson"
    assert cellbridge.write_geojson(found, out) == len(found)
    again = cellbridge.read_geojson(out)
    assert [o.id for o in again] == [o.id for o in found]
    assert [o.measurements for o in again] == [pytest.approx(o.measurements, nan_ok=True) for o in found]


def test_detect_with_a_model_name_and_an_open_slide(scene) -> None:
    rgb = render_region(scene, 0, 0, 384, 384)
    from cellbridge.io.slides import ArraySlide

    with ArraySlide(rgb, mpp=0.5) as slide:
        found = cellbridge.detect(slide, "classical", options=cellbridge.RunOptions(device="cpu", tissue=False))
    score = keypoint_f1(centres(found), scene.centres, 4.0)
    assert score["f1"] >= 0.7, score
    with pytest.raises(cellbridge.CellBridgeError, match="not found"):
        cellbridge.detect(rgb, "no-such-model")
