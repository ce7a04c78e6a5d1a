"""What a training run tells the user while it runs: an estimate of the time left after its first steps and after
each epoch, and a progress bar while it validates.

    clock = TrainingClock(epochs=10, first_epoch=0, steps_per_epoch=52)
    clock.step()                                     # after each training step; prints an estimate once
    with validation_progress(module, clock.validation_calls):   # counts the module's forward passes
        metrics = task.validate(module, device)
    clock.epoch_done(validation_calls=...)           # prints the time left
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

import torch
from tqdm import tqdm

ESTIMATE_AFTER_STEPS = 5   # the first estimate comes after this many steps (the first one is warm-up)


def format_duration(seconds: float) -> str:
    """`3725` → "1 h 2 min"; `95` → "1.6 min"; `12.3` → "12 s"."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min"


def say(message: str) -> None:
    """One line on stderr, above any progress bar (stdout is kept for the result JSON)."""
    tqdm.write(message, file=sys.stderr)


class TrainingClock:
    """Times the steps and epochs of one run and prints how long the rest should take."""

    def __init__(self, epochs: int, first_epoch: int, steps_per_epoch: int | None,
                 report: Callable[[str], None] = say, now: Callable[[], float] = time.perf_counter) -> None:
        self.epochs, self.first_epoch, self.steps_per_epoch = epochs, first_epoch, steps_per_epoch
        self.report, self.now = report, now
        self.started = now()
        self.steps = 0                 # steps of the first epoch run by this process
        self.warm: float | None = None  # when the first step ended (its time includes loading and warm-up)
        self.estimated = False
        self.validation_calls: int | None = None   # forward passes one validation took (its bar's total)

    def step(self) -> None:
        """After a training step of the first epoch run here: print the estimate once, after a few steps."""
        self.steps += 1
        if self.steps == 1:
            self.warm = self.now()
            return
        if self.estimated or self.steps < ESTIMATE_AFTER_STEPS or self.warm is None:
            return
        self.estimated = True
        per_step = (self.now() - self.warm) / (self.steps - 1)
        if not self.steps_per_epoch:
            self.report(f"estimate: {per_step:.1f} s per step (the epoch's length is unknown)")
            return
        epochs_left = self.epochs - self.first_epoch
        total = per_step * (self.steps_per_epoch * epochs_left - self.steps)
        self.report(f"estimate: {per_step:.1f} s per step × {self.steps_per_epoch} steps per epoch → about "
                    f"{format_duration(total)} of training for {epochs_left} epoch(s), plus validation (timed "
                    "after the first epoch); --epochs and --steps-per-epoch shorten it")

    def epoch_done(self, epoch: int, epoch_seconds: float, validation_seconds: float) -> None:
        """After epoch `epoch` (1-based): print what it took and the time left at that pace."""
        self.estimated = True          # a first epoch shorter than the estimate's steps needs none
        left = self.epochs - epoch
        message = f"epoch {epoch} took {format_duration(epoch_seconds)} (validation " \
                  f"{format_duration(validation_seconds)})"
        if left > 0:
            message += f"; about {format_duration(left * epoch_seconds)} left for {left} epoch(s)"
        self.report(message)


@contextlib.contextmanager
def validation_progress(module: torch.nn.Module, total: int | None, enabled: bool = True,
                        desc: str = "validation") -> Iterator[list[int]]:
    """A progress bar that moves with each forward pass of `module` while the block runs (a task's validation
    calls the model once per image or batch); yields a one-element list holding the count of passes so far.
    `total`: the count of an earlier validation, when known."""
    calls = [0]
    bar = tqdm(total=total, desc=desc, unit="pass", disable=not enabled, leave=False)

    def counted(*_: object) -> None:
        calls[0] += 1
        bar.update(1)

    handle = module.register_forward_hook(counted)
    try:
        yield calls
    finally:
        handle.remove()
        bar.refresh()  # the final count is shown even when the passes were quicker than tqdm's redraw interval
        bar.close()
