"""`cellbridge sample`: placeholder until it is written."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
