"""Argument types that refuse values a run cannot use (NaN, zero tiles, negative sizes) at parse time.

Each is an `argparse` `type=`: a bad value becomes argparse's one-line error naming the option and the value.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _checked(value: Number, accepted: bool, requirement: str, text: str) -> Number:
    """`value` when `accepted`, else argparse's error: the `requirement` and the text given."""
    if not accepted:
        raise argparse.ArgumentTypeError(f"{requirement}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (no NaN or infinity)."""
    return _number(text)


def non_negative_float(text: str) -> float:
    """A finite number ≥ 0."""
    value = _number(text)
    return _checked(value, value >= 0, "must be 0 or more", text)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    return _checked(value, value > 0, "must be more than 0", text)


def positive_int(text: str) -> int:
    """A whole number ≥ 1."""
    value = _integer(text)
    return _checked(value, value >= 1, "must be 1 or more", text)


def non_negative_int(text: str) -> int:
    """A whole number ≥ 0."""
    value = _integer(text)
    return _checked(value, value >= 0, "must be 0 or more", text)


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text)
    return _checked(value, 0 <= value <= 1, "must lie between 0 and 1", text)


def in_range(low: float, high: float) -> Callable[[str], float]:
    """A number in [low, high] (e.g. a probability threshold)."""
    def parse(text: str) -> float:
        value = _number(text)
        return _checked(value, low <= value <= high, f"must lie between {low:g} and {high:g}", text)
    parse.__name__ = f"number in [{low:g}, {high:g}]"
    return parse


def source_pixel_size(text: str) -> tuple[str, float]:
    """SOURCE=UM: a data source and the pixel size (µm, more than 0) of its images."""
    source, sep, size = text.rpartition("=")
    if not sep or not source:
        raise argparse.ArgumentTypeError(f"expected SOURCE=MICRONS (e.g. data/points=0.5), got {text!r}")
    value = _number(size)
    return source, _checked(value, 0 < value <= 100, "the pixel size must lie in (0, 100] µm", text)
