"""`cellbridge batch` on QuPath 0.6 projects written here as QuPath writes them, with generated slides."""

from __future__ import annotations

import argparse
import json
import os
import uuid
from pathlib import Path

import pytest
from cellbridge.batch import BatchOptions, CountsRow, CountsTable, read_project, run_batch
from cellbridge.pipeline.options import RunOptions
from cellbridge.batch.projects import ProjectError, uri_to_path
from cellbridge.batch.runner import BatchCancelled, output_paths
from cellbridge.batch.signature import run_parameters, signature_of
from cellbridge.server.service import CellBridgeService
from cellbridge.cli import batch as batch_cli
from cellbridge.cli import classify as classify_cli
from cellbridge.io.qupath_geojson import read_objects
from cellbridge.synth import SynthConfig, generate_slide
from batch_runs import batch_options, read_rows

SIZE = 512
MODEL = "nuclei-he"


def java_file_uri(path: Path) -> str:
    """`new File(path).toURI().toString()` as Java writes it: `file:/abs/path`, spaces as %20."""
    return "file:" + Path(path).absolute().as_uri()[len("file://"):]


def server_builder(slide: Path) -> dict:
    """The server builder QuPath 0.6 stores for an image opened by OpenSlide (`builderType` "uri")."""
    return {
        "builderType": "uri",
        "providerClassName": "qupath.lib.images.servers.openslide.OpenslideServerBuilder",
        "uri": java_file_uri(slide),
        "args": [],
        "metadata": {
            "name": slide.name, "width": SIZE, "height": SIZE, "sizeZ": 1, "sizeT": 1,
            "channelType": "DEFAULT", "isRGB": True, "pixelType": "UINT8",
            "levels": [{"downsample": 1.0, "width": SIZE, "height": SIZE}],
            "pixelCalibration": {"pixelWidth": {"value": 0.5, "unit": "µm"},
                                 "pixelHeight": {"value": 0.5, "unit": "µm"},
                                 "zSpacing": {"value": 1.0, "unit": "z-slice"},
                                 "timeUnit": "SECONDS", "timepoints": []},
            "preferredTileWidth": 256, "preferredTileHeight": 256,
        },
    }


