"""`cellbridge models`: list the model packages found by name (built-ins and $CELLBRIDGE_MODEL_PATH)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser("models", help="list the models available by name",
                                   description="List model packages on the search path ($CELLBRIDGE_MODEL_PATH, "
                                               "then the built-in models) as JSON.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the list."""
    from cellbridge.models.package import list_models

    print(json.dumps(list_models(), indent=2))
    return 0
