"""Batch runs over QuPath projects without QuPath: read `project.qpproj`, run the pipeline on every image,
write QuPath GeoJSON per image and a CSV of counts per class, resumably (`cellbridge batch`)."""

from cellbridge.batch.counts import CountsRow, CountsTable
from cellbridge.batch.projects import ProjectError, ProjectImage, QuPathProject, read_project
from cellbridge.batch.runner import BatchOptions, BatchSummary, ImageOutcome, run_batch

__all__ = [
    "BatchOptions",
    "BatchSummary",
    "CountsRow",
    "CountsTable",
    "ImageOutcome",
    "ProjectError",
    "ProjectImage",
    "QuPathProject",
    "read_project",
    "run_batch",
]
