"""Training tells the user how long it will take and shows validation; shipped recipes are offered by name."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from cellbridge.cli.train import add_arguments, resolve_options
from cellbridge.datasets.tile_export import export_coco_tiles
from cellbridge.errors import CellBridgeError
from cellbridge.io.slides import ArraySlide
from cellbridge.models.package import BUILTIN_DIR
from cellbridge.synth import SynthConfig, build_scene, render_region, truth_objects
from cellbridge.train.keypoints import nuclei_task
from cellbridge.train.loop import TrainConfig, fit
from cellbridge.train.progress import TrainingClock, format_duration


def parse(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return resolve_options(parser.parse_args(["--data", "d.json", "--out", "out", *words]))


def test_durations_read_as_words() -> None:
    assert [format_duration(s) for s in (12.3, 95, 3725)] == ["12 s", "1.6 min", "1 h 2 min"]


def test_the_estimate_comes_after_a_few_steps_and_counts_every_epoch_left() -> None:
    times = iter([0.0, 30.0, 38.0])     # start; the first step ends after 30 s of start-up; 4 steps later, 8 s on
    said: list[str] = []
    clock = TrainingClock(epochs=10, first_epoch=0, steps_per_epoch=50, report=said.append, now=lambda: next(times))
    for _ in range(4):
        clock.step()
    assert said == []
    clock.step()
    # 2 s per step over the 500 - 5 steps still to go: 990 s
    assert said == ["estimate: 2.0 s per step × 50 steps per epoch → about 16.5 min of training for 10 epoch(s), "
                    "plus validation (timed after the first epoch); --epochs and --steps-per-epoch shorten it"]
    clock.epoch_done(1, epoch_seconds=130.0, validation_seconds=30.0)
    assert said[-1] == "epoch 1 took 2.2 min (validation 30 s); about 19.5 min left for 9 epoch(s)"


def test_a_recipe_gives_the_built_in_models_settings_and_options_override_it() -> None:
    recorded = json.loads((BUILTIN_DIR / "bccd-frcnn" / "model.json").read_text())
    args = parse("--recipe", "bccd-frcnn", "--epochs", "2")
    assert args.task == "detect" and args.architecture == recorded["architecture"] == "fasterrcnn_small"
    assert args.epochs == 2                                     # given here
    config = recorded["training"]["config"]
    assert (args.lr, args.step_size, args.weight_decay, args.batch_size) == \
        (config["lr"], config["step_size"], config["weight_decay"], config["batch_size"]) == (0.02, 28, 1e-4, 4)
    assert args.downsample == recorded["downsample"] == 2.0 and args.params == recorded["params"]
    nuclei = parse("--recipe", "nuclei-he")
    assert nuclei.task == "nuclei" and nuclei.mpp == 0.5
    assert (nuclei.crop, nuclei.steps_per_epoch, nuclei.epochs) == (160, 40, 14)   # from its recorded command
    assert nuclei.schedule == "constant"                     # it was trained at a constant learning rate
    plain = parse("--task", "detect")
    assert (plain.epochs, plain.lr, plain.architecture, plain.downsample) == (10, None, None, 1.0)


def test_the_width_of_the_centre_targets_comes_from_the_option_then_the_recipe() -> None:
    recorded = json.loads((BUILTIN_DIR / "nuclei-brightfield" / "model.json").read_text())["training"]["sigma"]
    assert parse("--recipe", "nuclei-brightfield").sigma == recorded == 2.0
    assert parse("--recipe", "nuclei-brightfield", "--sigma", "1.5").sigma == 1.5
    assert parse("--task", "nuclei").sigma == 2.0


def test_nuclei_training_is_task_nuclei_with_keypoints_as_an_alias() -> None:
    assert parse("--task", "keypoints").task == parse("--task", "nuclei").task == "nuclei"
    with pytest.raises(CellBridgeError, match="does not match recipe 'bccd-frcnn'"):
        parse("--task", "nuclei", "--recipe", "bccd-frcnn")
    with pytest.raises(CellBridgeError, match="--task is required"):
        parse()
    with pytest.raises(CellBridgeError, match="no recipe"):
        parse("--recipe", "classical")


def test_a_run_prints_its_estimate_and_shows_validation(tmp_path: Path, capsys) -> None:
    scene = build_scene(SynthConfig(width=384, height=384, tissue_fraction=1.0, seed=3))
    export_coco_tiles(ArraySlide(render_region(scene, 0, 0, 384, 384), mpp=0.5), list(truth_objects(scene)),
                      tmp_path / "data", tile_size=128, overlap=0)
    task = nuclei_task(tmp_path / "data" / "annotations.json", batch_size=1, crop=48, params={"depth": 1, "width": 4})
    validated = len(task.val_images)
    config = TrainConfig(epochs=2, lr=1e-3, optimizer="adamw", step_size=0, max_steps_per_epoch=6, device="cpu")
    fit(task, config, tmp_path / "m", progress=True)
    err = capsys.readouterr().err
    assert "estimate: " in err and "s per step × 6 steps per epoch" in err and "for 2 epoch(s)" in err
    assert "epoch 1 took" in err and "left for 1 epoch(s)" in err
    # the validation bar counted one forward pass per validation image, and knew the total the second time
    assert "validation: 100%|" in err and f"{validated}/{validated}" in err
