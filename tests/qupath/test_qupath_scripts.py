"""The Groovy scripts of ``scripts/`` run by QuPath 0.6.0's own command line (``QuPath script -p``) over real QuPath
projects, with the installable extension jar and the real Python server; what QuPath saved is read back by QuPath and
compared with ``cellbridge nuclei`` on the same images and regions.

Two projects of synthetic slides with two annotations each (``Left``, ``Right``); the second project also lists an
image whose file is gone. Fresh copies of both go through the several-projects script. Slow (a few minutes on two
cores: every image runs the default model) and skipped when QuPath cannot be built here.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Point, shape

from cellbridge.cli.main import main as cellbridge_main
from qupath_app import (PIXEL_SIZE, REPO, QuPathApp, build_qupath, centroids, region_feature, synthetic_slide,
                        write_geojson)

pytestmark = pytest.mark.slow

SCRIPTS = REPO / "scripts"
HERE = Path(__file__).resolve().parent
REGIONS = {"Left": (40, 60, 360, 700), "Right": (400, 60, 720, 700)}  # x0, y0, x1, y1 (level-0 pixels)
# the parameters every script in scripts/ states
MODEL_OPTIONS = ["--model", "nuclei-brightfield", "--device", "auto", "--tile", "1024", "--overlap", "64",
                 "--cell-expansion", "3.0"]
SLIDES = {"p1": {"a.tif": 1, "b.tif": 2}, "p2": {"c.tif": 3, "d.tif": 4, "gone.tif": 5}}


def _checked(process, what: str):
    assert process.returncode == 0, f"{what} failed:\n{process.stdout[-6000:]}"
    return process


def _dump(app: QuPathApp, out: Path, *projects: Path) -> dict:
    _checked(app.script(HERE / "dump_projects.groovy", arguments=[out, *projects]), "dump_projects.groovy")
    data = json.loads(out.read_text())
    return {Path(k).parent.name: v for k, v in data.items()}


def _csv(path: Path) -> dict[tuple[str, str], dict]:
    with path.open(newline="") as f:
        return {(row["project"], row["image"]): row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every QuPath run of this module, in order, and what QuPath read back after each."""
    work = tmp_path_factory.mktemp("qupath-scripts")
    app = build_qupath(work / "prefs")
    images = work / "images"
    images.mkdir()
    regions = write_geojson(images / "regions.geojson", [region_feature(n, b) for n, b in REGIONS.items()])
    for project, slides in SLIDES.items():
        arguments = [work / project]
        for name, seed in slides.items():
            arguments += [synthetic_slide(images, name, seed), regions]
        _checked(app.script(HERE / "make_project.groovy", arguments=arguments), "make_project.groovy")
        shutil.copytree(work / project, work / f"{project}-batch")
    (images / "gone.tif").unlink()

    out = {"work": work, "images": images}
    p1, p2 = work / "p1" / "project.qpproj", work / "p2" / "project.qpproj"
    run_for_project = SCRIPTS / "cellbridge_run_for_project.groovy"
    out["first"] = {"p1": _checked(app.script(run_for_project, project=p1, save=True), "p1: run for project"),
                    # not checked: QuPath's own loop exits 1 after the image it cannot open (see the test)
                    "p2": app.script(run_for_project, project=p2, save=True)}
    out["after_first"] = _dump(app, work / "first.json", p1, p2)
    out["second"] = _checked(app.script(run_for_project, project=p1, save=True), "p1: run for project again")
    out["after_second"] = _dump(app, work / "second.json", p1)

    batch_list = work / "projects.txt"
    # the project with the missing image first: the batch goes on to the other project after it
    batch_list.write_text(f"# the batch copies\n{work / 'p2-batch' / 'project.qpproj'}\n\n{work / 'p1-batch'}\n")
    batch_csv = work / "batch" / "counts.csv"
    batch = SCRIPTS / "cellbridge_projects_batch.groovy"
    out["batch"] = _checked(app.script(batch, arguments=[batch_list, batch_csv]), "projects batch")
    out["batch_csv"] = _csv(batch_csv)
    out["after_batch"] = _dump(app, work / "batch.json", work / "p1-batch" / "project.qpproj",
                               work / "p2-batch" / "project.qpproj")
    out["batch_again"] = _checked(app.script(batch, arguments=[batch_list, batch_csv]), "projects batch again")
    out["batch_again_csv"] = _csv(batch_csv)

    current = SCRIPTS / "cellbridge_current_image.groovy"
    out["current"] = _checked(app.script(current, project=p1, image="a.tif", save=True), "current image")
    out["after_current"] = _dump(app, work / "current.json", p1)
    return out


