"""Faster R-CNN detectors built from model.json (run by `cellbridge.engines.detector.DetectorEngine`).

Architectures (`model.json` field `architecture`), all built with `weights=None` (nothing is downloaded):
- `fasterrcnn_resnet50_fpn` — torchvision's ResNet-50 + FPN (≈41 M parameters, ≈160 MB of weights);
- `fasterrcnn_mobilenet_v3_large_fpn` — torchvision's MobileNetV3-Large + FPN (≈19 M parameters);
- `fasterrcnn_tiny` / `fasterrcnn_small` — a compact ResNet-style backbone (BasicBlocks, BatchNorm) with an FPN
  over strides 4…32, a narrow FPN and box head: trainable from scratch on a CPU. `tiny` (width 16) is for tests,
  `small` (width 32) for real data; both take the same `params`.

`params` (all optional):
- `anchor_sizes`: one list of sizes per feature level, or one flat list (one size per level);
  `aspect_ratios`: one list for all levels, or one list per level;
- `min_size` / `max_size`: unset (the default) means *no resizing*: the model sees tiles at exactly the pixel size
  the pipeline reads them (the model's `downsample`/`mpp` already sets the scale). torchvision's own default
  (`min_size=800`) would upsample a 512 tile to 800 px: slower, and a scale the model was not trained at.
  Set both only to reproduce torchvision's resizing;
- `image_mean` / `image_std`: the normalisation inside the model; default 0 / 1 (none), because
  `preprocessing.mean/std` in model.json already normalises (one place, shared with training);
- `box_score_thresh` (0.05), `box_nms_thresh` (0.5), `box_detections_per_img` (300): the model's own filtering
  before the engine's (see `cellbridge.engines.detector.DEFAULTS`); `rpn_*` / `box_batch_size_per_image`:
  torchvision's sampling settings (lighter defaults for the compact models, see `COMPACT_FRCNN_DEFAULTS`);
- `trainable_backbone_layers`: backbone stages left trainable counting from the top (default: all);
- `fasterrcnn_tiny`/`small` only: `width`, `blocks` (BasicBlocks per stage), `levels` (stages fed to the FPN,
  2–4, finest first from stride 4), `fpn_channels`, `representation_size` (box head width).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    mobilenet_backbone,
    resnet_fpn_backbone,
)
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.models.resnet import BasicBlock
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from cellbridge.engines.detector import DetectorEngine
from cellbridge.engines.registry import architecture
from cellbridge.models.package import ModelSpec

COMPACT = ("fasterrcnn_tiny", "fasterrcnn_small")
COMPACT_DEFAULTS: dict[str, dict[str, Any]] = {
    "fasterrcnn_tiny": {"width": 16, "blocks": [1, 1, 1, 1], "levels": 3, "fpn_channels": 64,
                        "representation_size": 256},
    "fasterrcnn_small": {"width": 32, "blocks": [1, 1, 2, 1], "levels": 4, "fpn_channels": 64,
                         "representation_size": 256},
}
# FasterRCNN keyword arguments a model.json may set, with our defaults where they differ from torchvision's
FRCNN_KEYS = ("box_score_thresh", "box_nms_thresh", "box_detections_per_img", "box_batch_size_per_image",
              "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train",
              "rpn_post_nms_top_n_test", "rpn_batch_size_per_image")
FRCNN_DEFAULTS: dict[str, Any] = {"box_detections_per_img": 300}
# lighter sampling for the compact models: RoIAlign's backward over 512 RoIs per image dominated a CPU step
COMPACT_FRCNN_DEFAULTS: dict[str, Any] = {"box_batch_size_per_image": 128, "rpn_pre_nms_top_n_train": 1000,
                                          "rpn_post_nms_top_n_train": 500, "rpn_pre_nms_top_n_test": 1000,
                                          "rpn_post_nms_top_n_test": 500}
COMMON_KEYS = ("anchor_sizes", "aspect_ratios", "min_size", "max_size", "image_mean", "image_std",
               "trainable_backbone_layers")


class TileTransform(GeneralizedRCNNTransform):
    """torchvision's input transform without the resize: normalise, pad to a multiple of 32 and batch."""

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        return image, target


class CompactBackbone(nn.Module):
    """A small ResNet: a stride-2 stem, then four stages of BasicBlocks at strides 4, 8, 16, 32 (widths w…8w)."""

    def __init__(self, in_channels: int, width: int, blocks: list[int]) -> None:
        super().__init__()
        if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
            raise ValueError(f"'blocks' must list 4 positive block counts, got {blocks!r}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.widths = [width * 2 ** k for k in range(4)]
        cin = width
        for k, (cout, count) in enumerate(zip(self.widths, blocks), start=1):
            shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
            layers = [BasicBlock(cin, cout, stride=2, downsample=shortcut)]
            layers += [BasicBlock(cout, cout) for _ in range(int(count) - 1)]
            setattr(self, f"layer{k}", nn.Sequential(*layers))
            cin = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # only used through IntermediateLayerGetter
        x = self.stem(x)
        for k in range(1, 5):
            x = getattr(self, f"layer{k}")(x)
        return x


def _compact_backbone(spec: ModelSpec, params: dict[str, Any]) -> tuple[BackboneWithFPN, list[str], int]:
    config = {**COMPACT_DEFAULTS[spec.architecture], **{k: params[k] for k in COMPACT_DEFAULTS[spec.architecture]
                                                         if k in params}}
    levels = int(config["levels"])
    if not 2 <= levels <= 4:
        raise ValueError(f"'levels' must be 2, 3 or 4, got {levels}")
    body = CompactBackbone(spec.in_channels, int(config["width"]), [int(b) for b in config["blocks"]])
    _freeze(body, [body.stem, body.layer1, body.layer2, body.layer3, body.layer4],
            params.get("trainable_backbone_layers"))
    names = [str(i) for i in range(levels)]
    backbone = BackboneWithFPN(body, {f"layer{k + 1}": names[k] for k in range(levels)},
                               body.widths[:levels], int(config["fpn_channels"]), extra_blocks=LastLevelMaxPool())
    return backbone, names, int(config["representation_size"])


def _freeze(body: nn.Module, stages: list[nn.Module], trainable: int | None) -> None:
    """Freeze all but the last `trainable` stages (None: all trainable)."""
    if trainable is None:
        return
    if not 0 <= int(trainable) <= len(stages):
        raise ValueError(f"'trainable_backbone_layers' must be within [0, {len(stages)}], got {trainable}")
    for stage in stages[:len(stages) - int(trainable)]:
        for parameter in stage.parameters():
            parameter.requires_grad_(False)


def _replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """The same convolution taking `in_channels` inputs (e.g. one grayscale channel)."""
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, conv.bias is not None)


