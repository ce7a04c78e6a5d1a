"""Training and evaluation datasets: one internal type, read from and written to COCO, Pascal VOC and tiles."""

from cellbridge.datasets.coco import read_coco, write_coco
from cellbridge.datasets.records import Annotation, Dataset, ImageRecord
from cellbridge.datasets.voc import read_voc

__all__ = ["Annotation", "Dataset", "ImageRecord", "read_coco", "read_voc", "write_coco"]