@pytest.fixture(scope="module")
def reference(runs):
    """``cellbridge nuclei`` on each slide, one run per region (the extension runs one job per annotation)."""
    result = {}
    for name in ("a.tif", "b.tif", "c.tif", "d.tif"):
        for region, box in REGIONS.items():
            roi = write_geojson(runs["work"] / f"roi-{region}.geojson", [region_feature(region, box)])
            out = runs["work"] / f"ref-{name}-{region}.geojson"
            assert cellbridge_main(["nuclei", str(runs["images"] / name), "--roi", str(roi), "--out", str(out),
                                    "--pixel-size", PIXEL_SIZE, *MODEL_OPTIONS]) == 0
            result[name, region] = json.loads(out.read_text())["features"]
    out = runs["work"] / "ref-a.tif-whole.geojson"
    assert cellbridge_main(["nuclei", str(runs["images"] / "a.tif"), "--out", str(out), "--pixel-size", PIXEL_SIZE,
                            *MODEL_OPTIONS]) == 0
    result["a.tif", None] = json.loads(out.read_text())["features"]
    return result


def test_run_for_project_puts_the_same_nuclei_as_the_cli_under_each_annotation(runs, reference):
    for project, names in (("p1", ("a.tif", "b.tif")), ("p2", ("c.tif", "d.tif"))):
        for name in names:
            image = runs["after_first"][project][name]
            assert image["metadata"]["cellbridge.model"] == "nuclei-brightfield"
            assert image["unparented"]["count"] == 0, f"{name}: detections outside the annotations"
            by_name = {a["name"]: a for a in image["annotations"]}
            assert set(by_name) == set(REGIONS)
            for region, box in REGIONS.items():
                ours, ref = by_name[region]["detections"], reference[name, region]
                assert by_name[region]["nested"] == 0
                assert ours["count"] == len(ref) > 20, f"{name} {region}: QuPath {ours['count']}, CLI {len(ref)}"
                assert ours["cells"] == ours["count"], "cell expansion 3 µm: every object is a cell with a nucleus"
                ref_classes = {}
                for f in ref:
                    cls = f["properties"]["classification"]["name"]
                    ref_classes[cls] = ref_classes.get(cls, 0) + 1
                assert ours["classes"] == ref_classes
                ref_measurements = set.intersection(*(set(f["properties"]["measurements"]) for f in ref))
                assert set(ours["measurements"]) == ref_measurements and len(ref_measurements) >= 5
                area = shape(region_feature(region, box)["geometry"])
                ours_xy = np.array(sorted(map(tuple, ours["centroids"]))).reshape(-1, 2)
                assert all(area.contains(Point(x, y)) for x, y in ours_xy)
                np.testing.assert_allclose(ours_xy, centroids(ref), atol=0.01)


