"""Merging across tiles: objects seam-free (`SeamMerger`), regions by blending class probabilities
(`merge.regions.RegionMerger`)."""

from cellbridge.merge.seams import SeamMerger, iou, merge_tiles

__all__ = ["SeamMerger", "iou", "merge_tiles"]
