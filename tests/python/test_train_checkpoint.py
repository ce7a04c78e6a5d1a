"""Training checkpoints are loaded without running pickled code, and still resume the optimizer and schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cellbridge.errors import CellBridgeError
from cellbridge.train.loop import TrainConfig, _save_checkpoint, load_checkpoint


class RunsCode:
    """Unpickling this calls open(marker, "w"): what a hostile checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_holding_code_is_refused_and_the_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "optimizer": RunsCode(marker), "scheduler": {}, "epoch": 0, "best_score": 0.0,
                "best_epoch": 1, "best_metrics": {}, "history": []}, path)
    with pytest.raises(CellBridgeError, match="refused to load it"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_real_checkpoint_restores_weights_optimizer_and_schedule(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    module(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    scheduler.step()
    path = tmp_path / "checkpoints" / "last.pt"
    _save_checkpoint(path, module, optimizer, scheduler, 0, 0.75, 1, {"score": 0.75}, [{"epoch": 1}], TrainConfig())
    state = load_checkpoint(path)
    again = torch.optim.AdamW(module.parameters(), lr=1e-3)
    again.load_state_dict(state["optimizer"])
    schedule = torch.optim.lr_scheduler.StepLR(again, step_size=1, gamma=0.5)
    schedule.load_state_dict(state["scheduler"])
    assert again.param_groups[0]["lr"] == pytest.approx(5e-4) and schedule.last_epoch == 1
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    assert state["best_score"] == 0.75 and state["history"] == [{"epoch": 1}]


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CellBridgeError, match="not a CellBridge training checkpoint"):
        load_checkpoint(path)
