"""Seam-free merging of per-tile objects."""

from cellbridge.merge.seams import SeamMerger, iou, merge_tiles

__all__ = ["SeamMerger", "iou", "merge_tiles"]
