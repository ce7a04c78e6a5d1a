"""What a new user meets on the command line: options anywhere, errors in words, output that ends cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from cellbridge.cli.main import main
from cellbridge.errors import CellBridgeError


def _image(path: Path, size: int = 256) -> Path:
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return path


def test_debug_works_after_the_command_too(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "nope.tif")
    assert main(["tiles", missing]) == 2
    assert "nope.tif" in capsys.readouterr().err
    with pytest.raises(CellBridgeError, match="nope.tif"):   # --debug: the traceback, wherever the flag stands
        main(["tiles", missing, "--debug"])
    with pytest.raises(CellBridgeError, match="nope.tif"):
        main(["--debug", "tiles", missing])


def test_a_missing_file_is_named_in_words_not_errno(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nosuch.json"
    assert main(["train", "--task", "nuclei", "--data", str(missing), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"cellbridge train: error: {missing}: no such file or folder"


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    image = _image(tmp_path / "plain.png", 2048)
    process = subprocess.Popen([sys.executable, "-m", "cellbridge", "tiles", str(image), "--tile", "64",
                                "--overlap", "0", "--no-tissue", "--list"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.readline()      # like `| head -1`: read a line, then go away
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_he_runs_count_per_region_clip_regions_and_print_one_json(tmp_path: Path, capsys) -> None:
    from cellbridge.io.qupath_geojson import read_objects, write_objects
    from cellbridge.objects import PathObject
    from cellbridge.synth import SynthConfig, build_scene, render_region
    from shapely.geometry import box

    scene = build_scene(SynthConfig(width=512, height=512, tissue_fraction=1.0, seed=4))
    rgb = render_region(scene, 0, 0, 512, 512)
    cv2.imwrite(str(tmp_path / "square.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "half.png"), cv2.cvtColor(rgb[:, :256], cv2.COLOR_RGB2BGR))
    write_objects([PathObject(box(0, 0, 512, 512), "annotation", name="Square")], tmp_path / "regions.geojson")
    table = tmp_path / "counts.csv"
    assert main(["nuclei", str(tmp_path / "square.png"), str(tmp_path / "half.png"), "--out-dir", str(tmp_path),
                 "--model", "classical", "--pixel-size", "0.5", "--device", "cpu", "--annotations",
                 str(tmp_path / "regions.geojson"), "--summary", str(table), "--report", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    summaries = json.loads(captured.out)                     # one document for both inputs
    assert [Path(s["input"]).name for s in summaries] == ["square.png", "half.png"]
    assert "half.png: region Square: clipped to the image (256×512 px): 50% of the region lay outside" in captured.err
    import csv
    rows = {row["Image"]: row for row in csv.DictReader(table.open(encoding="utf-8"))}
    for name, width in (("square", 512), ("half", 256)):
        written = read_objects(tmp_path / f"{name}.geojson")
        nuclei = [o for o in written if o.object_type == "detection"]
        (region,) = [o for o in written if o.object_type == "annotation"]
        assert region.geometry.bounds == (0, 0, width, 512)
        area_mm2 = width * 512 * 0.25 / 1e6
        row = rows[f"{name}.png"]
        assert int(row["Num Detections"]) == len(nuclei) > 10
        assert float(row["Num Detections per mm^2"]) == pytest.approx(len(nuclei) / area_mm2, rel=1e-5)
        assert region.measurements["Num Detections"] == len(nuclei)
        assert (tmp_path / "r" / f"{name}-regions.png").stat().st_size > 5_000
    assert "clipped" in rows["half.png"]["Note"] and rows["square.png"]["Note"] == ""
