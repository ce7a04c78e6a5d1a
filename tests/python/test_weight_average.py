"""A moving average of the weights (`--ema`) is what training validates, exports and resumes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from cellbridge.cli.train import _config, add_arguments, resolve_options
from cellbridge.datasets.tile_export import export_coco_tiles
from cellbridge.errors import CellBridgeError
from cellbridge.io.slides import ArraySlide
from cellbridge.synth import SynthConfig, build_scene, render_region, truth_objects
from cellbridge.train.keypoints import nuclei_task
from cellbridge.train.loop import CHECKPOINT, TrainConfig, fit, load_checkpoint


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ema-data")
    scene = build_scene(SynthConfig(width=256, height=256, tissue_fraction=1.0, seed=5))
    export_coco_tiles(ArraySlide(render_region(scene, 0, 0, 256, 256), mpp=0.5), list(truth_objects(scene)),
                      folder, tile_size=128, overlap=0)
    return folder / "annotations.json"


def tiny_task(tiles: Path):
    return nuclei_task(tiles, batch_size=1, crop=48, params={"depth": 1, "width": 4})


def config(epochs: int, ema: float) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=1e-2, optimizer="adamw", step_size=0, weight_decay=0.0,
                       max_steps_per_epoch=3, device="cpu", ema=ema)


def floats(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().float() for k, v in state.items() if v.is_floating_point()}


def test_the_exported_weights_are_the_moving_average_of_the_weights_after_each_step(tiles: Path,
                                                                                     tmp_path: Path) -> None:
    task = tiny_task(tiles)
    seen: list[dict[str, torch.Tensor]] = []    # the weights each step starts from
    step_loss = task.loss

    def recording_loss(module, batch, device):
        seen.append(floats(module.state_dict()))
        return step_loss(module, batch, device)

    task.loss = recording_loss
    fit(task, config(1, ema=0.5), tmp_path / "m", progress=False)
    after_steps = [*seen[1:], floats(load_checkpoint(tmp_path / "m" / CHECKPOINT)["model"])]
    assert len(after_steps) == 3
    expected = after_steps[0]            # the first update takes the weights, later ones blend in at 1 - decay
    for weights in after_steps[1:]:
        expected = {k: 0.5 * expected[k] + 0.5 * weights[k] for k in expected}
    exported = floats(torch.load(tmp_path / "m" / "weights.pt", weights_only=True))
    assert exported.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(exported[key], expected[key], rtol=1e-5, atol=1e-6)
    # the average is not the last weights: the export differs from what the optimizer ended with
    assert any(not torch.allclose(exported[k], after_steps[-1][k]) for k in expected)


def test_a_resumed_run_continues_the_average_as_an_uninterrupted_one(tiles: Path, tmp_path: Path) -> None:
    fit(tiny_task(tiles), config(2, ema=0.8), tmp_path / "whole", progress=False)
    fit(tiny_task(tiles), config(1, ema=0.8), tmp_path / "halves", progress=False)
    fit(tiny_task(tiles), config(2, ema=0.8), tmp_path / "halves", resume=True, progress=False)
    whole = load_checkpoint(tmp_path / "whole" / CHECKPOINT)["averaged"]
    halves = load_checkpoint(tmp_path / "halves" / CHECKPOINT)["averaged"]
    assert int(halves["n_averaged"]) == 6
    for key in whole:
        torch.testing.assert_close(halves[key], whole[key])

    # the average and the weights as trained are never mixed up on resuming
    with pytest.raises(CellBridgeError, match=r"trained with a moving .* resume it with one"):
        fit(tiny_task(tiles), config(3, ema=0.0), tmp_path / "halves", resume=True, progress=False)
    fit(tiny_task(tiles), config(1, ema=0.0), tmp_path / "plain", progress=False)
    with pytest.raises(CellBridgeError, match="trained without a moving average of the weights"):
        fit(tiny_task(tiles), config(2, ema=0.8), tmp_path / "plain", resume=True, progress=False)


def test_a_decay_outside_zero_to_one_is_refused_before_training(tiles: Path, tmp_path: Path) -> None:
    with pytest.raises(CellBridgeError, match=r"decay must lie in \(0, 1\), got 1.5"):
        fit(tiny_task(tiles), config(1, ema=1.5), tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()


def test_the_option_reaches_the_loop_and_a_decay_of_one_is_refused_at_parsing(capsys) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    words = ["--task", "nuclei", "--data", "d", "--out", "o"]
    assert _config(resolve_options(parser.parse_args([*words, "--ema", "0.995"]))).ema == 0.995
    assert _config(resolve_options(parser.parse_args(words))).ema == 0.0
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([*words, "--ema", "1"])
    assert exited.value.code == 2 and "--ema" in capsys.readouterr().err
