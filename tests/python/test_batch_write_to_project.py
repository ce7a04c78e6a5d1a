"""`cellbridge batch … --write-to-project`: results written into real QuPath projects through paquo, against the
QuPath runtime of ../shared/qupath-runtime (real QuPath 0.6 classes; `env.sh --paquo DIR` lays out an install)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tifffile

REPO = Path(__file__).resolve().parents[2]
RUNTIME = Path(os.environ.get("QUPATH_RUNTIME", REPO.parent / "shared" / "qupath-runtime"))


@pytest.fixture(scope="module")
def qupath(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Point paquo at the runtime for this module only (other modules read projects without it); the runtime's
    environment (QUPATH_JAVA_HOME, QUPATH_RUNTIME_CP, PAQUO_QUPATH_DIR)."""
    if not (RUNTIME / "env.sh").is_file():
        pytest.skip(f"no QuPath runtime at {RUNTIME}: the paquo tests need it (set QUPATH_RUNTIME)")
    pytest.importorskip("paquo", reason="paquo is not installed (pip install 'cellbridge[qupath]')")
    layout = tmp_path_factory.mktemp("qupath-install")
    result = subprocess.run(["bash", str(RUNTIME / "env.sh"), "--paquo", str(layout)], capture_output=True,
                            text=True)
    if result.returncode == 3:
        pytest.skip(f"the QuPath runtime needs a JDK >= 21: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    env = {}
    for line in result.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    from paquo import settings   # read when paquo is first imported: set it here explicitly

    settings.set("qupath_dir", env["PAQUO_QUPATH_DIR"])
    from cellbridge.batch.projects import paquo_available

    try:
        assert paquo_available(), "paquo does not find the runtime's QuPath"
        yield env
    finally:
        settings.set("qupath_dir", "")


def _plain_tiff(path: Path, seed: int, size: int = 256) -> Path:
    """A synthetic H&E slide as a plain RGB TIFF (QuPath's ImageJ server reads it; 0.5 µm/px)."""
    pyramid = path.with_name(path.stem + "-pyramid.tif")
    subprocess.run([sys.executable, "-m", "cellbridge", "synth-slide", str(pyramid), "--size", f"{size}x{size}",
                    "--tissue-fraction", "0.7", "--seed", str(seed), "--compression", "none"], check=True,
                   capture_output=True)
    rgb = tifffile.imread(pyramid, level=0)
    tifffile.imwrite(path, rgb, photometric="rgb", imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    return path


def _new_project(folder: Path, tif: Path) -> Path:
    """A paquo-made project with one image, a user annotation (Region) and a user detection (Manual)."""
    from paquo.classes import QuPathPathClass
    from paquo.images import QuPathImageType
    from paquo.projects import QuPathProject
    from shapely.geometry import box

    with QuPathProject(folder, mode="x") as project:
        entry = project.add_image(tif, image_type=QuPathImageType.BRIGHTFIELD_H_E)
        entry.hierarchy.add_annotation(roi=box(16, 16, 240, 240), path_class=QuPathPathClass("Region"))
        entry.hierarchy.add_detection(roi=box(2, 2, 10, 10), path_class=QuPathPathClass("Manual"))
    return folder / "project.qpproj"


def _objects(qpproj: Path) -> dict[str, object]:
    from paquo.projects import QuPathProject

    with QuPathProject(qpproj, mode="r") as project:
        entry = project.images[0]
        h = entry.hierarchy
        annotations = list(h.annotations)
        detections = list(h.detections)
        return {
            "annotations": [a.path_class.name for a in annotations],
            "under_annotation": int(annotations[0].java_object.getChildObjects().size()) if annotations else 0,
            "classes": sorted(d.path_class.id for d in detections if d.path_class),
            "cells": len(h.cells),
            "detections": len(detections),
            "measurements": sorted({n for d in detections for n in d.measurements.keys()}),
            "metadata": dict(entry.metadata),
            "data": entry.entry_path / "data.qpdata",
        }


def _options(out: Path, **kw):
    from cellbridge.batch.runner import BatchOptions
    from cellbridge.pipeline.options import RunOptions

    run = RunOptions(device="cpu", pixel_size=0.5, cell_expansion=kw.pop("cell_expansion", 0.0))
    return BatchOptions("nuclei-he", out, run, progress=False, write_to_project=True, **kw)


def test_batch_writes_into_the_project_replacing_only_its_own_objects(qupath, tmp_path: Path) -> None:
    from cellbridge.batch.runner import run_batch

    qpproj = _new_project(tmp_path / "project", _plain_tiff(tmp_path / "slide.tif", seed=21))

    first = run_batch([qpproj], _options(tmp_path / "out"))

    [outcome] = first.outcomes
    assert outcome.status == "done", outcome.error
    assert outcome.objects > 20
    seen = _objects(qpproj)
    assert seen["annotations"] == ["Region"], "the user's annotation stays"
    assert seen["detections"] == outcome.objects + 1, "the user's detection stays beside CellBridge's"
    assert seen["classes"].count("Manual") == 1
    expected = sorted([name for name, n in outcome.counts.items() for _ in range(n)] + ["Manual"])
    assert seen["classes"] == expected
    assert seen["under_annotation"] >= 0.8 * outcome.objects, "placed under the annotation that contains them"
    assert "Nucleus: Area µm^2" in seen["measurements"]
    assert seen["metadata"]["cellbridge.signature"] == first.signature
    written = seen["data"].stat().st_mtime_ns

    again = run_batch([qpproj], _options(tmp_path / "out"))          # resumed: nothing to do

    assert [o.status for o in again.outcomes] == ["skipped"]
    assert seen["data"].stat().st_mtime_ns == written, "the project already held these results"

    cells = run_batch([qpproj], _options(tmp_path / "out", cell_expansion=2.0))   # another run replaces them

    [outcome] = cells.outcomes
    assert outcome.status == "done", outcome.error
    seen = _objects(qpproj)
    assert seen["cells"] == outcome.objects, "the earlier detections were replaced, not kept"
    assert seen["detections"] == outcome.objects + 1
    assert seen["annotations"] == ["Region"] and seen["classes"].count("Manual") == 1
    assert seen["metadata"]["cellbridge.signature"] == cells.signature


def test_the_cli_prints_one_json_document_with_quPaths_log_kept_off_stdout(qupath, tmp_path: Path) -> None:
    """QuPath's classes log DEBUG lines on stdout when nothing configures their logger: not into the result, and
    not onto stderr either (warnings and errors only)."""
    qpproj = _new_project(tmp_path / "project", _plain_tiff(tmp_path / "slide.tif", seed=24, size=128))
    env = {**os.environ, "PAQUO_QUPATH_DIR": qupath["PAQUO_QUPATH_DIR"], "PYTHONPATH": str(REPO / "python")}

    result = subprocess.run([sys.executable, "-m", "cellbridge", "batch", str(qpproj), "--model", "nuclei-he",
                             "--device", "cpu", "--out-dir", str(tmp_path / "out"), "--write-to-project"],
                            capture_output=True, text=True, env=env)

    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"]) == (1, 0)
    assert _objects(qpproj)["detections"] == summary["objects"] + 1
    assert " DEBUG " not in result.stderr and " INFO " not in result.stderr, result.stderr[-2000:]


def test_an_interrupted_write_is_cleaned_up_by_the_next_run(qupath, tmp_path: Path) -> None:
    """The ID file lists old and new objects before the data is written: a rerun removes both, adds once."""
    from cellbridge.batch.project_writer import OBJECTS_FILE
    from cellbridge.batch.runner import run_batch

    qpproj = _new_project(tmp_path / "project", _plain_tiff(tmp_path / "slide.tif", seed=22))
    first = run_batch([qpproj], _options(tmp_path / "out"))
    n = first.outcomes[0].objects
    state_file = _objects(qpproj)["data"].parent / OBJECTS_FILE
    state = json.loads(state_file.read_text())
    state["complete"] = False                          # as if killed after the data, before the last step
    state_file.write_text(json.dumps(state))

    again = run_batch([qpproj], _options(tmp_path / "out"))

    assert again.outcomes[0].status == "skipped"      # the GeoJSON was done; only the project is rewritten
    seen = _objects(qpproj)
    assert seen["detections"] == n + 1
    assert json.loads(state_file.read_text())["complete"] is True


def test_slide_files_cannot_be_written_into_a_project(qupath, tmp_path: Path) -> None:
    from cellbridge.batch.runner import run_batch
    from cellbridge.errors import CellBridgeError

    tif = _plain_tiff(tmp_path / "slide.tif", seed=23, size=64)
    with pytest.raises(CellBridgeError, match="slide.tif is a slide file, not a project"):
        run_batch([tif], _options(tmp_path / "out"))
    assert not (tmp_path / "out" / "counts.csv").exists(), "refused before anything ran"


def test_a_project_written_by_quPaths_java_api_is_read_and_kept(qupath, tmp_path: Path) -> None:
    """QuPath's Java API (the runtime's example program) writes a project with cells; paquo reads it back, and a
    write into it keeps those cells, their classes and measurements."""
    from cellbridge.batch.project_writer import ProjectWriter
    from cellbridge.batch.projects import read_project
    from cellbridge.io.qupath_geojson import write_objects
    from cellbridge.objects import PathClass, PathObject
    from shapely.geometry import box

    java_home = qupath["QUPATH_JAVA_HOME"]
    example = RUNTIME / "example"
    classes = tmp_path / "classes"
    subprocess.run([f"{java_home}/bin/javac", "-nowarn", "-cp", qupath["QUPATH_RUNTIME_CP"], "-d", str(classes),
                    str(example / "QuPathRuntimeExample.java")], check=True, capture_output=True)
    out = tmp_path / "java"
    run = subprocess.run([f"{java_home}/bin/java", "-Djava.awt.headless=true", "-cp",
                          f"{classes}:{qupath['QUPATH_RUNTIME_CP']}", "QuPathRuntimeExample",
                          str(example / "cells.geojson"), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    qpproj = out / "project" / "project.qpproj"

    project = read_project(qpproj, reader="paquo")
    [image] = project.images
    assert (image.name, image.problem, project.reader) == ("synthetic.tif", None, "paquo")
    before = _objects(qpproj)
    assert before["cells"] == 5 and before["annotations"] == ["Region"]
    assert "Immune cells: CD3" in before["classes"]
    assert "Nucleus: Area" in before["measurements"]

    ours = tmp_path / "ours.geojson"
    write_objects([PathObject(box(60, 60, 70, 70), path_class=PathClass.of("Tumor"), measurements={"Score": 0.75})],
                  ours)
    with ProjectWriter("sig", "m") as writer:
        result = writer.write(image, ours)

    assert (result.written, result.added, result.removed) == (True, 1, 0)
    after = _objects(qpproj)
    assert after["cells"] == 5 and after["detections"] == before["detections"] + 1
    assert sorted(after["classes"]) == sorted(before["classes"] + ["Tumor"])
    assert "Score" in after["measurements"] and "Nucleus: Area" in after["measurements"]
    shutil.rmtree(classes)


def test_without_paquo_the_batch_stops_at_once_saying_what_it_needs(tmp_path: Path, monkeypatch) -> None:
    """Runs everywhere (no QuPath runtime needed): the check comes before any image is run."""
    import cellbridge.batch.project_writer as project_writer
    from cellbridge.batch.runner import run_batch
    from cellbridge.errors import CellBridgeError

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "project.qpproj").write_text(json.dumps({"version": "0.6.0", "lastID": 0, "images": []}))
    monkeypatch.setattr(project_writer, "paquo_available", lambda: False)

    with pytest.raises(CellBridgeError, match=r"needs paquo and a QuPath installation: pip install"):
        run_batch([folder], _options(tmp_path / "out", reader="json"))
    assert not (tmp_path / "out" / "counts.csv").exists()


def test_cli_write_to_project_without_a_quPath_install_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("paquo", reason="paquo is not installed (pip install 'cellbridge[qupath]')")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "project.qpproj").write_text(json.dumps({"version": "0.6.0", "lastID": 0, "images": []}))
    nowhere = tmp_path / "no-qupath"
    nowhere.mkdir()
    env = {**os.environ, "PAQUO_QUPATH_DIR": str(nowhere), "PYTHONPATH": str(REPO / "python")}

    result = subprocess.run([sys.executable, "-m", "cellbridge", "batch", str(folder), "--model", "nuclei-he",
                             "--out-dir", str(tmp_path / "out"), "--write-to-project", "--reader", "json"],
                            capture_output=True, text=True, env=env)

    assert result.returncode == 2, result.stderr
    assert "--write-to-project needs paquo and a QuPath installation" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
