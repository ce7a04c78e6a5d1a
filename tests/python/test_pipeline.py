"""The whole pipeline with the shipped `nuclei-he` model on generated slides with known nuclei."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
from cellbridge.evaluate import instance_metrics_polygons, keypoint_f1
from cellbridge.io.qupath_geojson import read_objects
from cellbridge.io.slides import open_slide
from cellbridge.pipeline.run import Cancelled, Pipeline, RunOptions
from cellbridge.synth import SynthConfig, generate_slide
from shapely.geometry import box

SEED = 4242  # the shipped model never saw this slide


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    return generate_slide(folder / "slide.tif", SynthConfig(width=1536, height=1536, tissue_fraction=0.45, seed=SEED),
                          folder / "truth.geojson", tile=256)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline("nuclei-he", RunOptions(device="cpu", batch_size=2))


def centres(objects) -> np.ndarray:
    return np.array([[o.locating_geometry.centroid.x, o.locating_geometry.centroid.y] for o in objects]).reshape(-1, 2)


def run(pipeline: Pipeline, slide_path: Path, tile: int, overlap: int, **kwargs):
    options = pipeline.options.with_changes(tile_size=tile, overlap=overlap)
    with open_slide(slide_path) as slide:
        return list(pipeline.objects(slide, options=options, **kwargs))


def test_finds_the_true_nuclei_with_accurate_outlines(pipeline: Pipeline, synthetic) -> None:
    found = run(pipeline, synthetic.path, 512, 64)
    truth = [synthetic.scene.polygon(i) for i in range(len(synthetic.scene))]
    points = keypoint_f1(centres(found), synthetic.scene.centres, 4.0)
    assert points["recall"] >= 0.9 and points["precision"] >= 0.9, points
    shapes = instance_metrics_polygons([o.geometry for o in found], truth, 0.5)
    assert shapes["mean_matched_iou"] >= 0.7, shapes
    measured = found[0].measurements
    assert measured["Nucleus: Area µm^2"] > 0 and 0 <= measured["Detection probability"] <= 1


def test_no_duplicates_or_cut_nuclei_at_tile_seams(pipeline: Pipeline, synthetic) -> None:
    small = run(pipeline, synthetic.path, 160, 48)     # ~100 tiles: many seams and 4-tile corners
    big = run(pipeline, synthetic.path, 1536, 0)       # one tile: no seams at all
    polygons = [o.geometry for o in small]
    tree = shapely.STRtree(polygons)
    left, right = tree.query(polygons, predicate="intersects")
    pairs = [(a, b) for a, b in zip(left, right) if a < b]
    # neighbours may share a sliver of outline; a duplicate would cover most of the smaller nucleus
    overlaps = [polygons[a].intersection(polygons[b]).area / min(polygons[a].area, polygons[b].area)
                for a, b in pairs]
    assert max(overlaps, default=0.0) < 0.2, "two nuclei overlap: a duplicate across a seam"
    matched = instance_metrics_polygons(polygons, [o.geometry for o in big], 0.5)
    assert matched["f1"] >= 0.98, matched
    assert abs(len(small) - len(big)) <= 0.01 * len(big)
    # no cut nuclei: outlines are as large at seams as anywhere (cut halves would be about half the area)
    areas = np.array([p.area for p in polygons])
    on_seams = np.array([_near_seam(p, 160 - 48) for p in polygons])
    assert on_seams.sum() > 20
    assert np.median(areas[on_seams]) > 0.85 * np.median(areas[~on_seams])


def _near_seam(polygon, step: int) -> bool:
    x0, y0, x1, y1 = polygon.bounds
    return any(np.floor(a / step) != np.floor(b / step) for a, b in ((x0, x1), (y0, y1)))


def test_roi_limits_the_output_and_cancel_writes_nothing(pipeline: Pipeline, synthetic, tmp_path: Path) -> None:
    roi = box(300, 300, 900, 800)
    found = run(pipeline, synthetic.path, 256, 48, roi=roi)
    assert found and all(roi.contains(o.geometry.centroid) for o in found)
    inside = roi.contains(shapely.points(synthetic.scene.centres))
    assert abs(len(found) - inside.sum()) <= 0.1 * inside.sum()
    out = tmp_path / "cancelled.geojson"
    calls = []
    with open_slide(synthetic.path) as slide, pytest.raises(Cancelled):
        pipeline.run(slide, out, cancelled=lambda: calls.append(1) or len(calls) > 2)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cells_expand_without_overlap(synthetic) -> None:
    pipeline = Pipeline("nuclei-he", RunOptions(device="cpu", tile_size=384, overlap=64,
                                                cell_expansion=3.0))
    with open_slide(synthetic.path) as slide:
        cells = list(pipeline.objects(slide, roi=box(200, 200, 900, 900)))
    assert cells and {c.object_type for c in cells} == {"cell"}
    polygons = [c.geometry for c in cells]
    tree = shapely.STRtree(polygons)
    left, right = tree.query(polygons, predicate="intersects")
    shared = [polygons[a].intersection(polygons[b]).area for a, b in zip(left, right) if a < b]
    assert sum(shared) < 0.01 * sum(p.area for p in polygons)  # cells touch but do not overlap
    assert all(c.geometry.buffer(0.01).contains(c.nucleus_geometry) for c in cells)
    assert "Cell: Area µm^2" in cells[0].measurements and "Nucleus: Area µm^2" in cells[0].measurements


def test_worker_processes_post_process_exactly_as_threads(synthetic) -> None:
    def objects(processes: bool, model: str = "nuclei-he") -> list:
        options = RunOptions(device="cpu", tile_size=256, overlap=48, cell_expansion=2.0, batch_size=2,
                             postprocess_processes=processes)
        with open_slide(synthetic.path) as slide:
            return list(Pipeline(model, options).objects(slide, roi=box(0, 0, 1000, 700)))

    for model in ("nuclei-he", "classical"):
        threads, processes = objects(False, model), objects(True, model)
        assert len(threads) > 100 and len(processes) == len(threads), model
        for a, b in zip(sorted(threads, key=lambda o: o.geometry.wkb), sorted(processes, key=lambda o: o.geometry.wkb)):
            assert a.geometry.equals_exact(b.geometry, 0) and a.nucleus_geometry.equals_exact(b.nucleus_geometry, 0)
            assert a.class_name == b.class_name and a.measurements == b.measurements

    from cellbridge.pipeline.postprocess import postprocess_pool

    with postprocess_pool(2, processes=True) as pool:
        assert os.getpid() not in set(pool.map(_pid, range(8)))


def _pid(_: int) -> int:
    return os.getpid()


def test_a_script_without_a_main_guard_runs_with_worker_processes(synthetic, tmp_path: Path) -> None:
    script = tmp_path / "plain.py"  # what a user writes first: no `if __name__ == "__main__":`
    script.write_text(
        "from cellbridge.io.slides import open_slide\n"
        "from cellbridge.pipeline.run import Pipeline, RunOptions\n"
        "from shapely.geometry import box\n"
        "options = RunOptions(device='cpu', tile_size=128, overlap=40, postprocess_processes=True)\n"
        f"with open_slide({str(synthetic.path)!r}) as slide:\n"
        "    print(len(list(Pipeline('classical', options).objects(slide, roi=box(0, 0, 700, 700)))))\n",
        encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 50


def test_an_engine_without_a_picklable_post_processing_refuses_processes(synthetic) -> None:
    from cellbridge.errors import CellBridgeError

    pipeline = Pipeline("bccd-frcnn", RunOptions(device="cpu", postprocess_processes=True))
    with open_slide(synthetic.path) as slide, pytest.raises(CellBridgeError, match="worker processes"):
        list(pipeline.objects(slide, roi=box(0, 0, 300, 300)))


def test_cli_nuclei_writes_geojson_and_overlay_and_fails_cleanly(synthetic, tmp_path: Path) -> None:
    out, overlay = tmp_path / "n.geojson", tmp_path / "n.png"
    done = subprocess.run([sys.executable, "-m", "cellbridge", "nuclei", str(synthetic.path), "--out", str(out),
                           "--overlay", str(overlay), "--device", "cpu", "--roi", str(_roi_file(tmp_path))],
                          capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout)
    assert summary["objects"] == len(read_objects(out)) > 10
    image = cv2.imread(str(overlay))
    assert image.shape[:2] == (1536, 1536)
    for args, message in [(["nuclei", str(tmp_path / "missing.svs"), "--out", str(out)], "missing.svs"),
                          (["nuclei", str(synthetic.path), "--out", str(out), "--model", "nope"], "'nope' not found"),
                          (["nuclei", str(synthetic.path), "--out", str(out), "--device", "cuda:7"], "cuda:7"),
                          (["nuclei", str(synthetic.path), str(synthetic.path), "--out", str(out)], "--out-dir")]:
        bad = subprocess.run([sys.executable, "-m", "cellbridge", *args], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def _roi_file(folder: Path) -> Path:
    from cellbridge.io.qupath_geojson import write_objects
    from cellbridge.objects import PathObject

    path = folder / "roi.geojson"
    write_objects([PathObject(box(100, 100, 700, 600), "annotation")], path)
    return path


def test_a_scale_change_puts_objects_at_the_right_level0_positions() -> None:
    """The same tissue scanned at 0.25 µm/px runs at downsample 2; its objects map back to level 0 exactly."""
    from cellbridge.io.slides import ArraySlide
    from cellbridge.synth import build_scene, render_region

    scene = build_scene(SynthConfig(width=512, height=512, tissue_fraction=1.0, seed=61))
    native = render_region(scene, 0, 0, 512, 512)
    fine = cv2.resize(native, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    pipeline = Pipeline("nuclei-he", RunOptions(device="cpu", tissue=False))
    at_native = list(pipeline.objects(ArraySlide(native, mpp=0.5)))
    at_fine = list(pipeline.objects(ArraySlide(fine, mpp=0.25)))
    assert pipeline.plan(ArraySlide(fine, mpp=0.25))[1] == 2.0
    halved = centres(at_fine) / 2
    points = keypoint_f1(halved, centres(at_native), 1.5)
    assert points["f1"] >= 0.95, points
    truth = keypoint_f1(halved, scene.centres, 4.0)
    assert truth["recall"] >= 0.9 and truth["precision"] >= 0.9, truth
