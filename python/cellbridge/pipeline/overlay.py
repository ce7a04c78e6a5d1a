"""The overlay PNG of a run: objects outlined over a downsampled view of the slide, with a legend of counts.

Outlines use a display palette chosen to stand out from what slides look like (hematoxylin blue-purple, eosin
pink, DAB brown, pale glass): cyan, yellow, green, orange, magenta, azure, red; unclassified objects in black.
The GeoJSON keeps each class's own colour (QuPath's); only the picture uses the palette. Cells are drawn with
their boundary and their nucleus.

    drawer = OverlayDrawer(slide, classes=["Immune cells", "Stroma", "Tumor"])
    for obj in objects:
        drawer.draw(obj)
    drawer.save("overlay.png")
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from cellbridge.errors import CellBridgeError
from cellbridge.geometry import polygons_of
from cellbridge.objects import RGB, PathObject

PALETTE: tuple[RGB, ...] = ((0, 230, 255), (255, 255, 0), (0, 230, 0), (255, 150, 0), (255, 0, 255), (0, 120, 255),
                           (255, 0, 0))
UNCLASSIFIED_COLOUR: RGB = (0, 0, 0)
INTENSITY_COLOURS: dict[str, RGB] = {"Negative": (0, 230, 255), "1+": (255, 255, 0), "2+": (255, 150, 0),
                                     "3+": (255, 0, 0), "Positive": (255, 0, 0)}
UNCLASSIFIED = "Unclassified"
FONT = cv2.FONT_HERSHEY_SIMPLEX


def overlay_colour(name: str | None, classes: Sequence[str]) -> RGB:
    """The display colour of a class: intensity classes (and derived `Tumor: 2+`) by their grade, a model's
    classes by their position in `classes`, any other class by a stable pick from the palette."""
    if name is None:
        return UNCLASSIFIED_COLOUR
    last = name.split(":")[-1].strip()
    if last in INTENSITY_COLOURS:
        return INTENSITY_COLOURS[last]
    if name in classes:
        return PALETTE[list(classes).index(name) % len(PALETTE)]
    return PALETTE[sum(name.encode("utf-8")) % len(PALETTE)]


class OverlayDrawer:
    """Objects drawn over a downsampled view of the slide, outlined in display colours, counted for the legend."""

    def __init__(self, slide, max_side: int = 2048, classes: Sequence[str] = ()) -> None:
        rgb, self.downsample = slide.thumbnail(max_side)
        self.canvas = np.ascontiguousarray(rgb)
        self.classes = list(classes)
        self.counts: Counter[str] = Counter()
        self.colours: dict[str, RGB] = {}

    def draw(self, obj: PathObject) -> None:
        """Outline the object (a cell: its boundary and its nucleus); a point or a tiny object as a dot."""
        name = obj.class_name
        colour = overlay_colour(name, self.classes)
        self.counts[name or UNCLASSIFIED] += 1
        self.colours.setdefault(name or UNCLASSIFIED, colour)
        shapes = [obj.geometry] if obj.nucleus_geometry is None else [obj.geometry, obj.nucleus_geometry]
        for geometry in shapes:
            polygons = polygons_of(geometry)
            if not polygons:
                c = geometry.centroid
                cv2.circle(self.canvas, (int(c.x / self.downsample), int(c.y / self.downsample)), 2, colour, -1)
                continue
            for polygon in polygons:
                ring = np.round(np.asarray(polygon.exterior.coords) / self.downsample * 4).astype(np.int32)
                cv2.polylines(self.canvas, [ring], True, colour, 1, lineType=cv2.LINE_AA, shift=2)

    def legend(self) -> list[tuple[str, RGB, int]]:
        """(class, colour, count) of every class drawn, most frequent first."""
        return [(name, self.colours[name], count) for name, count in self.counts.most_common()]

    def render(self) -> np.ndarray:
        """The canvas with the legend in its top-left corner (on a white box)."""
        image = self.canvas.copy()
        entries = self.legend()
        if not entries:
            return image
        scale = 0.45 if min(image.shape[:2]) >= 300 else 0.3
        line = int(round(40 * scale))
        texts = [f"{name}: {count}" for name, _, count in entries]
        width = max(cv2.getTextSize(_ascii(t), FONT, scale, 1)[0][0] for t in texts) + line + 12
        height = line * len(entries) + 8
        width, height = min(width, image.shape[1]), min(height, image.shape[0])
        box = image[:height, :width]
        box[:] = (0.25 * box + 0.75 * 255).astype(np.uint8)
        for i, ((_, colour, _), text) in enumerate(zip(entries, texts)):
            y = 4 + line * i
            cv2.rectangle(image, (6, y + 2), (6 + line - 6, y + line - 4), colour, -1)
            cv2.rectangle(image, (6, y + 2), (6 + line - 6, y + line - 4), (0, 0, 0), 1)
            cv2.putText(image, _ascii(text), (line + 6, y + line - 6), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
        return image

    def save(self, path: str | Path) -> None:
        """Write the overlay (PNG, JPEG or TIFF by the suffix), atomically."""
        from cellbridge.io.atomic import atomic_path

        suffix = Path(path).suffix.lower() or ".png"
        if suffix not in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
            raise CellBridgeError(f"{path}: the overlay must be .png, .jpg or .tif")
        with atomic_path(path) as tmp:
            ok, data = cv2.imencode(suffix, cv2.cvtColor(self.render(), cv2.COLOR_RGB2BGR))
            if not ok:
                raise CellBridgeError(f"{path}: cannot encode the overlay image")
            tmp.write_bytes(data.tobytes())


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return text.replace("\u00b5", "u").encode("ascii", "replace").decode("ascii")
