"""Where an anomaly is: regions of the anomaly map and their place on a 3x3 grid (paper Fig. 5)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GRID = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)
POSITIONS = tuple(p for row in GRID for p in row)


def grid_position(y: float, x: float, height: int, width: int) -> str:
    """The 3x3 grid cell of a point (y, x) in an image of the given size."""
    row = min(int(3 * y / height), 2)
    col = min(int(3 * x / width), 2)
    return GRID[max(row, 0)][max(col, 0)]


@dataclass(frozen=True)
class Region:
    """A connected anomalous region of the map."""

    position: str
    centroid: tuple[float, float]  # (y, x) in pixels
    bbox: tuple[int, int, int, int]  # (x, y, w, h)
    area: int  # pixels
    peak: float  # highest anomaly value inside

    def scaled(self, sy: float, sx: float) -> Region:
        """The same region on an image sy times taller and sx times wider (position is unchanged)."""
        x, y, w, h = self.bbox
        return Region(self.position, (self.centroid[0] * sy, self.centroid[1] * sx),
                      (round(x * sx), round(y * sy), max(1, round(w * sx)), max(1, round(h * sy))),
                      round(self.area * sx * sy), self.peak)


def region_threshold(anomaly_map: np.ndarray) -> float:
    """Where a region's border lies: Otsu's split of the map, but at least halfway from median to peak.

    Relative to the map itself, so it needs no per-product setting; the halfway floor keeps a flat,
    defect-free map from being cut into noise regions.
    """
    lo, hi = float(anomaly_map.min()), float(anomaly_map.max())
    if hi - lo < 1e-6:
        return hi + 1.0  # a flat map has no region
    scaled = np.round((anomaly_map - lo) / (hi - lo) * 255).astype(np.uint8)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    otsu_value = lo + otsu / 255.0 * (hi - lo)
    median = float(np.median(anomaly_map))
    return max(otsu_value, median + 0.5 * (hi - median))


def anomaly_regions(anomaly_map: np.ndarray, min_area_fraction: float = 0.0005) -> list[Region]:
    """Connected regions above region_threshold, strongest first."""
    return labelled_regions(anomaly_map, min_area_fraction)[0]


def labelled_regions(anomaly_map: np.ndarray, min_area_fraction: float = 0.0005,
                     ) -> tuple[list[Region], np.ndarray | None]:
    """`anomaly_regions`, and the strongest region's pixels (bool mask; None when there is none).

    One threshold and one labelling serve both, so the shape read from the mask is that of the
    region the Position row names.
    """
    height, width = anomaly_map.shape
    binary = (anomaly_map >= region_threshold(anomaly_map)).astype(np.uint8)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    min_area = max(1, int(min_area_fraction * height * width))
    found = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        cx, cy = (float(v) for v in centroids[i])
        peak = float(anomaly_map[y:y + h, x:x + w][labels[y:y + h, x:x + w] == i].max())
        found.append((Region(grid_position(cy, cx, height, width), (cy, cx), (x, y, w, h), area, peak), i))
    found.sort(key=lambda region_label: region_label[0].peak, reverse=True)
    strongest = labels == found[0][1] if found else None
    return [region for region, _ in found], strongest


def positions_phrase(positions: list[str]) -> str:
    """['top left', 'center'] -> 'top left and center' (duplicates dropped, order kept)."""
    unique = list(dict.fromkeys(positions))
    if len(unique) <= 1:
        return unique[0] if unique else ""
    return ", ".join(unique[:-1]) + " and " + unique[-1]
