"""Bad command-line input: every case exits with status 2 and one stderr line naming the problem, no traceback,
and nothing is written over an input or an existing output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest
import tifffile
from cellbridge.cli.main import main
from cellbridge.synth import SynthConfig, build_scene, render_region
from damaged_tiffs import blank_tile

PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's progress lines, not errors


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Small inputs, good and bad, in one folder."""
    d = tmp_path_factory.mktemp("bad-inputs")
    rgb = render_region(build_scene(SynthConfig(width=512, height=512, tissue_fraction=0.9, seed=4)), 0, 0, 512, 512)
    cv2.imwrite(str(d / "good.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    tifffile.imwrite(d / "good.tif", rgb, tile=(256, 256), compression="jpeg", photometric="rgb")
    data = (d / "good.tif").read_bytes()
    (d / "cut.tif").write_bytes(data[:len(data) * 3 // 4])
    blank_tile(d / "good.tif", 1, d / "corrupt.tif")  # tile (column 1, row 0) is no longer JPEG
    (d / "binary.bin").write_bytes(bytes(range(256)) * 40)
    (d / "not-an-image.png").write_text("not an image")
    (d / "a-file").write_text("x")
    (d / "labels.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [90, 10], [90, 90], [10, 10]]]},
        "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}}]}))

    def coco(name: str, files: list[str], bbox: list) -> None:
        (d / name).write_text(json.dumps({
            "images": [{"id": i + 1, "file_name": f, "width": 512, "height": 512} for i, f in enumerate(files)],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": bbox, "area": 400,
                             "iscrowd": 0} for i in range(len(files))],
            "categories": [{"id": 1, "name": "Cell"}]}))

    coco("ok.json", ["good.png"] * 3, [10, 10, 20, 20])
    coco("nan-box.json", ["good.png"], [10, 10, float("nan"), 20])
    coco("negative-box.json", ["good.png"], [10, 10, -20, 20])
    coco("missing-image.json", ["good.png", "good.png", "nope.png"], [10, 10, 20, 20])
    coco("corrupt-image.json", ["good.png", "good.png", "not-an-image.png"], [10, 10, 20, 20])
    return d


NUCLEI = ["nuclei", "--device", "cpu"]
BAD_INPUTS = [
    # corrupt and cut-short slides, in every command that reads pixels
    ("nuclei-corrupt-tile", [*NUCLEI, "corrupt.tif", "--out", "o.geojson"], "tile (column 1, row 0)"),
    ("detect-corrupt-tile", ["detect", "corrupt.tif", "--model", "bccd-frcnn", "--device", "cpu", "--out",
                             "o.geojson"], "tile (column 1, row 0)"),
    ("tiles-corrupt-tile", ["tiles", "corrupt.tif"], "tile (column 1, row 0)"),
    ("tiles-cut-short", ["tiles", "cut.tif"], "cut short"),
    ("nuclei-cut-short", [*NUCLEI, "cut.tif", "--out", "o.geojson"], "cut short"),
    ("export-coco-corrupt-tile", ["export-coco", "corrupt.tif", "labels.geojson", "coco"], "tile (column 1, row 0)"),
    ("segment-with-a-nuclei-model", ["segment", "good.png", "--model", "nuclei-he", "--out", "o.geojson"],
     "nuclei model"),
    # outputs that cannot be written, or would be written over an input
    ("export-coco-into-a-file", ["export-coco", "good.png", "labels.geojson", "a-file"], "a-file: is a file"),
    ("nuclei-out-is-the-input", [*NUCLEI, "good.png", "--out", "good.png"], "is the input"),
    ("nuclei-out-is-a-folder", [*NUCLEI, "good.png", "--out", "."], "is a folder"),
    ("nuclei-overlay-format", [*NUCLEI, "good.png", "--out", "o.geojson", "--overlay", "o.txt"], "overlay"),
    ("convert-onto-itself", ["convert", "ok.json", "ok.json"], "the output is the input"),
    ("train-out-is-a-file", ["train", "--task", "detect", "--data", "ok.json", "--out", "a-file"], "is a file"),
    # bad values
    ("point-box-not-a-number", ["export-coco", "good.png", "labels.geojson", "coco", "--point-box", "RBC=abc"],
     "'abc'"),
    ("threshold-nan", [*NUCLEI, "good.png", "--out", "o.geojson", "--threshold", "nan"], "--threshold"),
    ("tile-zero", [*NUCLEI, "good.png", "--out", "o.geojson", "--tile", "0"], "--tile"),
    ("tiles-tile-zero", ["tiles", "good.png", "--tile", "0"], "--tile"),
    ("cell-expansion-negative", [*NUCLEI, "good.png", "--out", "o.geojson", "--cell-expansion", "-3"],
     "--cell-expansion"),
    ("segment-min-area-negative", ["segment", "good.png", "--model", "x", "--out", "o.geojson", "--min-area", "-1"],
     "--min-area"),
    ("batch-size-zero", [*NUCLEI, "good.png", "--out", "o.geojson", "--batch-size", "0"], "--batch-size"),
    ("downsample-negative", ["export-coco", "good.png", "labels.geojson", "coco", "--downsample", "1,-2"],
     "--downsample"),
    ("train-sigma-too-small", ["train", "--task", "nuclei", "--data", "ok.json", "--out", "m", "--sigma", "0.1"],
     "--sigma"),
    # bad datasets
    ("convert-binary-file", ["convert", "binary.bin", "o.json"], "binary.bin"),
    ("convert-nan-box", ["convert", "nan-box.json", "o.json"], "annotation 0: bbox"),
    ("convert-negative-box", ["convert", "negative-box.json", "o.json"], "annotation 0: bbox"),
    ("train-missing-image", ["train", "--task", "detect", "--data", "missing-image.json", "--out", "m"],
     "nope.png"),
    ("train-corrupt-image", ["train", "--task", "keypoints", "--data", "corrupt-image.json", "--out", "m"],
     "not-an-image.png"),
]


def run_cli(folder: Path, argv: list[str], capsys, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(folder)
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's own exit
        status = stop.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("argv,problem", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_line_with_exit_status_2(files: Path, argv: list[str], problem: str, capsys,
                                                  monkeypatch) -> None:
    before = {p.name: p.read_bytes() for p in files.iterdir() if p.is_file()}
    status, stderr = run_cli(files, argv, capsys, monkeypatch)
    lines = [line for line in stderr.splitlines() if line.strip() and not PROGRESS_BAR.search(line)]
    assert status == 2, stderr
    assert len(lines) == 1 and "error:" in lines[0] and problem in lines[0], stderr
    assert "Traceback" not in stderr
    after = {p.name: p.read_bytes() for p in files.iterdir() if p.is_file()}
    assert after == before  # no input changed, no output written


def test_several_inputs_go_on_past_a_bad_one(files: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    status, stderr = run_cli(files, [*NUCLEI, "corrupt.tif", "good.png", "--out-dir", str(out)], capsys, monkeypatch)
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert status == 2
    assert len(errors) == 2 and "corrupt.tif" in errors[0] and "1 of 2 inputs failed" in errors[1]
    assert sorted(p.name for p in out.iterdir()) == ["good.geojson"]  # the good input still ran


def test_inputs_whose_outputs_would_collide_are_refused_before_any_work(files: Path, tmp_path: Path, capsys,
                                                                       monkeypatch) -> None:
    (tmp_path / "w.tif").write_bytes((files / "good.tif").read_bytes())
    (tmp_path / "w.tiff").write_bytes((files / "good.tif").read_bytes())
    status, stderr = run_cli(tmp_path, [*NUCLEI, "w.tif", "w.tiff", "--out-dir", "out"], capsys, monkeypatch)
    assert status == 2 and "two outputs would be written to one file" in stderr
    assert not (tmp_path / "out").exists()


def test_a_run_failing_on_its_overlay_leaves_the_existing_output_untouched(files: Path, tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    out = tmp_path / "result.geojson"
    out.write_text("earlier result")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the overlay's folder should be")
    status, stderr = run_cli(files, [*NUCLEI, "good.png", "--out", str(out), "--overlay",
                                     str(blocker / "overlay.png")], capsys, monkeypatch)
    assert status == 2 and "blocker" in stderr
    assert out.read_text() == "earlier result"


def test_an_overlay_that_fails_while_saving_leaves_the_existing_output_untouched(files: Path, tmp_path: Path,
                                                                                capsys, monkeypatch) -> None:
    from cellbridge.errors import CellBridgeError
    from cellbridge.pipeline.run import OverlayDrawer

    def no_space(self, path) -> None:
        raise CellBridgeError(f"{path}: no space left on the device")

    monkeypatch.setattr(OverlayDrawer, "save", no_space)
    out = tmp_path / "result.geojson"
    out.write_text("earlier result")
    status, stderr = run_cli(files, [*NUCLEI, "good.png", "--out", str(out), "--overlay", str(tmp_path / "o.png")],
                             capsys, monkeypatch)
    assert status == 2 and "no space left" in stderr
    assert out.read_text() == "earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.geojson"]  # no temporary file left behind
