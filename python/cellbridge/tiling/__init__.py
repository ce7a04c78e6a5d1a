"""Tile planning over ROI ∩ tissue, and tissue detection."""

from cellbridge.tiling.plan import Rect, Tile, TilePlan, plan_tiles
from cellbridge.tiling.tissue import TissueMask, detect_tissue, tissue_mask_from_rgb

__all__ = ["Rect", "Tile", "TilePlan", "TissueMask", "detect_tissue", "plan_tiles", "tissue_mask_from_rgb"]
