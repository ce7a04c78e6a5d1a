"""Datasets: Pascal VOC (with real-data quirks) and COCO read into one type; COCO written loads in pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from cellbridge.cli.main import main
from cellbridge.datasets import Annotation, Dataset, ImageRecord, read_coco, read_voc, write_coco
from cellbridge.errors import DatasetError
from pycocotools.coco import COCO
from shapely.geometry import Polygon, box

BCCD = Path(__file__).resolve().parents[3] / "shared" / "data" / "bccd"

VOC_XML = """<annotation><filename>img{n}.jpg</filename><size><width>100</width><height>80</height><depth>3</depth></size>
{objects}</annotation>"""
VOC_OBJECT = "<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"


def make_voc(root: Path, images: dict[int, list[tuple]]) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for n, objects in images.items():
        cv2.imwrite(str(root / "JPEGImages" / f"img{n}.jpg"), np.zeros((80, 100, 3), np.uint8))
        body = "".join(VOC_OBJECT.format(name=o[0], x0=o[1], y0=o[2], x1=o[3], y1=o[4]) for o in objects)
        (root / "Annotations" / f"img{n}.xml").write_text(VOC_XML.format(n=n, objects=body))
    (root / "ImageSets" / "Main" / "train.txt").write_text("img0\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("img1\n")
    return root


def test_voc_quirks_are_handled_without_editing_the_data(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", {
        0: [("RBC", 1, 1, 10, 20),           # 1-based inclusive → [0, 10) x [0, 20)
            (" WBC ", 50, 40, 120, 90),      # crosses the border → clipped; name stripped
            ("RBC", 30, 30, 30, 30),         # degenerate → dropped
            ("RBC", 1, 1, 10, 20),           # listed twice → kept once
            ("RBC", 2, 1, 10, 20)],          # a near-identical second listing (IoU 0.9) → kept once
        1: [("Platelets", 5, 5, 9, 9)],
    })
    dataset = read_voc(root)
    assert dataset.classes == ["Platelets", "RBC", "WBC"]
    first = dataset.images[0]
    assert (first.width, first.height, first.name) == (100, 80, "img0")
    assert [(a.label, a.bbox) for a in first.annotations] == [("RBC", (0, 0, 10, 20)), ("WBC", (49, 39, 100, 80))]
    assert [len(i.annotations) for i in read_voc(root, split="test").images] == [1]
    assert read_voc(root, split="train").images[0].name == "img0"


def test_voc_errors_name_the_problem(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", {0: [("RBC", 1, 1, "ten", 5)]})
    with pytest.raises(DatasetError, match=r"img0.xml: object 0: box coordinate is not a number"):
        read_voc(root)
    with pytest.raises(DatasetError, match=r"no split 'val' \(available: test, train\)"):
        read_voc(root, split="val")
    with pytest.raises(DatasetError, match="not a Pascal VOC folder"):
        read_voc(tmp_path)
    (root / "Annotations" / "img0.xml").write_text("<annotation><filename>img0.jpg")
    with pytest.raises(DatasetError, match="img0.xml: not valid XML"):
        read_voc(root)


@pytest.mark.skipif(not BCCD.exists(), reason="BCCD data (../shared/data/bccd) is not present on this machine")
def test_real_bccd_reads_with_its_splits() -> None:
    everything = read_voc(BCCD)
    assert len(everything.images) == 364 and everything.classes == ["Platelets", "RBC", "WBC"]
    counts = everything.counts()
    # 4,888 boxes listed; 2 are empty and 8 are listed twice (same class, IoU >= 0.9 or identical)
    assert 4870 <= sum(counts.values()) <= 4886
    assert counts["WBC"] >= 370 and counts["Platelets"] >= 355
    assert [len(read_voc(BCCD, split=s).images) for s in ("train", "val", "test")] == [205, 87, 72]
    for image in everything.images:
        for a in image.annotations:
            assert 0 <= a.bbox[0] < a.bbox[2] <= image.width and 0 <= a.bbox[1] < a.bbox[3] <= image.height


def sample_dataset(tmp_path: Path) -> Dataset:
    image_path = tmp_path / "images" / "a.png"
    image_path.parent.mkdir(parents=True)
    cv2.imwrite(str(image_path), np.zeros((64, 96, 3), np.uint8))
    triangle = Polygon([(10, 10), (30, 10), (10, 40)])
    records = [ImageRecord(image_path, 96, 64, [
        Annotation("Tumor", triangle.bounds, triangle),
        Annotation("Lymphocyte", (40.0, 20.0, 52.0, 32.0), None, (46.0, 26.0)),
        Annotation("Tumor", (60.5, 5.25, 90.0, 30.0)),
    ], training_area=box(0, 0, 80, 64))]
    return Dataset(records, ["Tumor", "Lymphocyte"], {"Tumor": (200, 0, 0), "Lymphocyte": (1, 2, 3)})


def test_coco_round_trip_and_pycocotools(tmp_path: Path) -> None:
    dataset = sample_dataset(tmp_path)
    json_path = tmp_path / "coco" / "annotations.json"
    write_coco(dataset, json_path)
    coco = COCO(str(json_path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["Tumor", "Lymphocyte"]
    anns = coco.loadAnns(coco.getAnnIds())
    assert [a["bbox"] for a in anns] == [[10, 10, 20, 30], [40, 20, 12, 12], [60.5, 5.25, 29.5, 24.75]]
    assert anns[0]["area"] == 300 and anns[1]["keypoints"] == [46, 26, 2]
    assert coco.annToMask(anns[0]).sum() == pytest.approx(300, rel=0.15)
    back = read_coco(json_path)
    assert back.classes == dataset.classes and back.colors == dataset.colors
    image = back.images[0]
    assert image.path.resolve() == dataset.images[0].path.resolve()
    assert image.training_area.equals(box(0, 0, 80, 64))
    for a, b in zip(image.annotations, dataset.images[0].annotations):
        assert (a.label, a.bbox, a.point) == (b.label, b.bbox, b.point)
        assert (a.geometry is None) == (b.geometry is None)
        if a.geometry is not None:
            assert a.geometry.symmetric_difference(b.geometry).area < 1e-6


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON (line 1, column 2"),
    ('{"annotations": []}', "not a COCO file"),
    ('{"images": [{"id": 1, "width": 5, "height": 5, "file_name": "a.png"}], "categories": [{"id": 1, "name": "A"}],'
     ' "annotations": [{"image_id": 1, "category_id": 1}]}', "annotation 0: missing 'bbox'"),
    ('{"images": [{"id": 1, "width": 5, "height": 5, "file_name": "a.png"}], "categories": [{"id": 1, "name": "A"}],'
     ' "annotations": [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]}]}', "category_id 7 is not among"),
    ('{"images": [{"id": 1, "width": 5, "height": 5, "file_name": "a.png"}], "categories": [{"id": 1, "name": "A"}],'
     ' "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, "w"]}]}', "bbox must be [x, y, width, height]"),
])
def test_coco_errors_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DatasetError) as error:
        read_coco(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_convert_voc_to_coco_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_voc(tmp_path / "voc", {0: [("RBC", 1, 1, 10, 20)], 1: [("WBC", 5, 5, 50, 50)]})
    out = tmp_path / "out" / "train.json"
    assert main(["convert", str(root), str(out), "--split", "train"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 1 and summary["per_class"] == {"RBC": 1}
    coco = COCO(str(out))
    image = coco.loadImgs(1)[0]
    assert (out.parent / image["file_name"]).resolve() == (root / "JPEGImages" / "img0.jpg").resolve()
    assert main(["convert", str(tmp_path / "missing"), str(out)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_convert_to_geojson_writes_editable_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cellbridge.io.qupath_geojson import read_objects

    root = make_voc(tmp_path / "voc", {0: [("RBC", 1, 1, 10, 20), ("WBC", 50, 40, 90, 70)]})
    assert main(["convert", str(root), str(tmp_path / "labels"), "--to", "geojson"]) == 0
    objects = read_objects(tmp_path / "labels" / "img0.geojson")
    assert [(o.object_type, o.class_name, o.geometry.bounds) for o in objects] == [
        ("annotation", "RBC", (0, 0, 10, 20)), ("annotation", "WBC", (49, 39, 90, 70))]
