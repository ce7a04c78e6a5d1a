"""The CellBridge menu inside the real QuPath 0.6.0 window, under Xvfb: Extensions > CellBridge lists its commands, and
"Detect and segment nuclei" fired on a selected annotation of a synthetic slide (its parameter dialog accepted with
the defaults) puts the same nuclei under it as ``cellbridge nuclei`` finds in that region; "Check Python server..."
reports the server's versions and models; the settings are in QuPath's preference pane.

The steps run inside QuPath as its startup script (``gui_check.groovy``). Skipped without Xvfb or GTK 3 (JavaFX's
window toolkit needs both), and when QuPath cannot be built here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import shape

from cellbridge.cli.main import main as cellbridge_main
from qupath_app import PIXEL_SIZE, build_qupath, centroids, region_feature, synthetic_slide, write_geojson

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
REGION = (100, 100, 400, 300)  # x, y, width, height in level-0 pixels
# object import/export and the settings are QuPath's own (File menu, Edit > Preferences), not in this menu
COMMANDS = ["Start Python server", "Stop Python server", "Check Python server...", "Detect cells...",
            "Detect and segment nuclei...", "Detect and score IHC nuclei (DAB)...", "Classify detections...",
            "Export training tiles (COCO) from annotations...", "Train a model from the project's annotations..."]
PREFERENCES = ["Python", "Model folder", "Device", "Tile size", "Tile overlap", "Batch size", "Training epochs"]
GTK_MISSING = "Unable to load glass GTK library"


@pytest.fixture(scope="module")
def gui(tmp_path_factory):
    if shutil.which("xvfb-run") is None:
        pytest.skip("no xvfb-run: the GUI test needs Debian's xvfb (apt-get install -y xvfb xauth)")
    work = tmp_path_factory.mktemp("qupath-gui")
    app = build_qupath(work / "prefs")
    slide = synthetic_slide(work, "slide.tif", 11, size=1024)
    report, screenshot = work / "report.json", work / "qupath-gui.png"
    properties = {"qupath.startup.script": HERE / "gui_check.groovy", "cellbridge.gui.image": slide,
                  "cellbridge.gui.region": ",".join(map(str, REGION)), "cellbridge.gui.report": report,
                  "cellbridge.gui.screenshot": screenshot, "cellbridge.gui.python": app.environment()["CELLBRIDGE_PYTHON"],
                  "cellbridge.gui.timeout": 480, "prism.order": "sw"}
    command = app.command(headless=False)
    java_options = [f"-D{key}={value}" for key, value in properties.items()]
    command[1:1] = java_options
    process = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", *command], env=app.environment(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False)
    if GTK_MISSING in process.stdout:
        pytest.skip(f"JavaFX cannot open a window: '{GTK_MISSING}' (apt-get install -y libgtk-3-0)")
    assert report.exists(), f"QuPath ended (status {process.returncode}) without a report:\n{process.stdout[-6000:]}"
    result = json.loads(report.read_text())
    assert "error" not in result, f"{result}\n{process.stdout[-6000:]}"
    roi = write_geojson(work / "roi.geojson", [region_feature("Region", (REGION[0], REGION[1], REGION[0] + REGION[2],
                                                                            REGION[1] + REGION[3]))])
    out = work / "reference.geojson"
    # the dialog's defaults: the model's tile size and overlap, no cell expansion, device auto
    assert cellbridge_main(["nuclei", str(slide), "--roi", str(roi), "--out", str(out), "--model", "nuclei-brightfield",
                            "--device", "auto", "--pixel-size", PIXEL_SIZE]) == 0
    return {"report": result, "screenshot": screenshot, "reference": json.loads(out.read_text())["features"],
            "region": shape(json.loads(roi.read_text())["features"][0]["geometry"])}


def test_extensions_menu_lists_the_cellbridge_commands(gui):
    menu = gui["report"]["menu"]
    assert menu[0].startswith("Server: ")
    assert menu[1:] == COMMANDS


def test_settings_are_in_qupaths_preference_pane(gui):
    assert gui["report"]["preferences"] == PREFERENCES


def test_check_python_server_reports_versions_devices_and_models(gui):
    lines = [line for label in gui["report"]["serverCheck"] for line in label.splitlines()]
    assert lines[0].startswith("running: cellbridge ")
    assert any(line.startswith("Devices: ") and "cpu" in line for line in lines), lines
    models = next(line for line in lines if line.startswith("Models: "))
    assert "nuclei-brightfield" in models.split(": ", 1)[1].split(", ")


def test_detect_nuclei_from_the_menu_puts_the_cli_nuclei_under_the_selected_annotation(gui):
    report, reference = gui["report"], gui["reference"]
    assert report["dialog"][:2] == ["Model", "Device"] and "Cell expansion" in report["dialog"]
    assert report["detections"] == len(reference) > 20
    assert report["unparented"] == 0
    assert report["classes"] == {"Nucleus": len(reference)}
    assert set(report["measurements"]) == set(reference[0]["properties"]["measurements"])
    np.testing.assert_allclose(np.array(sorted(map(tuple, report["centroids"]))), centroids(reference), atol=0.01)
    assert report["workflow"][-1] == "CellBridge detect objects", "the run is recorded for Create script"


def test_screenshot_shows_the_window(gui):
    image = cv2.imread(str(gui["screenshot"]))
    assert image.shape[0] >= 600 and image.shape[1] >= 1000
    assert image.std() > 20, "not a blank window"
