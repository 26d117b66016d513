"""The one preprocessing of images for the image tower, used by inspection, training and evaluation.

An RGB uint8 image (H, W, 3) is resized (INTER_AREA when shrinking, INTER_CUBIC when enlarging) to
the tower's input: square `image_size` for the open_clip towers, or, for the EfficientNet tower
(`keep_aspect`), about image_size**2 pixels with the image's own aspect ratio and sides that are
multiples of 32. Then scaled to [0, 1] and normalised with the preset's mean and std.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from iadgpt.config import ImageInput

MAX_ASPECT = 4.0  # a longer part is fed as 4:1 (slightly squashed) rather than as a sliver


def input_shape(height: int, width: int, spec: ImageInput) -> tuple[int, int]:
    """(H', W') the tower sees for an image of height x width."""
    side = spec.image_size
    if not spec.keep_aspect:
        return side, side
    aspect = min(max(width / max(height, 1), 1 / MAX_ASPECT), MAX_ASPECT)
    m = spec.multiple
    h = max(m, int(round(side / math.sqrt(aspect) / m)) * m)
    w = max(m, int(round(side * math.sqrt(aspect) / m)) * m)
    return h, w


def resize_rgb(rgb: np.ndarray, shape: tuple[int, int], interpolation: str = "bicubic") -> np.ndarray:
    """rgb (H, W, 3) uint8 -> (shape[0], shape[1], 3): INTER_AREA to shrink (antialiased), the checkpoint's
    interpolation (bicubic or bilinear) to enlarge."""
    h, w = shape
    if rgb.shape[:2] == (h, w):
        return rgb
    enlarge = cv2.INTER_LINEAR if interpolation == "bilinear" else cv2.INTER_CUBIC
    interp = cv2.INTER_AREA if h * w <= rgb.shape[0] * rgb.shape[1] else enlarge
    return cv2.resize(rgb, (w, h), interpolation=interp)


def normalise(resized: np.ndarray, spec: ImageInput) -> torch.Tensor:
    """RGB uint8 (H', W', 3) at the tower's input size -> (3, H', W') float32, normalised."""
    x = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float().div_(255)  # (3, H', W')
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return (x - mean) / std


def preprocess(rgb: np.ndarray, spec: ImageInput, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> the tower's input batch of one (1, 3, H', W')."""
    x = normalise(resize_rgb(rgb, input_shape(rgb.shape[0], rgb.shape[1], spec), spec.interpolation), spec)
    return x.unsqueeze(0).to(device=device, dtype=dtype)
