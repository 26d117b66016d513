"""Drawing the anomaly map over the image (numpy in, numpy/QImage out)."""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtGui import QImage

from iadgpt.position import region_threshold


def heatmap_overlay(rgb: np.ndarray, anomaly_map: np.ndarray, opacity: float) -> np.ndarray:
    """Blend a JET heat map of the anomaly map (0 blue .. 1 red) over the image."""
    m = np.clip(anomaly_map, 0.0, 1.0)
    if m.shape != rgb.shape[:2]:
        m = cv2.resize(m, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]  # BGR -> RGB
    # Weight by the map itself too, so normal areas stay readable and anomalies stand out.
    alpha = (opacity * (0.35 + 0.65 * m))[..., None]
    return (rgb * (1 - alpha) + colours * alpha).astype(np.uint8)


def outline_overlay(rgb: np.ndarray, anomaly_map: np.ndarray, opacity: float,
                    colour: tuple[int, int, int] = (255, 40, 40)) -> np.ndarray:
    """Outline the anomalous regions (same border rule as the reported regions)."""
    m = anomaly_map
    if m.shape != rgb.shape[:2]:
        m = cv2.resize(m, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    binary = (m >= region_threshold(m)).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = rgb.copy()
    thickness = outline_width(rgb.shape[:2])
    cv2.drawContours(out, contours, -1, colour, thickness)
    return cv2.addWeighted(out, max(opacity, 0.5), rgb, 1 - max(opacity, 0.5), 0)


def outline_width(size: tuple[int, int]) -> int:
    """Outline thickness in image pixels: visible at fit-to-window size (about 3 screen pixels)."""
    return max(2, round(min(size) / 100))


def render(rgb: np.ndarray, anomaly_map: np.ndarray | None, *, mode: str = "heatmap", opacity: float = 0.45,
           visible: bool = True) -> np.ndarray:
    if anomaly_map is None or not visible or opacity <= 0:
        return rgb
    if mode == "outline":
        return outline_overlay(rgb, anomaly_map, opacity)
    return heatmap_overlay(rgb, anomaly_map, opacity)


def to_qimage(rgb: np.ndarray) -> QImage:
    """An owned QImage copy of an RGB uint8 array (safe after the array is gone)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
