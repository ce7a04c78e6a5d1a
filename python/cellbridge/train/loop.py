"""The one training loop every task uses: epochs, validation, best-model export, checkpoints and resume.

A task supplies the model, data loaders, a loss for one batch and a validation function; the loop owns the
optimizer, the schedule, an optional moving average of the weights, reproducibility (every epoch re-seeds from
`seed + epoch`, so a resumed run takes the same next steps as an uninterrupted one), atomic checkpoints after each
epoch, `metrics.jsonl`, a PNG plot, and the export of the best epoch as a model package into the output folder.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from cellbridge.device import autocast, resolve_device
from cellbridge.errors import CellBridgeError
from cellbridge.io.atomic import atomic_path, atomic_write
from cellbridge.models.package import ModelSpec, save_model
from cellbridge.train.progress import TrainingClock, say, validation_progress

CHECKPOINT = "checkpoints/last.pt"
METRICS_LOG = "metrics.jsonl"
PLOT = "training.png"


@dataclass
class TrainConfig:
    """Optimisation settings (defaults: SGD with a step schedule, as torchvision trains Faster R-CNN)."""

    epochs: int = 10
    batch_size: int = 4
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"            # or "adamw"
    step_size: int = 3                # StepLR period in epochs (0: constant rate)
    gamma: float = 0.1
    schedule: str = "step"            # "step" (StepLR by step_size/gamma) or "cosine" (to 1% of lr at the end)
    seed: int = 0
    device: str = "auto"
    amp: bool = True                  # mixed precision on CUDA
    max_steps_per_epoch: int = 0      # 0: the whole training set each epoch
    ema: float = 0.0                  # decay per step of an exponential moving average of the weights, which is
                                      # what gets validated and exported (0: off, the weights as trained)
    extra: dict[str, Any] = field(default_factory=dict)


class TrainingTask(Protocol):
    """What a task gives the loop."""

    def build_module(self) -> torch.nn.Module: ...

    def train_loader(self) -> Iterable[Any]: ...

    def loss(self, module: torch.nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch (module in train mode) and its named parts for the log."""

    def validate(self, module: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Validation metrics (module in eval mode); must include `score` (higher is better)."""

    def spec(self, metrics: dict[str, float]) -> ModelSpec:
        """model.json for the exported package, with the given validation metrics recorded."""


@dataclass
class TrainResult:
    """What a run ended with."""

    out_dir: Path
    epochs_run: int
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, Any]]
    seconds: float
    device: str


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _optimizer(config: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise CellBridgeError(f"unknown optimizer {config.optimizer!r}; use sgd or adamw")


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1),
                                                          eta_min=config.lr * 0.01)
    if config.schedule != "step":
        raise CellBridgeError(f"unknown learning-rate schedule {config.schedule!r}; use step or cosine")
    if config.step_size > 0:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _moving_average(config: TrainConfig, module: torch.nn.Module) -> AveragedModel | None:
    """The exponential moving average of `module`'s weights and batch-norm statistics (None when `config.ema` is 0)."""
    if not config.ema:
        return None
    if not 0 < config.ema < 1:
        raise CellBridgeError(f"the weight moving-average decay must lie in (0, 1), got {config.ema}")
    return AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)


