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
    assert err.strip() == f"cellbridge train: error: {missing}: no such file or directory"


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
