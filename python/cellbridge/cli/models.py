"""`cellbridge models`: list the model packages found by name (built-ins and $CELLBRIDGE_MODEL_PATH)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser("models", help="list the models available by name",
                                   description="List model packages found by name as JSON: the built-in models first "
                                               "(a folder of the same name on $CELLBRIDGE_MODEL_PATH never "
                                               "replaces one), then the folders in $CELLBRIDGE_MODEL_PATH in "
                                               "order.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the list."""
    from cellbridge.models.package import list_models

    print(json.dumps(list_models(), indent=2))
    return 0
