"""Mask R-CNN built from model.json (run by `cellbridge.engines.instance.MaskRCNNEngine`): the Faster R-CNN of
`cellbridge.networks.detector` (same builders, backbones and `params`) with torchvision's mask branch added.

Architectures: `maskrcnn_resnet50_fpn` (torchvision's), `maskrcnn_mobilenet_v3_large_fpn`, and the compact
`maskrcnn_tiny` / `maskrcnn_small` (trainable from scratch on a CPU). Extra `params`: `mask_layers` (the mask
head's convolution widths; default torchvision's [256]*4, [64, 64] for the compact ones), `mask_dim_reduced` (the
predictor's width, default the last layer's) and `mask_roi_size` (14).
"""

from __future__ import annotations

import dataclasses

import torch
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from cellbridge.engines.instance import MaskRCNNEngine
from cellbridge.engines.registry import architecture
from cellbridge.models.package import ModelSpec
from cellbridge.networks.detector import build_detector

# Mask R-CNN architecture → its Faster R-CNN twin in networks/detector.py
MASK_RCNN_BOXES = {"maskrcnn_resnet50_fpn": "fasterrcnn_resnet50_fpn",
                   "maskrcnn_mobilenet_v3_large_fpn": "fasterrcnn_mobilenet_v3_large_fpn",
                   "maskrcnn_tiny": "fasterrcnn_tiny", "maskrcnn_small": "fasterrcnn_small"}
MASK_KEYS = ("mask_layers", "mask_dim_reduced", "mask_roi_size")


@architecture(*MASK_RCNN_BOXES, engine=MaskRCNNEngine)
def build_mask_rcnn(spec: ModelSpec) -> torch.nn.Module:
    """The untrained Mask R-CNN model.json describes: `build_detector`'s Faster R-CNN plus the mask branch.

    torchvision's `MaskRCNN` is `FasterRCNN` with three more modules on `roi_heads`; they are added here, so the
    parameter names are torchvision's (a `maskrcnn_resnet50_fpn` state dict loads as is).
    """
    if spec.architecture not in MASK_RCNN_BOXES:
        raise ValueError(f"{spec.architecture!r} is not a Mask R-CNN architecture")
    params = {k: v for k, v in spec.params.items() if k not in MASK_KEYS}
    model = build_detector(dataclasses.replace(spec, architecture=MASK_RCNN_BOXES[spec.architecture],
                                               params=params))
    compact = spec.architecture in ("maskrcnn_tiny", "maskrcnn_small")
    layers = [int(v) for v in spec.params.get("mask_layers", [64, 64] if compact else [256] * 4)]
    if not layers:
        raise ValueError("'mask_layers' needs at least one width")
    reduced = int(spec.params.get("mask_dim_reduced", layers[-1]))
    names = model.roi_heads.box_roi_pool.featmap_names
    model.roi_heads.mask_roi_pool = MultiScaleRoIAlign(names, int(spec.params.get("mask_roi_size", 14)), 2)
    model.roi_heads.mask_head = MaskRCNNHeads(model.backbone.out_channels, layers, 1)
    model.roi_heads.mask_predictor = MaskRCNNPredictor(layers[-1], reduced, len(spec.classes) + 1)
    return model
