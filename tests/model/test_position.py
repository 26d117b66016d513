"""Tests of anomaly positions (iadgpt.position): the 3x3 grid, map regions, and the spoken phrase."""

from __future__ import annotations

import numpy as np
import pytest

from iadgpt.position import (
    GRID,
    POSITIONS,
    anomaly_regions,
    grid_position,
    positions_phrase,
    region_threshold,
)

H, W = 90, 120  # deliberately not square: rows and columns must not be mixed up
SIGMA = 4.0


def gaussian(cy: float, cx: float, amplitude: float = 1.0, sigma: float = SIGMA,
             shape: tuple[int, int] = (H, W)) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float32)
    return (amplitude * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))).astype(np.float32)


def bbox_contains(bbox: tuple[int, int, int, int], y: float, x: float) -> bool:
    bx, by, bw, bh = bbox
    return bx <= x < bx + bw and by <= y < by + bh


# --------------------------------------------------------------------------------------------------
# grid_position


def test_positions_lists_the_nine_cells_row_by_row():
    assert len(POSITIONS) == 9 == len(set(POSITIONS))
    assert POSITIONS[0] == "top left" and POSITIONS[4] == "center" and POSITIONS[8] == "bottom right"


@pytest.mark.parametrize("row", range(3))
@pytest.mark.parametrize("col", range(3))
def test_centre_of_each_third_is_its_cell(row, col):
    y = (row + 0.5) * H / 3
    x = (col + 0.5) * W / 3
    assert grid_position(y, x, H, W) == GRID[row][col]


@pytest.mark.parametrize(
    ("y", "x", "expected"),
    [
        pytest.param(0, 0, "top left", id="origin"),
        pytest.param(0, W - 1, "top right", id="top-right-pixel"),
        pytest.param(H - 1, 0, "bottom left", id="bottom-left-pixel"),
        pytest.param(H - 1, W - 1, "bottom right", id="bottom-right-pixel"),
        pytest.param(H, W, "bottom right", id="far-corner-on-the-border"),
        pytest.param(0, W / 2, "top", id="top-edge-middle"),
        pytest.param(H - 1, W / 2, "bottom", id="bottom-edge-middle"),
        pytest.param(H / 2, 0, "left", id="left-edge-middle"),
        pytest.param(H / 2, W - 1, "right", id="right-edge-middle"),
        pytest.param(H / 3, W / 3, "center", id="first-thirds-line-starts-the-middle"),
        pytest.param(H / 3 - 0.01, W / 3 - 0.01, "top left", id="just-before-first-thirds-line"),
        pytest.param(2 * H / 3, 2 * W / 3, "bottom right", id="second-thirds-line-starts-the-last"),
        pytest.param(-3, -3, "top left", id="outside-before-clamped"),
        pytest.param(H + 50, W + 50, "bottom right", id="outside-after-clamped"),
    ],
)
def test_corners_and_borders(y, x, expected):
    assert grid_position(y, x, H, W) == expected


def test_rows_follow_y_and_columns_follow_x():
    assert grid_position(5, W - 5, H, W) == "top right"
    assert grid_position(H - 5, 5, H, W) == "bottom left"


# --------------------------------------------------------------------------------------------------
# anomaly_regions


BLOBS = [  # (cy, cx, amplitude, expected position) - each in its own grid cell
    (45, 60, 1.0, "center"),
    (75, 100, 0.9, "bottom right"),
    (15, 20, 0.8, "top left"),
]


def test_regions_of_several_blobs_are_found_strongest_first():
    anomaly_map = sum(gaussian(cy, cx, a) for cy, cx, a, _ in BLOBS)
    regions = anomaly_regions(anomaly_map)
    assert [r.position for r in regions] == [p for *_, p in BLOBS]
    peaks = [r.peak for r in regions]
    assert peaks == sorted(peaks, reverse=True)
    for region, (cy, cx, amplitude, _) in zip(regions, BLOBS, strict=True):
        assert region.peak == pytest.approx(amplitude, abs=1e-3)
        assert region.centroid == pytest.approx((cy, cx), abs=0.5)
        # the bbox covers the blob's core and stays near it
        bx, by, bw, bh = region.bbox
        assert bbox_contains(region.bbox, cy, cx)
        core = gaussian(cy, cx, amplitude) >= 0.8 * amplitude
        ys, xs = np.nonzero(core)
        assert bx <= xs.min() and xs.max() < bx + bw
        assert by <= ys.min() and ys.max() < by + bh
        assert bx >= cx - 3 * SIGMA and bx + bw <= cx + 3 * SIGMA + 1
        assert by >= cy - 3 * SIGMA and by + bh <= cy + 3 * SIGMA + 1
        assert 0 < region.area <= bw * bh