def fit(task: TrainingTask, config: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
        cancelled: Callable[[], bool] = lambda: False, command: str | None = None) -> TrainResult:
    """Train `task`; export the best epoch as a package in `out_dir`; `resume` continues from the checkpoint."""
    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    module = task.build_module().to(device)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = _optimizer(config, params)
    scheduler = _scheduler(config, optimizer)
    averaged = _moving_average(config, module)
    kept = averaged.module if averaged is not None else module   # the weights validated and exported
    start_epoch, best_score, best_epoch, best_metrics, history = 0, -math.inf, -1, {}, []
    checkpoint_path = out_dir / CHECKPOINT
    if resume:
        if not checkpoint_path.is_file():
            raise CellBridgeError(f"{checkpoint_path}: no checkpoint to resume from")
        state = load_checkpoint(checkpoint_path, device)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ("averaged" in state) != (averaged is not None):
            trained = "with" if "averaged" in state else "without"
            raise CellBridgeError(f"{checkpoint_path}: the run was trained {trained} a moving average of the weights "
                                  f"(--ema); resume it {trained} one")
        if averaged is not None:
            averaged.load_state_dict(state["averaged"])
        start_epoch, best_score = state["epoch"] + 1, state["best_score"]
        best_epoch, best_metrics, history = state["best_epoch"], state["best_metrics"], state["history"]
    elif checkpoint_path.exists():
        raise CellBridgeError(f"{out_dir} already holds a training run; pass --resume to continue it or "
                              "choose another output folder")
    started = time.perf_counter()
    validation_calls: int | None = None   # forward passes of one validation, once known (the bar's total)
    if start_epoch == 0 and getattr(task, "init", None):
        best_score, best_metrics, validation_calls = _validate_starting_model(task, kept, device, config, out_dir,
                                                                              history, command, progress)
        best_epoch = 0
    clock: TrainingClock | None = None
    for epoch in range(start_epoch, config.epochs):
        seed_everything(config.seed * 1000 + epoch)
        module.train()
        sums: dict[str, float] = {}
        steps = 0
        epoch_started = time.perf_counter()
        loader = task.train_loader()
        total = len(loader) if hasattr(loader, "__len__") else None
        if config.max_steps_per_epoch:
            total = min(total, config.max_steps_per_epoch) if total else config.max_steps_per_epoch
        if clock is None and progress:
            clock = TrainingClock(config.epochs, start_epoch, total)
            clock.validation_calls = validation_calls
        bar = tqdm(loader, total=total, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   disable=not progress, leave=False)
        for batch in bar:
            if cancelled():
                raise CellBridgeError("training cancelled; the last finished epoch is in the checkpoint")
            with autocast(device, config.amp):
                loss, parts = task.loss(module, batch, device)
            if not torch.isfinite(loss):
                raise CellBridgeError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                      "lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if averaged is not None:
                averaged.update_parameters(module)
            steps += 1
            for name, value in {"loss": float(loss.item()), **parts}.items():
                sums[name] = sums.get(name, 0.0) + value
            bar.set_postfix(loss=f"{sums['loss'] / steps:.4f}")
            if clock is not None:
                clock.step()
            if config.max_steps_per_epoch and steps >= config.max_steps_per_epoch:
                break
        bar.close()
        scheduler.step()
        validation_started = time.perf_counter()
        metrics, calls = _validate(task, kept, device, clock.validation_calls if clock else None, progress)
        validation_seconds = time.perf_counter() - validation_started
        if clock is not None:
            clock.validation_calls = calls
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                  **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()},
                  **{f"val_{k}": v for k, v in metrics.items()}, "seconds": round(time.perf_counter() - started, 2)}
        history.append(record)
        if metrics["score"] > best_score:
            best_score, best_epoch, best_metrics = metrics["score"], epoch + 1, metrics
            _export(task, kept, metrics, best_epoch, config, device, out_dir, command)
        _append_log(out_dir / METRICS_LOG, record)
        _save_checkpoint(checkpoint_path, module, optimizer, scheduler, epoch, best_score, best_epoch,
                         best_metrics, history, config, averaged)
        _plot(history, out_dir / PLOT)
        if progress:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch", "seconds"))
            say(f"epoch {epoch + 1}: {shown}")
        if clock is not None:
            clock.epoch_done(epoch + 1, time.perf_counter() - epoch_started, validation_seconds)
    if best_epoch == 0 and progress:
        say(f"no epoch beat the starting model on the validation images (score {best_score:.4g}): "
            f"{out_dir} holds the starting model's weights")
    return TrainResult(out_dir, len(history), best_epoch, best_metrics, history,
                       time.perf_counter() - started, str(device))


