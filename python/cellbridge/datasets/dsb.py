"""Reading a folder laid out as the 2018 Data Science Bowl release into the internal `Dataset`.

Layout: `images/<id>.png` (RGB or gray), `labels/<id>.png` (uint16 instance labels, 0 = background),
optional `manifest.csv` with `name` and `modality` columns (e.g. `brightfield-histology`, `fluorescence`). The
nuclei carry no class: every one becomes an annotation of class `label` ("Nucleus" unless told) whose polygon
traces its label's pixel edges (`geometry.label_polygons`), so it rasterises back to the label image.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2

from cellbridge.datasets.records import Annotation, Dataset, ImageRecord
from cellbridge.errors import DatasetError
from cellbridge.geometry import label_polygons

NUCLEUS = "Nucleus"


def is_dsb_folder(path: str | Path) -> bool:
    """Whether `path` is a folder with `images/` and `labels/` (the DSB layout)."""
    path = Path(path)
    return (path / "images").is_dir() and (path / "labels").is_dir()


def dsb_modalities(folder: str | Path) -> dict[str, str]:
    """Image id → modality from the folder's `manifest.csv` (empty when there is none)."""
    manifest = Path(folder) / "manifest.csv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as handle:
        return {row["name"]: row.get("modality", "") or "" for row in csv.DictReader(handle)}


def dsb_names(folder: str | Path, only: list[str] | None = None, modality: str | None = None) -> list[str]:
    """Image ids of a DSB folder, optionally only the named ones or those whose modality contains
    `modality`."""
    folder = Path(folder)
    if not is_dsb_folder(folder):
        raise DatasetError(f"{folder}: expected images/ and labels/ folders (DSB 2018 layout)")
    names = sorted(p.stem for p in (folder / "images").glob("*.png"))
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise DatasetError(f"{folder}: no image(s) named {', '.join(missing[:5])}")
        names = [n for n in names if n in set(only)]
    if modality:
        modalities = dsb_modalities(folder)
        if not modalities:
            raise DatasetError(f"{folder}: --modality needs a manifest.csv with a modality column")
        names = [n for n in names if modality.lower() in modalities.get(n, "").lower()]
    if not names:
        raise DatasetError(f"{folder}: no images selected (check the modality / ids)")
    return names


def read_dsb_folder(folder: str | Path, *, only: list[str] | None = None, modality: str | None = None,
                    label: str = NUCLEUS, min_area: int = 1) -> Dataset:
    """The images of a DSB-style folder as a one-class `Dataset` (whole images annotated)."""
    folder = Path(folder)
    images = []
    for name in dsb_names(folder, only=only, modality=modality):
        image_path = folder / "images" / f"{name}.png"
        labels = cv2.imread(str(folder / "labels" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        if labels is None:
            raise DatasetError(f"{folder}: cannot read labels/{name}.png")
        if labels.ndim != 2:
            raise DatasetError(f"{folder}: labels/{name}.png must be a one-channel instance label image")
        height, width = labels.shape
        annotations = []
        for _, polygon in sorted(label_polygons(labels.astype("int32"), min_area=min_area).items()):
            x0, y0, x1, y1 = polygon.bounds
            annotations.append(Annotation(label, (x0, y0, x1, y1), geometry=polygon))
        images.append(ImageRecord(image_path, width, height, annotations, name=name))
    return Dataset(images, [label])
