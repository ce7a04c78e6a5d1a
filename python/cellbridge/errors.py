"""Errors that reach users: each names the input and the problem in one line."""

from __future__ import annotations


class CellBridgeError(Exception):
    """Base class for errors caused by bad input or configuration (not by bugs)."""


class SlideError(CellBridgeError):
    """A slide or image is missing, unreadable or unsupported."""


class GeoJSONError(CellBridgeError):
    """A GeoJSON file or feature does not follow the QuPath GeoJSON contract."""


class DatasetError(CellBridgeError):
    """A training or evaluation dataset (COCO, Pascal VOC, tiles) is malformed."""


class CorruptSlideError(SlideError):
    """A slide whose format was recognised but whose content is cut short or fails to decode."""


class ModelError(CellBridgeError):
    """A model package is missing, malformed or does not match its weights."""