def _export(task: TrainingTask, module: torch.nn.Module, metrics: dict[str, float], best_epoch: int,
            config: TrainConfig, device: torch.device, out_dir: Path, command: str | None) -> None:
    """Write `module` as the run's model package, with its validation metrics and how it was trained."""
    spec = task.spec(metrics)
    spec.training = {**spec.training, "command": command, "best_epoch": best_epoch,
                     "validation": metrics, "config": asdict(config), "device": str(device)}
    save_model(out_dir, spec, module)


def _validate_starting_model(task: TrainingTask, module: torch.nn.Module, device: torch.device, config: TrainConfig,
                             out_dir: Path, history: list[dict[str, Any]], command: str | None,
                             progress: bool) -> tuple[float, dict[str, float], int | None]:
    """Fine-tuning: score the model it starts from as epoch 0 and export it, so that an epoch is kept only if it
    beats the starting model on the validation images (a few images of a lab's own can make a model worse)."""
    metrics, calls = _validate(task, module, device, None, progress)
    record = {"epoch": 0, **{f"val_{k}": v for k, v in metrics.items()}, "seconds": 0.0}
    history.append(record)
    _export(task, module, metrics, 0, config, device, out_dir, command)
    _append_log(out_dir / METRICS_LOG, record)
    if progress:
        say(f"epoch 0 (the starting model): val_score={metrics['score']:.4g}")
    return metrics["score"], metrics, calls


def _validate(task: TrainingTask, module: torch.nn.Module, device: torch.device, expected_calls: int | None,
              progress: bool) -> tuple[dict[str, float], int | None]:
    """The task's validation metrics (module in eval mode, a bar that counts its forward passes; `expected_calls`:
    the count of an earlier validation) and the count of passes this one took (None when none were counted)."""
    module.eval()
    with torch.no_grad(), validation_progress(module, expected_calls, progress) as calls:
        metrics = {k: float(v) for k, v in task.validate(module, device).items()}
    return metrics, calls[0] or None


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint written by `fit`, loaded without running any pickled code (`weights_only`: tensors, numbers,
    strings and containers only; the optimizer's and schedulers' states are made of those)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()
        raise CellBridgeError(f"{path}: not a checkpoint this program wrote, or it holds code; refused to load it "
                              f"({first[0] if first else 'unpickling refused'})") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CellBridgeError(f"{path}: unreadable checkpoint ({error})") from None
    missing = sorted({"model", "optimizer", "scheduler", "epoch", "best_score", "best_epoch", "best_metrics",
                      "history"} - set(state if isinstance(state, dict) else ()))
    if missing:
        raise CellBridgeError(f"{path}: not a CellBridge training checkpoint (lacks {', '.join(missing)})")
    return state


def _save_checkpoint(path: Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, epoch: int, best_score: float, best_epoch: int,
                     best_metrics: dict[str, float], history: list[dict[str, Any]], config: TrainConfig,
                     averaged: AveragedModel | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": module.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": epoch, "best_score": best_score,
             "best_epoch": best_epoch, "best_metrics": best_metrics, "history": history, "config": asdict(config)}
    if averaged is not None:
        state["averaged"] = averaged.state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _append_log(path: Path, record: dict[str, Any]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    lines = [line for line in lines if json.loads(line)["epoch"] < record["epoch"]]  # a resumed run rewrites
    with atomic_write(path) as handle:
        handle.write("\n".join([*lines, json.dumps(record)]) + "\n")


def _plot(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss and validation metrics per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in [k for k in history[-1] if k.startswith("train_")]:
        left.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key[6:])
    left.set(xlabel="epoch", ylabel="training loss", yscale="log")
    left.legend()
    for key in [k for k in history[-1] if k.startswith("val_")]:
        right.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key[4:])
    right.set(xlabel="epoch", ylabel="validation")
    right.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
