"""Point-labelled image folders (EndoNuke layout): reading, the fixed split by image, and the real EndoNuke set."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cellbridge.datasets.points import in_test_split, is_point_folder, point_names, read_point_folder, read_points
from cellbridge.errors import DatasetError

ENDONUKE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "endonuke"


def _write_folder(root: Path, entries: dict[str, object], size: tuple[int, int] = (24, 20)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "points").mkdir()
    for name, points in entries.items():
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.zeros((size[1], size[0], 4), np.uint8))
        (root / "points" / f"{name}.json").write_text(json.dumps(points))
    return root


def test_reads_endonuke_dicts_and_bare_lists(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "set", {
        "10": {"width": 24, "height": 20, "points": [{"x": 3.0, "y": 4.5, "class": "stroma"},
                                                     {"x": 7, "y": 1, "class": "epithelium"}]},
        "7": [[1.5, 2.5]],
        "12": {"points": []}})
    assert is_point_folder(folder)
    xy, classes, size = read_points(folder / "points" / "10.json")
    assert np.array_equal(xy, [[3.0, 4.5], [7.0, 1.0]]) and classes == ["stroma", "epithelium"] and size == (24, 20)
    xy, classes, size = read_points(folder / "points" / "7.json")
    assert np.array_equal(xy, [[1.5, 2.5]]) and classes == ["Nucleus"] and size is None
    dataset = read_point_folder(folder)
    records = {r.name: r for r in dataset.images}
    assert set(records) == {"7", "10", "12"} and dataset.classes == ["Nucleus"]
    assert [a.point for a in records["10"].annotations] == [(3.0, 4.5), (7.0, 1.0)]
    assert (records["7"].width, records["7"].height) == (24, 20)  # from the image when the file does not say
    assert records["12"].annotations == []
    (folder / "labels").mkdir()
    assert not is_point_folder(folder)  # with labels/ it is a DSB folder (outlines)


def test_split_holds_out_ids_that_are_multiples_of_five(tmp_path: Path) -> None:
    assert [in_test_split(n) for n in ("1010", "1013", "4785", "4786", "325")] == [True, False, True, False, True]
    folder = _write_folder(tmp_path / "set", {n: [] for n in ["5", "6", "10", "11"]})
    assert point_names(folder, "test") == ["10", "5"] and point_names(folder, "train") == ["11", "6"]
    assert sorted(point_names(folder, "all")) == ["10", "11", "5", "6"]
    with pytest.raises(DatasetError, match="split must be one of"):
        point_names(folder, "val")


@pytest.mark.parametrize("content", ["{not json", json.dumps({"points": [{"x": 1}]}),
                                     json.dumps({"points": [{"x": "nan", "y": 1}]}), json.dumps({"spots": []})])
def test_malformed_points_name_the_file(tmp_path: Path, content: str) -> None:
    folder = _write_folder(tmp_path / "set", {"1": []})
    (folder / "points" / "1.json").write_text(content)
    with pytest.raises(DatasetError, match=r"1\.json: (not a points file|points must be finite)"):
        read_point_folder(folder)


@pytest.mark.skipif(not ENDONUKE.is_dir(), reason="../shared/data/endonuke (EndoNuke IHC points) is not present")
def test_real_endonuke_counts_and_split() -> None:
    everything = read_point_folder(ENDONUKE)
    assert len(everything.images) == 282 and sum(len(r.annotations) for r in everything.images) == 26067
    classes = [c for name in point_names(ENDONUKE) for c in read_points(ENDONUKE / "points" / f"{name}.json")[1]]
    assert {c: classes.count(c) for c in set(classes)} == {"stroma": 19683, "epithelium": 6085, "other": 299}
    test, train = point_names(ENDONUKE, "test"), point_names(ENDONUKE, "train")
    assert (len(test), len(train)) == (64, 218) and all(int(n) % 5 == 0 for n in test)
    assert sum(len(read_points(ENDONUKE / "points" / f"{n}.json")[0]) for n in test) == 5859
    assert all((r.width, r.height) == (200, 200) for r in everything.images)
