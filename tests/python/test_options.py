"""One options flow: typed, checked options (CLI, requests, model.json), plausible pixel sizes, bounded plans, and
the scale of every run found and reported the same way (given / file / estimated)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from cellbridge.cli.main import main
from cellbridge.errors import CellBridgeError
from cellbridge.io.slides import ArraySlide, open_slide
from cellbridge.models.package import BUILTIN_DIR
from cellbridge.pipeline.run import Pipeline, RunOptions
from cellbridge.pipeline.scale import estimate_pixel_size
from cellbridge.server.requests import RequestError, parse_request
from cellbridge.synth import SynthConfig, build_scene, render_region


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    """Synthetic H&E at 0.5 µm/px, tissue everywhere."""
    return render_region(build_scene(SynthConfig(width=640, height=640, tissue_fraction=1.0, seed=21)), 0, 0, 640, 640)


@pytest.fixture(scope="module")
def png(tissue: np.ndarray, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("options") / "uncalibrated.png"
    cv2.imwrite(str(path), cv2.cvtColor(tissue, cv2.COLOR_RGB2BGR))
    return path


def request(**changes) -> str:
    data = {"protocol": 1, "task": "nuclei", "model": "classical", "image": {"path": "/x.png"}, "options": {}}
    data.update(changes)
    return json.dumps(data)


# ---- scale found by itself ---------------------------------------------------------------------------------------
def test_estimated_pixel_size_tracks_the_resampling_factor(tissue: np.ndarray) -> None:
    for factor in (0.5, 0.8, 1.25, 2.0):
        resampled = cv2.resize(tissue, None, fx=factor, fy=factor,
                               interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        estimated, note = estimate_pixel_size(resampled)
        expected = 0.5 / factor
        assert estimated is not None, note
        assert abs(estimated / expected - 1) <= 0.2, (factor, estimated, expected)


def test_an_uncalibrated_png_is_run_at_its_estimated_scale_and_says_so(png: Path, tmp_path: Path, capsys) -> None:
    assert main(["nuclei", str(png), "--model", "classical", "--out", str(tmp_path / "a.geojson"),
                 "--device", "cpu"]) == 0
    scale = json.loads(capsys.readouterr().out)["scale"]
    assert scale["source"] == "estimated" and abs(scale["pixelSize"] / 0.5 - 1) <= 0.2
    assert "estimated from nuclei" in scale["note"]
    assert main(["nuclei", str(png), "--model", "classical", "--out", str(tmp_path / "b.geojson"),
                 "--device", "cpu", "--pixel-size", "0.25"]) == 0
    given = json.loads(capsys.readouterr().out)
    assert given["scale"] == {"pixelSize": 0.25, "source": "given", "note": "pixel size given: 0.25 µm/px"}
    assert given["downsample"] == 2.0


def test_batch_and_server_report_the_same_scale(png: Path, tmp_path: Path) -> None:
    import time

    from cellbridge.batch import BatchOptions, run_batch
    from cellbridge.server.service import CellBridgeService

    summary = run_batch([png], BatchOptions("classical", tmp_path, RunOptions(device="cpu"), progress=False))
    sidecar = json.loads(summary.outcomes[0].output.with_name("uncalibrated.cellbridge.json").read_text())
    assert sidecar["scale"]["source"] == "estimated"
    service = CellBridgeService(device="cpu")
    job = json.loads(service.submit(request(image={"path": str(png), "pixelSize": None})))["value"]
    deadline = time.monotonic() + 120
    while (status := json.loads(service.status(job))["value"])["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["state"] == "done" and status["scale"] == sidecar["scale"]


def test_batch_prints_its_estimate_on_a_line_of_its_own_above_the_progress_bar(png: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "python")}
    done = subprocess.run([sys.executable, "-m", "cellbridge", "batch", str(png), "--model", "classical",
                           "--device", "cpu", "--out-dir", str(tmp_path)], capture_output=True, text=True, env=env)

    assert done.returncode == 0, done.stderr
    lines = done.stderr.replace("\r", "\n").splitlines()
    assert any(line.startswith("WARNING cellbridge.pipeline.image_scale: uncalibrated.png: pixel size estimated")
               for line in lines), done.stderr


# ---- implausible pixel sizes never plan runaway work ---------------------------------------------------------------
def test_a_72_dpi_tiff_is_treated_as_uncalibrated(tissue: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "scanned.tif"
    tifffile.imwrite(path, tissue[:512, :512], resolution=(72, 72), resolutionunit="INCH", photometric="rgb")
    with open_slide(path) as slide:
        assert slide.mpp is None and slide.ignored_mpp == pytest.approx(352.78, abs=0.01)
        plan, downsample, scale = Pipeline("classical", RunOptions(device="cpu")).plan(slide)
    assert scale.source == "estimated" and "352.8 µm/px is implausible" in scale.note
    assert len(plan) <= 4 and abs(downsample - 1) < 0.2  # not the 27,233 tiles the DPI would plan


@pytest.mark.parametrize("value", [1e300, 352.8, 0.0001])
def test_an_implausible_pixel_size_is_refused_by_requests_and_the_cli(value: float, png: Path, capsys) -> None:
    with pytest.raises(RequestError, match=r"'image.pixelSize' .* outside the plausible range 0.02–10 µm/px"):
        parse_request(request(image={"path": str(png), "pixelSize": value}))
    with pytest.raises(SystemExit) as exit_:
        main(["nuclei", str(png), "--out", "x.geojson", "--pixel-size", str(value)])
    assert exit_.value.code == 2 and "outside the plausible range" in capsys.readouterr().err


def test_a_runaway_tile_plan_is_refused_at_submit() -> None:
    from cellbridge.server.service import CellBridgeService

    ok, png = cv2.imencode(".png", np.full((64, 64, 3), 255, np.uint8))
    tile = {"x": 0, "y": 0, "width": 64, "height": 64, "png": base64.b64encode(png.tobytes()).decode()}
    reply = json.loads(CellBridgeService(device="cpu").submit(request(
        image={"width": 1_000_000, "height": 1_000_000, "pixelSize": 0.5}, tiles=[tile])))
    assert not reply["ok"] and "tiles of 512 px" in reply["error"] and "at most 250,000" in reply["error"]
    far = dict(tile, x=999_000, y=999_000)
    reply = json.loads(CellBridgeService(device="cpu").submit(request(
        image={"width": 1_000_000, "height": 1_000_000, "pixelSize": 0.5}, tiles=[tile, far],
        region={"x": 0, "y": 0, "width": 1000, "height": 1000})))
    assert not reply["ok"] and "send the tiles of one region per request" in reply["error"]


# ---- typed, checked options ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"pixelsize": 0.5}, "unknown option(s): pixelsize"),
    ({"tissue": "no"}, "option 'tissue' must be true or false, got 'no'"),
    ({"threshold": float("nan")}, "option 'threshold' must be a number within 0–1"),
    ({"tileSize": 10**9}, "option 'tileSize' must be an integer within 64–8192"),
    ({"tileSize": "256"}, "option 'tileSize' must be an integer within 64–8192, got '256'"),
    ({"cellExpansion": -3}, "option 'cellExpansion' must be a number of µm within 0–100"),
])
def test_request_options_are_typed_and_checked(options: dict, message: str) -> None:
    with pytest.raises(RequestError) as error:
        parse_request(json.dumps({"protocol": 1, "task": "nuclei", "model": "classical",
                                  "image": {"path": "/x.png"}, "options": options}, allow_nan=True))
    assert message in str(error.value)


def test_an_unknown_or_mistyped_model_json_postprocessing_option_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "classical-copy"
    shutil.copytree(BUILTIN_DIR / "classical", folder)
    spec = json.loads((folder / "model.json").read_text())
    for key, value, message in (("pixelsize", 0.5, "unknown option(s) pixelsize"),
                                ("min_od", "high", "option 'min_od' must be a finite number")):
        (folder / "model.json").write_text(json.dumps({**spec, "postprocessing": {**spec["postprocessing"],
                                                                                   key: value}}))
        with pytest.raises(CellBridgeError, match="model.json 'postprocessing'") as error:
            Pipeline(folder, RunOptions(device="cpu"))
        assert message in str(error.value)


def test_a_runs_options_leave_the_loaded_model_as_it_was(tissue: np.ndarray) -> None:
    pipeline = Pipeline("classical", RunOptions(device="cpu", tissue=False, pixel_size=0.5))
    before = dict(pipeline.engine.options)
    slide = ArraySlide(tissue)
    default = list(pipeline.objects(slide))
    strict = list(pipeline.objects(slide, options=pipeline.options.with_changes(threshold=0.5, cell_expansion=3.0)))
    assert len(strict) < len(default) and all(o.object_type == "cell" for o in strict)
    assert len(list(pipeline.objects(slide))) == len(default) and pipeline.engine.options == before


@pytest.mark.parametrize("command", [["nuclei", "a.png", "--out", "a.geojson"],
                                     ["detect", "a.png", "--model", "m", "--out", "a.geojson"],
                                     ["segment", "a.png", "--model", "m", "--out", "a.geojson"],
                                     ["batch", "a.png", "--out-dir", "out"],
                                     ["evaluate", "--task", "nuclei", "--model", "m", "--data", "d"]])
def test_every_command_takes_the_same_pixel_size_option(command: list[str], capsys) -> None:
    from cellbridge.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args([*command, "--pixel-size", "estimate"]).pixel_size is None
    assert parser.parse_args([*command, "--pixel-size", "0.25"]).pixel_size == 0.25
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--pixel-size", "1e300"])
    assert "outside the plausible range 0.02–10 µm/px" in capsys.readouterr().err
