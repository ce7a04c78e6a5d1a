"""Turning RGB tiles into model input: the preprocessing named in model.json, one implementation for all."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

UNSHARP_SIGMA = 2.0
UNSHARP_AMOUNT = 1.0


def preprocess_image(rgb: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """RGB uint8 (H, W, 3) → float32 (C, H, W) as the model expects.

    `rgb`: scale to [0, 1], then (x - mean) / std per channel when given. `gray_unsharp` (stain-independent): grayscale,
    then an unsharp mask (Gaussian σ `sigma`, weight `amount`) that sharpens cell edges, one channel.
    """
    mode = preprocessing.get("mode", "rgb")
    if mode == "gray_unsharp":
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        blur = cv2.GaussianBlur(gray, (0, 0), float(preprocessing.get("sigma", UNSHARP_SIGMA)))
        amount = float(preprocessing.get("amount", UNSHARP_AMOUNT))
        image = np.clip(gray * (1 + amount) - blur * amount, 0.0, 1.0)[None]
    elif mode == "rgb":
        image = rgb.astype(np.float32).transpose(2, 0, 1) / 255.0
    else:
        raise ValueError(f"unknown preprocessing mode {mode!r}")
    mean, std = preprocessing.get("mean"), preprocessing.get("std")
    if mean is not None and std is not None:
        image = (image - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return np.ascontiguousarray(image, dtype=np.float32)


def to_batch(images: list[np.ndarray], preprocessing: dict[str, Any]) -> torch.Tensor:
    """Preprocess equally sized RGB tiles and stack them into one (B, C, H, W) tensor."""
    return torch.from_numpy(np.stack([preprocess_image(im, preprocessing) for im in images]))
