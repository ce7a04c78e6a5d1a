"""Scoring nuclei models on DSB-style labelled folders (the real-data harness), on generated data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cellbridge.errors import DatasetError
from cellbridge.evaluate.nuclei import evaluate_nuclei, read_label_folder, read_nuclei_truth
from cellbridge.objects import PathObject
from cellbridge.synth import SynthConfig, build_scene, render_region
from scene_labels import instance_labels


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dsb")
    for sub in ("images", "labels", "points"):
        (root / sub).mkdir()
    rows = ["name,width,height,n_nuclei,modality"]
    for seed in (31, 32):
        scene = build_scene(SynthConfig(width=320, height=256, tissue_fraction=1.0, seed=seed))
        labels = instance_labels(scene, 320, 256)
        name = f"synthetic{seed}"
        cv2.imwrite(str(root / "images" / f"{name}.png"), cv2.cvtColor(render_region(scene, 0, 0, 320, 256),
                                                                        cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "labels" / f"{name}.png"), labels)
        (root / "points" / f"{name}.json").write_text(json.dumps(scene.centres.tolist()))
        rows.append(f"{name},320,256,{len(scene)},brightfield-color(H&E-like)")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


class TruthPipeline:
    """Stands in for a model: returns the true nuclei (optionally dropping some)."""

    def __init__(self, drop_every: int = 0) -> None:
        self.drop_every = drop_every

    def objects(self, slide, on_plan=None):
        scene = build_scene(SynthConfig(width=320, height=256, tissue_fraction=1.0, seed=int(slide.path.name[-2:])))
        return [PathObject(scene.polygon(i)) for i in range(len(scene))
                if not self.drop_every or i % self.drop_every]


def test_perfect_and_partial_predictions_score_as_computed(folder: Path) -> None:
    images = read_label_folder(folder)
    assert [i.name for i in images] == ["synthetic31", "synthetic32"]
    perfect = evaluate_nuclei(TruthPipeline(), images, progress=False)["overall"]
    assert perfect["f1_iou50"] == 1.0 and perfect["centre_f1_4px"] == 1.0 and perfect["mean_matched_iou"] > 0.99
    half = evaluate_nuclei(TruthPipeline(drop_every=2), images, progress=False)
    total = sum(len(i.centres) for i in images)
    found = sum(len([k for k in range(len(i.centres)) if k % 2]) for i in images)
    assert half["overall"]["recall"] == pytest.approx(found / total)
    assert half["overall"]["precision"] == 1.0
    assert [p["found"] for p in half["per_image"]] == [len([k for k in range(len(i.centres)) if k % 2])
                                                       for i in images]


def test_filters_and_errors(folder: Path, tmp_path: Path) -> None:
    assert len(read_label_folder(folder, only=["synthetic32"])) == 1
    assert len(read_label_folder(folder, modality="h&e")) == 2
    with pytest.raises(DatasetError, match="no image.s. named nope"):
        read_label_folder(folder, only=["nope"])
    with pytest.raises(DatasetError, match="expected images/ and labels/"):
        read_label_folder(tmp_path)


def test_cli_scores_the_shipped_model_on_generated_h_and_e(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    done = subprocess.run([sys.executable, "-m", "cellbridge", "evaluate", "--task", "nuclei", "--model", "nuclei-he",
                           "--data", str(folder), "--json", str(out), "--device", "cpu", "--pixel-size", "0.5"],
                          capture_output=True, text=True, check=True)
    overall = json.loads(done.stdout)
    assert overall["images"] == 2 and overall["f1_iou50"] >= 0.85 and overall["centre_f1_4px"] >= 0.9
    assert len(json.loads(out.read_text())["per_image"]) == 2


def test_glas_scores_of_gland_outputs(tmp_path: Path) -> None:
    """GlaS metrics through the evaluation harness: perfect glands score 1/1/0; a missed gland lowers F1."""
    from cellbridge.synth.glands import GlandConfig, build_glands

    root = tmp_path / "glands"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    scene = build_glands(GlandConfig(width=256, height=256, seed=4, count=6))
    cv2.imwrite(str(root / "images" / "g4.png"), cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "labels" / "g4.png"), scene.instances.astype(np.uint16))

    class Glands:
        def __init__(self, keep: int) -> None:
            self.keep = keep

        def objects(self, slide, on_plan=None):
            return [PathObject(g.outline) for g in scene.glands[:self.keep]]

    images = read_label_folder(root)
    n = len(scene.glands)
    perfect = evaluate_nuclei(Glands(n), images, progress=False, glas=True)["overall"]
    assert perfect["object_f1"] == 1.0 and perfect["object_dice"] > 0.97 and perfect["object_hausdorff"] < 2.0
    missing = evaluate_nuclei(Glands(n - 1), images, progress=False, glas=True)["overall"]
    assert missing["object_f1"] == pytest.approx(2 * (n - 1) / (2 * (n - 1) + 1))
    assert missing["object_hausdorff"] > perfect["object_hausdorff"]


@pytest.fixture(scope="module")
def point_folder(tmp_path_factory) -> Path:
    """Generated H&E tiles named by seed with EndoNuke-style centre points (no labels/)."""
    root = tmp_path_factory.mktemp("points")
    for sub in ("images", "points"):
        (root / sub).mkdir()
    for seed in (31, 35, 40):
        scene = build_scene(SynthConfig(width=320, height=256, tissue_fraction=1.0, seed=seed))
        cv2.imwrite(str(root / "images" / f"{seed}.png"), cv2.cvtColor(render_region(scene, 0, 0, 320, 256),
                                                                        cv2.COLOR_RGB2BGR))
        points = [{"x": float(x), "y": float(y), "class": "stroma"} for x, y in scene.centres]
        (root / "points" / f"{seed}.json").write_text(json.dumps({"width": 320, "height": 256, "points": points}))
    return root


def test_point_labels_score_centre_f1_only(point_folder: Path) -> None:
    images = read_nuclei_truth(point_folder)
    assert [i.name for i in images] == ["31", "35", "40"] and all(i.labels is None for i in images)
    perfect = evaluate_nuclei(TruthPipeline(), images, progress=False)["overall"]
    assert perfect["centre_f1_8px"] == 1.0 and perfect["centre_f1_4px"] == 1.0
    assert "f1_iou50" not in perfect and perfect["true"] == sum(len(i.centres) for i in images)
    half = evaluate_nuclei(TruthPipeline(drop_every=2), images, progress=False)
    kept = [len(range(1, len(i.centres), 2)) for i in images]
    assert [p["found"] for p in half["per_image"]] == kept
    assert half["overall"]["centre_recall_8px"] == pytest.approx(sum(kept) / perfect["true"])
    assert half["overall"]["centre_precision_8px"] == 1.0
    shifted = evaluate_nuclei(Shifted(6.0), images, progress=False)["overall"]
    assert shifted["centre_f1_8px"] == 1.0 and shifted["centre_f1_4px"] == 0.0  # 6 px off: in 8 px, not in 4 px
    assert [i.name for i in read_nuclei_truth(point_folder, split="test")] == ["35", "40"]
    assert [i.name for i in read_nuclei_truth(point_folder, split="train")] == ["31"]
    with pytest.raises(DatasetError, match="--modality needs a manifest"):
        read_nuclei_truth(point_folder, modality="histology")
    with pytest.raises(DatasetError, match="centre points only"):
        evaluate_nuclei(TruthPipeline(), images, progress=False, glas=True)


class Shifted(TruthPipeline):
    """The true nuclei moved right by `dx` pixels."""

    def __init__(self, dx: float) -> None:
        super().__init__()
        self.dx = dx

    def objects(self, slide, on_plan=None):
        from shapely.affinity import translate

        return [PathObject(translate(o.locating_geometry, xoff=self.dx)) for o in super().objects(slide)]


def test_cli_scores_a_point_folder_split(point_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    done = subprocess.run([sys.executable, "-m", "cellbridge", "evaluate", "--task", "nuclei", "--model", "nuclei-he",
                           "--data", str(point_folder), "--split", "test", "--json", str(out), "--device", "cpu",
                           "--pixel-size", "0.5"], capture_output=True, text=True, check=True)
    overall = json.loads(done.stdout)
    assert overall["images"] == 2 and overall["centre_f1_8px"] >= 0.9 and "f1_iou50" not in overall
    per_image = json.loads(out.read_text())["per_image"]
    assert [p["image"] for p in per_image] == ["35", "40"] and all("centres_4px" in p for p in per_image)
