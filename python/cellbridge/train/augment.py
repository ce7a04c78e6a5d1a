"""Training augmentation shared by every task: one albumentations pipeline whose geometric steps move boxes,
keypoints and masks together with the image, and whose colour steps touch the image only.

Geometric: horizontal/vertical flips and 90° rotations (cells have no orientation), a random rescale (objects
vary in size between scanners and stains). Colour: brightness/contrast/saturation/hue jitter, an H&E stain
jitter in colour-deconvolution space (`HEDJitter`: each of haematoxylin, eosin and DAB optical densities scaled
and shifted a little, the variation between labs' staining), and a light blur (focus).

Use: `aug = build_augmentation(boxes=True)` then
`out = aug(image=rgb, bboxes=boxes_xyxy, labels=labels)` — boxes as pixel (x0, y0, x1, y1); a box mostly pushed
out of the image (less than `min_visibility` of it left) is dropped with its label. A keypoint task passes
`keypoints=True` and `keypoints=…, keypoint_labels=…`; a mask task passes `mask=` or `masks=` (always supported).
Call `reseed(aug, seed)` per sample to make a run reproducible (the loop seeds NumPy per epoch).
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
from skimage.color import hed2rgb, rgb2hed


class HEDJitter(A.ImageOnlyTransform):
    """Stain jitter: in HED optical-density space, each stain × U(1 ± sigma) + U(± bias), back to RGB (uint8)."""

    def __init__(self, sigma: float = 0.05, bias: float = 0.02, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.sigma = sigma
        self.bias = bias

    def get_params(self) -> dict[str, Any]:
        rng = getattr(self, "random_generator", None) or np.random.default_rng()
        return {"alpha": rng.uniform(1 - self.sigma, 1 + self.sigma, 3),
                "beta": rng.uniform(-self.bias, self.bias, 3)}

    def apply(self, img: np.ndarray, alpha: np.ndarray = np.ones(3), beta: np.ndarray = np.zeros(3),
              **params: Any) -> np.ndarray:
        if img.ndim != 3 or img.shape[2] != 3:
            return img
        hed = rgb2hed(img) * alpha + beta
        return np.clip(np.round(hed2rgb(hed) * 255), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma", "bias")


def build_augmentation(*, boxes: bool = False, keypoints: bool = False, flips: bool = True, rot90: bool = True,
                       scale: tuple[float, float] | None = (0.8, 1.25), color: float = 0.15, hue: float = 0.03,
                       stain: float = 0.05, blur: float = 0.2, min_visibility: float = 0.4) -> A.Compose:
    """The training pipeline; `color`, `stain`, `blur` are strengths/probabilities (0 turns a step off).

    `boxes`: expects `bboxes` (pascal_voc pixels) with `labels`; `keypoints`: expects `keypoints` (x, y) with
    `keypoint_labels`. Masks (`mask`, `masks`) always follow the geometric steps.
    """
    steps: list[A.BasicTransform] = []
    if flips:
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if rot90:
        steps.append(A.RandomRotate90(p=0.5))
    if scale is not None:
        steps.append(A.RandomScale(scale_limit=(scale[0] - 1, scale[1] - 1), interpolation=cv2.INTER_LINEAR,
                                   p=0.5))
    if color > 0:
        steps.append(A.ColorJitter(brightness=color, contrast=color, saturation=color, hue=hue, p=0.8))
    if stain > 0:
        steps.append(HEDJitter(sigma=stain, bias=stain / 2.5, p=0.5))
    if blur > 0:
        steps.append(A.GaussianBlur(blur_limit=(3, 5), p=blur))
    kwargs: dict[str, Any] = {}
    if boxes:
        kwargs["bbox_params"] = A.BboxParams(format="pascal_voc", label_fields=["labels"],
                                             min_visibility=min_visibility)
    if keypoints:
        kwargs["keypoint_params"] = A.KeypointParams(format="xy", label_fields=["keypoint_labels"],
                                                     remove_invisible=True)
    return A.Compose(steps, **kwargs)


def reseed(pipeline: A.Compose, seed: int) -> None:
    """Make the next call of `pipeline` reproducible (albumentations ≥ 2 keeps its own generators)."""
    if hasattr(pipeline, "set_random_seed"):
        pipeline.set_random_seed(int(seed))
