"""Reading a folder of images labelled with nucleus centre points (e.g. EndoNuke) into the internal `Dataset`.

Layout: `images/<id>.png` and `points/<id>.json` holding `{"points": [{"x": .., "y": .., "class": ..}, ...]}` in
image pixels (origin top-left), and no `labels/` folder (that is the DSB layout, with outlines). Every point is a
nucleus; its `class` (tissue compartment in EndoNuke) is kept as `Annotation.point_class` but the nuclei are one
class, `Nucleus`, because training from points teaches where nuclei are, not their outlines.

The split is fixed by image id so that training and evaluation never share an image: numeric ids divisible by 5
form the test split (ids that are not numbers go by a stable hash of the name).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from cellbridge.datasets.records import Annotation, Dataset, ImageRecord
from cellbridge.errors import DatasetError

NUCLEUS = "Nucleus"
SPLITS = ("train", "test", "all")
POINT_BOX = 4.0  # half-size (px) of the box recorded around each point


def is_point_folder(path: str | Path) -> bool:
    """Whether `path` holds `images/` and `points/` but no `labels/` (centre points only)."""
    path = Path(path)
    return (path / "images").is_dir() and (path / "points").is_dir() and not (path / "labels").is_dir()


def in_test_split(name: str) -> bool:
    """The fixed test split: numeric ids divisible by 5 (other names: a stable hash, one in five)."""
    key = int(name) if name.isdigit() else zlib.crc32(name.encode())
    return key % 5 == 0


def point_names(folder: str | Path, split: str = "all") -> list[str]:
    """Image ids of a point folder in the given split (train, test or all), sorted."""
    folder = Path(folder)
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not is_point_folder(folder):
        raise DatasetError(f"{folder}: expected images/ and points/ folders (centre points, no labels/)")
    names = sorted(p.stem for p in (folder / "images").glob("*.png") if (folder / "points" / f"{p.stem}.json").is_file())
    if split != "all":
        names = [n for n in names if in_test_split(n) == (split == "test")]
    if not names:
        raise DatasetError(f"{folder}: no images with points in split {split!r}")
    return names


def read_points(path: str | Path) -> tuple[np.ndarray, list[str], tuple[int, int] | None]:
    """Centres (n, 2) as x, y, their classes and the (width, height) the file states (None if absent)."""
    try:
        data = json.loads(Path(path).read_text())
        points = data["points"] if isinstance(data, dict) else data
        xy = np.array([[float(p["x"]), float(p["y"])] if isinstance(p, dict) else [float(p[0]), float(p[1])]
                       for p in points], float).reshape(-1, 2)
        classes = [str(p.get("class", NUCLEUS)) if isinstance(p, dict) else NUCLEUS for p in points]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise DatasetError(f"{path}: not a points file ({error})") from None
    if not np.isfinite(xy).all():
        raise DatasetError(f"{path}: points must be finite numbers")
    size = (int(data["width"]), int(data["height"])) if isinstance(data, dict) and "width" in data else None
    return xy, classes, size


def read_point_folder(folder: str | Path, split: str = "all", label: str = NUCLEUS) -> Dataset:
    """The images of a point folder as a one-class `Dataset` of point annotations (whole images annotated)."""
    import cv2

    folder = Path(folder)
    images = []
    for name in point_names(folder, split):
        image_path = folder / "images" / f"{name}.png"
        xy, _, size = read_points(folder / "points" / f"{name}.json")
        if size is None:
            image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise DatasetError(f"{folder}: cannot read images/{name}.png")
            size = (image.shape[1], image.shape[0])
        width, height = size
        annotations = [Annotation(label, (x - POINT_BOX, y - POINT_BOX, x + POINT_BOX, y + POINT_BOX), point=(x, y))
                       for x, y in xy]
        images.append(ImageRecord(image_path, width, height, annotations, name=name))
    return Dataset(images, [label])