def test_order_follows_strength_not_place():
    """The weakest blob first in reading order still comes last."""
    anomaly_map = gaussian(15, 20, 0.6) + gaussian(75, 100, 1.0)
    regions = anomaly_regions(anomaly_map)
    assert [r.position for r in regions] == ["bottom right", "top left"]


@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_flat_map_has_no_regions(value):
    anomaly_map = np.full((H, W), value, dtype=np.float32)
    assert anomaly_regions(anomaly_map) == []
    assert region_threshold(anomaly_map) > anomaly_map.max()


@pytest.mark.parametrize("seed", range(5))
def test_low_noise_with_one_strong_blob_gives_one_region_at_the_blob(seed):
    rng = np.random.default_rng(seed)
    anomaly_map = rng.uniform(0.0, 0.05, (H, W)).astype(np.float32) + gaussian(20, 100, 1.0)
    regions = anomaly_regions(anomaly_map)
    assert len(regions) == 1
    assert regions[0].position == "top right"
    assert bbox_contains(regions[0].bbox, 20, 100)
    assert regions[0].centroid == pytest.approx((20, 100), abs=1.0)


def test_blob_on_the_image_border_is_found_in_that_corner():
    anomaly_map = gaussian(H - 1, W - 1, 1.0)
    regions = anomaly_regions(anomaly_map)
    assert len(regions) == 1
    assert regions[0].position == "bottom right"
    bx, by, bw, bh = regions[0].bbox
    assert bx + bw == W and by + bh == H


def test_tiny_speck_below_min_area_is_ignored():
    anomaly_map = gaussian(45, 60, 1.0)
    anomaly_map[5, 5] = 1.0  # a single hot pixel
    positions = [r.position for r in anomaly_regions(anomaly_map, min_area_fraction=0.001)]
    assert positions == ["center"]


def test_threshold_is_scale_and_offset_invariant():
    base = gaussian(45, 60, 1.0) + gaussian(75, 100, 0.7)
    reference = anomaly_regions(base)
    shifted = anomaly_regions(base * 3.0 + 10.0)
    assert [(r.position, r.bbox, r.area) for r in shifted] == [(r.position, r.bbox, r.area) for r in reference]


def test_region_scaled_to_the_image_keeps_its_place():
    """A region found on the small encoder map, scaled to the image it came from."""
    region = anomaly_regions(gaussian(15, 20, 1.0))[0]
    big = region.scaled(4.0, 2.5)
    assert big.position == region.position == "top left"
    assert big.peak == region.peak
    assert big.centroid == pytest.approx((region.centroid[0] * 4.0, region.centroid[1] * 2.5))
    x, y, w, h = region.bbox
    assert big.bbox == (round(x * 2.5), round(y * 4.0), round(w * 2.5), round(h * 4.0))
    assert big.area == round(region.area * 10.0)
    assert bbox_contains(big.bbox, 15 * 4.0, 20 * 2.5)
    # on the scaled image the centroid still lies in the same grid cell
    assert grid_position(*big.centroid, H * 4, W * 5 // 2) == big.position


def test_region_scaled_down_never_loses_its_box():
    region = anomaly_regions(gaussian(45, 60, 1.0))[0]
    small = region.scaled(0.01, 0.01)
    assert small.bbox[2] >= 1 and small.bbox[3] >= 1


# --------------------------------------------------------------------------------------------------
# positions_phrase


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        ([], ""),
        (["top left"], "top left"),
        (["top left", "center"], "top left and center"),
        (["top", "left", "bottom right"], "top, left and bottom right"),
        (["a", "b", "c", "d"], "a, b, c and d"),
        (["center", "center"], "center"),
        (["top", "left", "top"], "top and left"),
        (["right", "top", "right", "bottom", "top"], "right, top and bottom"),
    ],
)
def test_positions_phrase(positions, expected):
    assert positions_phrase(positions) == expected
