"""Classify the detections and cells of QuPath GeoJSON files with a saved classifier (`cellbridge classify`).

QuPath's "Classify detections" command exports the objects, runs this, and reads the classes and
``Class probability: <class>`` measurements back by object id. Either classifier kind works (reference colours or
a trained measurement classifier, see `cellbridge.features.classifiers`); objects keep their ids and geometry.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from cellbridge.errors import CellBridgeError
from cellbridge.features.classifiers import load_classifier
from cellbridge.io.qupath_geojson import read_objects, write_objects

CLASSIFIED_TYPES = ("detection", "cell")


def classify_file(source: str | os.PathLike[str], classifier: str | os.PathLike[str],
                  out: str | os.PathLike[str]) -> dict[str, int]:
    """Classify the detections and cells of `source`; write them (only them) to `out` atomically; count per class."""
    model = load_classifier(classifier)
    objects = [o for o in read_objects(source) if o.object_type in CLASSIFIED_TYPES]
    if not objects:
        raise CellBridgeError(f"{source}: no detections or cells to classify")
    model.predict(objects)
    write_objects(objects, Path(out))
    return dict(sorted(Counter(o.class_name or "Unclassified" for o in objects).items()))
