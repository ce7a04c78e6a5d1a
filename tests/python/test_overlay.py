"""The overlay PNG: colours that stand out from stained tissue, cells with boundary and nucleus, a legend."""

from __future__ import annotations

import numpy as np
import pytest
from cellbridge.io.slides import ArraySlide
from cellbridge.objects import PathClass, PathObject
from cellbridge.pipeline.overlay import INTENSITY_COLOURS, PALETTE, OverlayDrawer, overlay_colour
from cellbridge.synth import SynthConfig, build_scene, render_region
from shapely.geometry import Point


@pytest.mark.parametrize("stain", ["he", "ihc-dab"])
def test_every_overlay_colour_stands_out_from_stained_tissue(stain: str) -> None:
    rgb = render_region(build_scene(SynthConfig(width=384, height=384, tissue_fraction=1.0, seed=2, stain=stain)),
                        0, 0, 384, 384).reshape(-1, 3).astype(float)
    tissue = rgb[rgb.min(axis=1) < 220]
    for colour in {*PALETTE, *INTENSITY_COLOURS.values()}:
        nearest = np.linalg.norm(tissue - np.array(colour, float), axis=1).min()
        assert nearest > 120, (colour, nearest)


def test_classes_get_distinct_colours_and_grades_keep_theirs() -> None:
    classes = ["Immune cells", "Stroma", "Tumor"]
    assert len({overlay_colour(c, classes) for c in classes}) == 3
    assert overlay_colour("Tumor: 3+", classes) == overlay_colour("3+", []) == INTENSITY_COLOURS["3+"]


def test_cells_show_boundary_and_nucleus_and_the_legend_counts_each_class() -> None:
    slide = ArraySlide(np.full((200, 300, 3), 235, np.uint8), mpp=0.5)
    drawer = OverlayDrawer(slide, max_side=300, classes=["Immune cells", "Tumor"])
    cell = PathObject(Point(200, 100).buffer(40), "cell", PathClass.of("Tumor"),
                      nucleus_geometry=Point(200, 100).buffer(15))
    drawer.draw(cell)
    drawer.draw(PathObject(Point(250, 160).buffer(8), "detection", PathClass.of("Tumor")))
    drawer.draw(PathObject(Point(120, 150).buffer(8), "detection", PathClass.of("Immune cells")))
    colour = np.array(overlay_colour("Tumor", ["Immune cells", "Tumor"]))
    row = drawer.canvas[100]
    drawn = np.flatnonzero(np.abs(row.astype(int) - colour).sum(axis=1) < 60)
    # left to right along the cell's middle row: cell boundary (x≈160), nucleus (x≈185 and 215), cell (x≈240)
    for x in (160, 185, 215, 240):
        assert np.abs(drawn - x).min() <= 1, (x, drawn)
    assert drawer.legend() == [("Tumor", tuple(colour), 2),
                               ("Immune cells", overlay_colour("Immune cells", ["Immune cells", "Tumor"]), 1)]
    picture = drawer.render()
    corner = picture[:40, :120].astype(int)
    assert (np.abs(corner - colour).sum(axis=2) < 30).any()          # the legend's swatch
    assert (corner.sum(axis=2) < 150).any()                           # and its dark text
    assert np.array_equal(picture[150:, 150:], drawer.canvas[150:, 150:])   # the rest is the drawing