def _anchor_generator(params: dict[str, Any], levels: int, default_sizes: list[list[int]]) -> AnchorGenerator:
    sizes = params.get("anchor_sizes", default_sizes)
    if sizes and all(isinstance(s, (int, float)) for s in sizes):
        sizes = [[s] for s in sizes]
    if len(sizes) != levels:
        raise ValueError(f"'anchor_sizes' needs {levels} entries (one per feature level), got {len(sizes)}")
    ratios = params.get("aspect_ratios", [0.5, 1.0, 2.0])
    if ratios and all(isinstance(r, (int, float)) for r in ratios):
        ratios = [ratios] * levels
    if len(ratios) != levels:
        raise ValueError(f"'aspect_ratios' needs one list or {levels} lists, got {len(ratios)}")
    return AnchorGenerator(tuple(tuple(int(v) for v in s) for s in sizes),
                           tuple(tuple(float(v) for v in r) for r in ratios))


@architecture("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_small", "fasterrcnn_tiny",
              engine=DetectorEngine)
def build_detector(spec: ModelSpec) -> FasterRCNN:
    """The untrained Faster R-CNN model.json describes (see the module docstring for `params`)."""
    params = dict(spec.params)
    known = set(COMMON_KEYS) | set(FRCNN_KEYS) | (set(COMPACT_DEFAULTS[spec.architecture])
                                                  if spec.architecture in COMPACT else set())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)}")
    num_classes = len(spec.classes) + 1
    defaults = {**FRCNN_DEFAULTS, **(COMPACT_FRCNN_DEFAULTS if spec.architecture in COMPACT else {})}
    kwargs = {**defaults, **{k: params[k] for k in FRCNN_KEYS if k in params}}
    trainable = params.get("trainable_backbone_layers")
    if spec.architecture in COMPACT:
        backbone, names, representation = _compact_backbone(spec, params)
        levels = len(names) + 1  # + the max-pooled level
        default_sizes = [[16 * 2 ** k] for k in range(levels)]
        head = TwoMLPHead(backbone.out_channels * 7 * 7, representation)
        model = FasterRCNN(backbone, num_classes=None, rpn_anchor_generator=_anchor_generator(
            params, levels, default_sizes), box_roi_pool=MultiScaleRoIAlign(names, 7, 2), box_head=head,
            box_predictor=FastRCNNPredictor(representation, num_classes), **kwargs)
    elif spec.architecture == "fasterrcnn_resnet50_fpn":
        backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=nn.BatchNorm2d,
                                       trainable_layers=5 if trainable is None else int(trainable))
        if spec.in_channels != 3:
            backbone.body.conv1 = _replace_first_conv(backbone.body.conv1, spec.in_channels)
        default_sizes = [[32], [64], [128], [256], [512]]  # torchvision's
        model = FasterRCNN(backbone, num_classes=num_classes,
                           rpn_anchor_generator=_anchor_generator(params, 5, default_sizes), **kwargs)
    elif spec.architecture == "fasterrcnn_mobilenet_v3_large_fpn":
        backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True,
                                      norm_layer=nn.BatchNorm2d,
                                      trainable_layers=6 if trainable is None else int(trainable))
        if spec.in_channels != 3:
            first = backbone.body["0"][0]
            backbone.body["0"][0] = _replace_first_conv(first, spec.in_channels)
        default_sizes = [[32, 64, 128, 256, 512]] * 3  # torchvision's
        model = FasterRCNN(backbone, num_classes=num_classes,
                           rpn_anchor_generator=_anchor_generator(params, 3, default_sizes), **kwargs)
    else:
        raise ValueError(f"{spec.architecture!r} is not a detector architecture")
    mean = [float(v) for v in params.get("image_mean", [0.0] * spec.in_channels)]
    std = [float(v) for v in params.get("image_std", [1.0] * spec.in_channels)]
    if len(mean) != spec.in_channels or len(std) != spec.in_channels:
        raise ValueError(f"'image_mean' and 'image_std' need {spec.in_channels} value(s) (in_channels)")
    if ("min_size" in params) != ("max_size" in params):
        raise ValueError("set both 'min_size' and 'max_size' (torchvision resizing) or neither (no resizing)")
    if "min_size" in params:
        model.transform = GeneralizedRCNNTransform(int(params["min_size"]), int(params["max_size"]), mean, std)
    else:
        model.transform = TileTransform(0, 0, mean, std)
    return model
