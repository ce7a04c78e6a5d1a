"""`cellbridge synth-slide`: placeholder until the generator lands (see cellbridge.synth)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