def write_project(folder: Path, slides: list[Path], server_json_only: tuple[int, ...] = ()) -> Path:
    """A QuPath 0.6 project: project.qpproj (as `DefaultProject.writeProject`), data/<id>/server.json, classifiers/.

    Entries whose index is in `server_json_only` keep their server builder only in data/<id>/server.json.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classifiers").mkdir(exist_ok=True)
    images = []
    for i, slide in enumerate(slides, start=1):
        builder = server_builder(slide)
        entry = {"serverBuilder": builder, "entryID": i, "randomizedName": str(uuid.uuid4()),
                 "imageName": slide.name, "metadata": {}, "tags": []}
        if i - 1 in server_json_only:
            del entry["serverBuilder"]
        images.append(entry)
        data = folder / "data" / str(i)
        data.mkdir(parents=True, exist_ok=True)
        (data / "server.json").write_text(json.dumps(builder, indent=2), encoding="utf-8")
    project = {"version": "0.6.0", "createTimestamp": 1735689600000, "modifyTimestamp": 1735689700000,
               "uri": java_file_uri(folder / "project.qpproj"), "lastID": len(slides), "images": images}
    file = folder / "project.qpproj"
    file.write_text(json.dumps(project, indent=2, ensure_ascii=False), encoding="utf-8")
    return file


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("slides with space")
    return [generate_slide(folder / f"slide {i}.tif", SynthConfig(width=SIZE, height=SIZE, tissue_fraction=0.5,
                                                                   seed=900 + i), tile=256).path
            for i in range(3)]


def model_of(name: str):
    from cellbridge.models.package import read_spec, resolve_model_dir

    folder = resolve_model_dir(name)
    return read_spec(folder), folder


def options(out: Path, **kwargs) -> BatchOptions:
    kwargs.setdefault("tile_size", SIZE)  # one tile per slide: quick on a CPU
    return batch_options(MODEL, out, **kwargs)


def test_reads_a_qupath_project_as_qupath_writes_it(tmp_path: Path, slides: list[Path]) -> None:
    file = write_project(tmp_path / "proj", slides, server_json_only=(1,))
    project = read_project(tmp_path / "proj", reader="json")
    assert project.file == file and project.name == "proj" and project.version == "0.6.0"
    assert [i.entry_id for i in project.images] == ["1", "2", "3"]
    assert [i.name for i in project.images] == [s.name for s in slides]
    assert [i.path for i in project.images] == slides            # entry 2 read from data/2/server.json
    assert all(i.problem is None for i in project.images)
    assert uri_to_path("file:/a/b%20c.tif") == Path("/a/b c.tif")
    assert uri_to_path("https://example.org/a.tif") is None


def test_unsupported_entries_say_why(tmp_path: Path, slides: list[Path]) -> None:
    file = write_project(tmp_path / "proj", slides[:1])
    data = json.loads(file.read_text(encoding="utf-8"))
    rotated = {"builderType": "rotated", "rotation": "ROTATE_90", "builder": data["images"][0]["serverBuilder"]}
    web = dict(data["images"][0]["serverBuilder"], uri="https://example.org/slide.svs")
    data["images"] += [dict(data["images"][0], entryID=2, serverBuilder=rotated),
                       dict(data["images"][0], entryID=3, serverBuilder=web)]
    file.write_text(json.dumps(data), encoding="utf-8")
    images = read_project(file, reader="json").images
    assert images[0].problem is None
    assert "'rotated'" in images[1].problem and "not a local file" in images[2].problem


def test_paquo_is_used_only_when_it_can_run_qupath(tmp_path: Path, slides: list[Path], monkeypatch) -> None:
    from cellbridge.batch import projects

    write_project(tmp_path / "proj", slides[:1])
    monkeypatch.setattr(projects, "paquo_available", lambda: False)
    assert read_project(tmp_path / "proj").reader == "json"
    monkeypatch.setattr(projects, "paquo_available", lambda: True)
    monkeypatch.setattr(projects, "_read_with_paquo", lambda file: (_ for _ in ()).throw(RuntimeError("no JVM")))
    assert read_project(tmp_path / "proj").reader == "json"        # auto: falls back to the JSON
    with pytest.raises(ProjectError, match="paquo cannot read the project"):
        read_project(tmp_path / "proj", reader="paquo")
    monkeypatch.setattr(projects, "paquo_installed", lambda: False)   # asked for, but not installed: say how
    with pytest.raises(ProjectError, match=r"--reader paquo needs the paquo package.*pip install paquo.*--reader json"):
        read_project(tmp_path / "proj", reader="paquo")


def test_cancelling_between_images_keeps_what_is_done(tmp_path: Path, slides: list[Path]) -> None:
    project = write_project(tmp_path / "proj", slides[:2])
    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 1          # stop before the second image

    with pytest.raises(BatchCancelled, match="run it again"):
        run_batch([project], options(tmp_path / "out"), cancelled=cancelled)
    assert [r["status"] for r in read_rows(tmp_path / "out" / "counts.csv")] == ["done"]
    assert [o.status for o in run_batch([project], options(tmp_path / "out")).outcomes] == ["skipped", "done"]


def test_a_moved_project_finds_its_images_relative_to_the_project(tmp_path: Path, slides: list[Path]) -> None:
    old = tmp_path / "old"
    (old / "images").mkdir(parents=True)
    os.link(slides[0], old / "images" / "a.tif")
    write_project(old, [old / "images" / "a.tif"])
    new = tmp_path / "new"
    old.rename(new)
    [image] = read_project(new, reader="json").images
    assert image.problem is None and image.path == new / "images" / "a.tif"


def test_batch_writes_geojson_and_counts_and_resumes(tmp_path: Path, slides: list[Path]) -> None:
    project = write_project(tmp_path / "proj", slides)
    out = tmp_path / "out"
    summary = run_batch([project], options(out))
    assert [o.status for o in summary.outcomes] == ["done"] * 3, summary.to_json()
    rows = read_rows(out / "counts.csv")
    assert [r["image"] for r in rows] == [s.name for s in slides]
    classes = [c for c in rows[0] if c not in ("project", "image", "image_id", "status", "objects", "model",
                                                "signature", "seconds", "error")]
    assert classes and classes == sorted(classes)
    image = read_project(project).images
    for outcome, row, entry in zip(summary.outcomes, rows, image):
        objects = read_objects(outcome.output)
        assert len(objects) > 20 and int(row["objects"]) == len(objects)
        assert all(o.object_type == "detection" and o.path_class is not None for o in objects)
        per_class = {c: sum(o.class_name == c for o in objects) for c in classes}
        assert {c: int(row[c] or 0) for c in classes} == per_class
        assert row["status"] == "done" and row["signature"] == summary.signature and row["model"] == MODEL
        assert outcome.output == output_paths(out / "proj", entry)[0]
        sidecar = json.loads(output_paths(out / "proj", entry)[1].read_text(encoding="utf-8"))
        assert sidecar["signature"] == summary.signature and sidecar["counts"] == outcome.counts

    # everything is skipped the second time, and nothing is rewritten
    stamps = {o.output: o.output.stat().st_mtime_ns for o in summary.outcomes}
    again = run_batch([project], options(out))
    assert [o.status for o in again.outcomes] == ["skipped"] * 3
    assert {o.output: o.output.stat().st_mtime_ns for o in again.outcomes} == stamps
    assert [int(r["objects"]) for r in read_rows(out / "counts.csv")] == [int(r["objects"]) for r in rows]
    # a skipped image keeps the time its run took
    assert [r["seconds"] for r in read_rows(out / "counts.csv")] == [r["seconds"] for r in rows]
    assert all(float(r["seconds"]) > 0 for r in rows)

    # one output deleted, one made with other parameters: only those two are redone
    summary.outcomes[1].output.unlink()
    sidecar = output_paths(out / "proj", image[2])[1]
    sidecar.write_text(sidecar.read_text(encoding="utf-8").replace(summary.signature, "0123456789abcdef"),
                       encoding="utf-8")
    third = run_batch([project], options(out))
    assert [o.status for o in third.outcomes] == ["skipped", "done", "done"]
    assert [o.counts for o in third.outcomes] == [o.counts for o in summary.outcomes]
    assert [r["status"] for r in read_rows(out / "counts.csv")] == ["skipped", "done", "done"]
    # other parameters give another signature
    other = BatchOptions(MODEL, out, RunOptions(tile_size=SIZE, tissue=False))
    assert signature_of(run_parameters(other.model, other.run, *model_of(MODEL))) != summary.signature
    # the server signs the same run (as QuPath asks for it) with the batch's signature
    request = {"task": "nuclei", "model": MODEL, "options": {"tileSize": SIZE, "device": "cuda", "batchSize": 8}}
    reply = json.loads(CellBridgeService(device="cpu").signature(json.dumps(request)))
    assert reply == {"ok": True, "value": summary.signature}


def test_a_slide_changed_between_runs_is_redone(tmp_path: Path) -> None:
    small = SynthConfig(width=128, height=128, tissue_fraction=1.0, seed=905)
    slide = generate_slide(tmp_path / "slide.tif", small, tile=128).path
    out = tmp_path / "out"
    first = run_batch([slide], options(out, tile_size=128)).outcomes
    assert [o.status for o in first] == ["done"] and first[0].objects > 0
    assert [o.status for o in run_batch([slide], options(out, tile_size=128)).outcomes] == ["skipped"]
    # the same bytes written again (a re-export): a new modification time, so the outputs are stale
    stat = slide.stat()
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    again = run_batch([slide], options(out, tile_size=128)).outcomes
    assert [o.status for o in again] == ["done"] and again[0].counts == first[0].counts
    [sidecar_path] = (out / "slides").glob("*.cellbridge.json")
    sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    assert sidecar["imageFile"] == {"size": stat.st_size, "mtimeNs": stat.st_mtime_ns + 2_000_000_000}
    assert [o.status for o in run_batch([slide], options(out, tile_size=128)).outcomes] == ["skipped"]


def test_a_missing_image_fails_alone(tmp_path: Path, slides: list[Path]) -> None:
    gone = tmp_path / "gone.tif"
    project = write_project(tmp_path / "proj", [slides[0], gone, slides[2]])
    unreadable = tmp_path / "broken" / "project.qpproj"
    unreadable.parent.mkdir()
    unreadable.write_text("{not json", encoding="utf-8")
    out = tmp_path / "out"
    summary = run_batch([project, unreadable], options(out))
    assert [o.status for o in summary.outcomes] == ["done", "failed", "done", "failed"]
    assert str(gone) in summary.outcomes[1].error and "does not exist" in summary.outcomes[1].error
    assert "not valid JSON" in summary.outcomes[3].error
    rows = read_rows(out / "counts.csv")
    assert [r["status"] for r in rows] == ["done", "failed", "done", "failed"]
    assert [r["project"] for r in rows] == ["proj", "proj", "proj", "broken"]
    assert rows[1]["objects"] == "" and "does not exist" in rows[1]["error"]
    assert not output_paths(out / "proj", read_project(project).images[1])[0].exists()


def test_cli_runs_the_batch_and_exits_1_when_an_image_failed(tmp_path: Path, slides: list[Path], capsys) -> None:
    project = write_project(tmp_path / "proj", [slides[0], tmp_path / "missing.tif"])
    parser = argparse.ArgumentParser(prog="cellbridge")
    commands = parser.add_subparsers(dest="command")
    batch_cli.register(commands)
    classify_cli.register(commands)
    args = parser.parse_args(["batch", str(project.parent), "--model", MODEL, "--out-dir", str(tmp_path / "out"),
                              "--device", "cpu", "--tile", str(SIZE), "--cell-expansion", "2"])
    assert args.resume is True
    assert args.func(args) == batch_cli.EXIT_SOME_FAILED
    captured = capsys.readouterr()
    summary = json.loads(captured.out[captured.out.index("{"):])
    assert summary["done"] == 1 and summary["failed"] == 1 and "missing.tif" in captured.err
    objects = read_objects(tmp_path / "out" / "proj" / "1-slide_0.geojson")
    assert objects and all(o.object_type == "cell" and o.nucleus_geometry is not None for o in objects)

    # `cellbridge classify` (QuPath's Classify detections) on that output: classes by reference colour, ids kept
    classifier = tmp_path / "colours.json"
    classifier.write_text(json.dumps({"classes": {"Dark": [60, 30, 110], "Pale": [230, 180, 220]}}), encoding="utf-8")
    args = parser.parse_args(["classify", str(tmp_path / "out" / "proj" / "1-slide_0.geojson"),
                              "--classifier", str(classifier), "--out", str(tmp_path / "classified.geojson")])
    assert args.func(args) == 0
    classified = read_objects(tmp_path / "classified.geojson")
    assert [o.id for o in classified] == [o.id for o in objects]
    assert {o.class_name for o in classified} <= {"Dark", "Pale"}
    assert all("Class probability: Dark" in o.measurements for o in classified)


def test_counts_table_round_trips(tmp_path: Path) -> None:
    table = CountsTable([CountsRow("p", "a.tif", "1", "done", "m", "abc", 1.5, "", {"Tumor": 3, "Stroma": 1}),
                         CountsRow("p", "b.tif", "2", "failed", error="image file b.tif does not exist")])
    table.write(tmp_path / "c.csv")
    text = (tmp_path / "c.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "project,image,image_id,status,objects,model,signature,seconds,error,Stroma,Tumor"
    assert "\r" not in text
    again = CountsTable.read(tmp_path / "c.csv")
    assert [(r.key, r.counts, r.objects) for r in again.rows] == [(("p", "1"), {"Stroma": 1, "Tumor": 3}, 4),
                                                                  (("p", "2"), {}, 0)]