def test_run_for_project_writes_a_counts_row_per_image_and_a_missing_image_does_not_stop_the_others(runs):
    # QuPath 0.6.0's `script -p` closes each image's server after the script, which throws for a missing file and
    # ends QuPath's loop with status 1 (gone.tif is the last image here); the script itself has written its row
    log = runs["first"]["p2"].stdout
    assert runs["first"]["p2"].returncode == 1 and "Unable to build ImageServer" in log, log[-3000:]
    rows = _csv(runs["work"] / "p2" / "cellbridge-counts.csv")
    assert {image: row["status"] for (_, image), row in rows.items()} == {
        "c.tif": "done", "d.tif": "done", "gone.tif": "failed"}
    assert "gone.tif" in rows["p2", "gone.tif"]["error"], "the reason names the missing file"
    after = runs["after_first"]["p2"]
    assert "cellbridge.signature" not in after["gone.tif"]["metadata"]
    for name in ("c.tif", "d.tif"):
        assert int(rows["p2", name]["objects"]) == after[name]["detections"] > 0
        assert int(rows["p2", name]["Nucleus"]) == after[name]["detections"]


def test_run_for_project_again_skips_the_images_done_and_keeps_their_objects(runs):
    log = runs["second"].stdout
    assert log.count(": skipped, ") == 2, log[-3000:]
    assert runs["after_second"]["p1"] == runs["after_first"]["p1"]
    rows = _csv(runs["work"] / "p1" / "cellbridge-counts.csv")
    for name in ("a.tif", "b.tif"):
        assert rows["p1", name]["status"] == "skipped"
        assert int(rows["p1", name]["objects"]) == runs["after_first"]["p1"][name]["detections"]


def test_projects_batch_runs_every_image_of_every_listed_project(runs):
    rows = runs["batch_csv"]
    assert {k: r["status"] for k, r in rows.items()} == {
        ("p1-batch", "a.tif"): "done", ("p1-batch", "b.tif"): "done", ("p2-batch", "c.tif"): "done",
        ("p2-batch", "d.tif"): "done", ("p2-batch", "gone.tif"): "failed"}
    for project, images in runs["after_batch"].items():
        first = runs["after_first"][project.removesuffix("-batch")]
        for name, image in images.items():
            if name == "gone.tif":
                assert "cellbridge.signature" not in image["metadata"]
                continue
            # the same run as "Run for project": the same objects under the same annotations, saved
            assert image["annotations"] == first[name]["annotations"]
            assert image["metadata"]["cellbridge.signature"] == first[name]["metadata"]["cellbridge.signature"]
            assert int(rows[project, name]["objects"]) == image["detections"]


def test_projects_batch_again_skips_what_is_done_and_retries_what_failed(runs):
    rows = runs["batch_again_csv"]
    assert {k: r["status"] for k, r in rows.items()} == {
        ("p1-batch", "a.tif"): "skipped", ("p1-batch", "b.tif"): "skipped", ("p2-batch", "c.tif"): "skipped",
        ("p2-batch", "d.tif"): "skipped", ("p2-batch", "gone.tif"): "failed"}
    for key, row in rows.items():
        assert row["objects"] == runs["batch_csv"][key]["objects"]


def test_current_image_script_replaces_the_objects_of_the_whole_image(runs, reference):
    before, after = runs["after_second"]["p1"], runs["after_current"]["p1"]
    assert after["b.tif"] == before["b.tif"], "-i a.tif: the other image is left alone"
    assert "a.tif" in runs["current"].stdout
    image = after["a.tif"]
    # the whole image (nothing selected): the annotations stay, earlier detections are replaced, not added to; QuPath
    # puts each nucleus under the annotation that holds it
    assert {a["name"] for a in image["annotations"]} == set(REGIONS)
    whole = reference["a.tif", None]
    assert image["detections"] == len(whole) > before["a.tif"]["detections"]
    in_annotations = sum(a["detections"]["count"] for a in image["annotations"])
    assert in_annotations + image["unparented"]["count"] == len(whole)
    everywhere = np.array(sorted(map(tuple, image["unparented"]["centroids"] + [
        xy for a in image["annotations"] for xy in a["detections"]["centroids"]]))).reshape(-1, 2)
    np.testing.assert_allclose(everywhere, centroids(whole), atol=0.01)
