"""The run signature has one owner (`cellbridge.batch.signature`): the server signs a bridge request exactly as
`cellbridge batch` signs the same options, and the signature changes with what changes the objects only."""

from __future__ import annotations

import argparse
import json

import pytest

from cellbridge.batch.signature import run_parameters, signature_of
from cellbridge.cli import batch as batch_cli
from cellbridge.pipeline.options import RunOptions
from cellbridge.server.service import CellBridgeService
from service_replies import error, value

MODEL = "nuclei-he"  # tile size 512, overlap 64 in its model.json


def request(options: dict | None = None, pixel_size: float | None = None, **fields) -> str:
    data = {"protocol": 1, "task": "nuclei", "model": MODEL, "options": options or {}, **fields}
    if pixel_size is not None:
        data["image"] = {"path": "/never/read.tif", "pixelSize": pixel_size}
    return json.dumps(data)


def batch_signature(*flags: str) -> str:
    """The signature `cellbridge batch` gives its images with these flags (its own parser and option table)."""
    parser = argparse.ArgumentParser(prog="cellbridge")
    batch_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["batch", "slide.tif", "--out-dir", "out", "--model", MODEL, *flags])
    return signature_of(run_parameters(args.model, RunOptions.from_args(args)))


def test_the_server_signs_a_request_as_the_batch_signs_the_same_options(service: CellBridgeService) -> None:
    signed = value(service.signature(request({"tileSize": 256, "overlap": 32, "cellExpansion": 2.0,
                                              "threshold": 0.4, "device": "cuda", "batchSize": 8}, 0.5)))
    assert len(signed) == 16 and int(signed, 16) >= 0
    assert signed == batch_signature("--tile", "256", "--overlap", "32", "--cell-expansion", "2",
                                     "--threshold", "0.4", "--pixel-size", "0.5", "--device", "cpu")
    # defaults spelt out or left to the model are the same run
    assert value(service.signature(request())) == batch_signature()
    assert value(service.signature(request({"tileSize": 512, "overlap": 64, "tissue": True, "stain": "he",
                                            "measure": True, "cellExpansion": 0}))) == batch_signature()


@pytest.mark.parametrize("change", [
    {"tileSize": 256}, {"overlap": 16}, {"cellExpansion": 3.0}, {"threshold": 0.3}, {"tissue": False},
    {"measure": False}, {"stain": "ihc-dab"}])
def test_what_changes_the_objects_changes_the_signature(service: CellBridgeService, change: dict) -> None:
    assert value(service.signature(request(change))) != value(service.signature(request()))


def test_ihc_options_and_the_pixel_size_count_and_the_device_does_not(service: CellBridgeService) -> None:
    ihc = value(service.signature(request({"stain": "ihc-dab"})))
    assert value(service.signature(request({"stain": "ihc-dab", "positivity": [0.3]}))) != ihc
    assert value(service.signature(request({"stain": "ihc-dab", "stainVectors": "default"}))) != ihc
    assert value(service.signature(request(pixel_size=0.25))) != value(service.signature(request()))
    plain = value(service.signature(request()))
    assert value(service.signature(request({"device": "cpu", "batchSize": 1}))) == plain


def test_signing_loads_no_model_and_bad_requests_are_one_clear_error(service: CellBridgeService) -> None:
    value(service.signature(request()))
    assert service.pipelines == {}
    assert "no-such-model" in error(service.signature(request(model="no-such-model")))
    assert "is a nuclei model, not a detect model" in error(service.signature(request(task="detect")))
    assert "tileSize" in error(service.signature(request({"tileSize": 10})))
    assert "not valid JSON" in error(service.signature("{"))
    assert value(service.ping()) == "pong"


def test_the_parameters_are_the_models_identity_and_the_effective_options() -> None:
    """The parameters are the model's identity plus the effective options, IHC keys only for IHC runs."""
    plain = run_parameters(MODEL, RunOptions(tile_size=256))
    assert plain["tileSize"] == 256 and plain["overlap"] == 64 and plain["task"] == "nuclei"
    assert plain["modelVersion"] == "0.1.0" and len(plain["modelWeights"]) == 16
    assert not {"stain", "measure", "tta"} & set(plain)
    ihc = run_parameters(MODEL, RunOptions(stain="ihc-dab", positivity=(0.3,)))
    assert (ihc["stain"], ihc["stainVectors"], ihc["positivity"]) == ("ihc-dab", "estimate", [0.3])
