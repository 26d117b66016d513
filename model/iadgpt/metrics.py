"""Anomaly-detection metrics: image and pixel AUROC, F1-max, AUPRO and answer accuracy.

Pure numpy (plus OpenCV for connected components), exact and fast enough for whole test sets:

* **I-AUROC** (:func:`auroc`): ROC AUC of image-level scores, exact with ties (a tied
  positive/negative pair counts one half), computed from the Mann-Whitney U statistic.
* **P-AUROC** (:func:`pixel_auroc`): the same on every pixel of one class pooled together. The
  per-class values are then averaged over classes by :func:`summarise`.
* **F1-max** (:func:`f1_max`, :func:`pixel_f1_max`): the best F1 over every threshold, where a
  sample is called anomalous when ``score >= threshold``.
* **AUPRO** (:func:`aupro`, :func:`pro_curve`): the MVTec-AD per-region overlap. For a threshold
  ``t``, PRO is the mean over all connected ground-truth regions (8-connectivity, every image of
  the class) of the fraction of the region's pixels with ``map >= t``; FPR is the fraction of all
  normal pixels with ``map >= t``. The PRO-over-FPR curve is integrated from FPR 0 to ``max_fpr``
  (interpolated linearly at exactly ``max_fpr``) and divided by ``max_fpr``, so a perfect map
  scores 1.0 and a constant map scores ``max_fpr / 2``.

All counting is integer; AUROC is the exact ratio of integer counts, so results do not depend on
float accumulation order. Inputs that do not fit raise ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ClassMetrics",
    "answer_accuracy",
    "aupro",
    "auroc",
    "evaluate_class",
    "f1_max",
    "pixel_auroc",
    "pixel_f1_max",
    "pro_curve",
    "roc_curve",
    "summarise",
]

P_AUROC_NOTE = "P-AUROC: pixels pooled per class, then averaged over classes"


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------

def _as_labels(labels: ArrayLike, name: str = "labels") -> np.ndarray:
    """A 1-D boolean array from 0/1 or bool labels."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 (or bools), got values {np.unique(arr)[:10].tolist()}")
    return arr.astype(bool)


def _as_scores(scores: ArrayLike, n: int, name: str = "scores") -> np.ndarray:
    """A 1-D float64 array of ``n`` scores without NaN."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size != n:
        raise ValueError(f"{name} has {arr.size} entries but labels has {n}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    return arr


def _as_map(amap: ArrayLike) -> np.ndarray:
    """A map as a float array; float dtypes are kept (comparisons stay exact), others become float64."""
    arr = np.asarray(amap)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


def _check_pairs(masks: Sequence[ArrayLike], maps: Sequence[ArrayLike]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(bool mask, float map) pairs, checked to be 2-D, the same shape and free of NaN."""
    if len(masks) != len(maps):
        raise ValueError(f"got {len(masks)} masks but {len(maps)} maps")
    if len(masks) == 0:
        raise ValueError("no images given: masks and maps are empty")
    pairs = []
    for i, (mask, amap) in enumerate(zip(masks, maps, strict=True)):
        mask_arr = np.asarray(mask) != 0
        map_arr = _as_map(amap)
        if map_arr.ndim != 2:
            raise ValueError(f"maps[{i}] must be 2-D (H, W), got shape {map_arr.shape}")
        if mask_arr.shape != map_arr.shape:
            raise ValueError(f"masks[{i}] has shape {mask_arr.shape} but maps[{i}] has shape {map_arr.shape}")
        if np.isnan(map_arr).any():
            raise ValueError(f"maps[{i}] contains NaN")
        pairs.append((mask_arr, map_arr))
    return pairs


def _pool_pixels(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted map values of all defect pixels and of all normal pixels."""
    pos = np.concatenate([amap[mask] for mask, amap in pairs])
    neg = np.concatenate([amap[~mask] for mask, amap in pairs])
    return np.sort(pos), np.sort(neg)


# --------------------------------------------------------------------------------------------
# Core computations on sorted positive / negative scores
# --------------------------------------------------------------------------------------------

def _auc_sorted(pos: np.ndarray, neg: np.ndarray) -> float:
    """Exact AUROC = P(pos > neg) + P(pos == neg) / 2 from sorted positive and negative scores."""
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"AUROC needs both classes, got {pos.size} positive and {neg.size} negative samples")
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    not_above = np.searchsorted(neg, pos, side="right")  # negatives below or tied
    twice_wins = int(below.sum(dtype=np.int64)) + int(not_above.sum(dtype=np.int64))
    return twice_wins / (2 * pos.size * neg.size)


def _f1_sorted(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """Best F1 (and its threshold) over every threshold, from sorted positive and negative scores.

    The best threshold is always one of the positive scores: moving any other threshold up to the
    next positive score keeps every true positive and drops false positives. Among equal F1 values
    the highest threshold wins.
    """
    if pos.size == 0:
        raise ValueError("F1 needs at least one positive sample")
    candidates = np.unique(pos)[::-1]  # descending
    n_pos = pos.size
    tp = n_pos - np.searchsorted(pos, candidates, side="left")
    fp = neg.size - np.searchsorted(neg, candidates, side="left")
    f1 = 2.0 * tp / (tp + fp + n_pos)  # = 2PR / (P + R) with P = tp/(tp+fp), R = tp/n_pos
    best = int(np.argmax(f1))
    return float(f1[best]), float(candidates[best])


# --------------------------------------------------------------------------------------------
# Image-level metrics
# --------------------------------------------------------------------------------------------

def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Exact ROC AUC of ``scores`` against 0/1 ``labels`` (1 = anomalous); a tie counts one half.

    Raises ValueError if only one class is present.
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.size)
    return _auc_sorted(np.sort(s[y]), np.sort(s[~y]))


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)`` for plotting, one point per distinct score.

    ``thresholds`` decrease; point ``i`` calls anomalous every sample with ``score >= thresholds[i]``.
    The first point is ``(0, 0)`` with threshold ``+inf``; the last is ``(1, 1)``. The trapezoid
    area under the curve equals :func:`auroc`.
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.size)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"a ROC curve needs both classes, got {n_pos} positive and {n_neg} negative samples")
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    y_sorted = y[order]
    last_of_value = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s_sorted.size - 1]
    tps = np.cumsum(y_sorted, dtype=np.int64)[last_of_value]
    fps = (last_of_value + 1) - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last_of_value]]
    return fpr, tpr, thresholds


def f1_max(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Best F1 over every threshold and that threshold (anomalous when ``score >= threshold``).

    Among thresholds with equal F1 the highest is returned. Raises ValueError without positives.
    """
    y = _as_labels(labels)
    s = _as_scores(scores, y.size)
    return _f1_sorted(np.sort(s[y]), np.sort(s[~y]))


def answer_accuracy(labels: ArrayLike, predicted_defective: Sequence[bool]) -> float:
    """Fraction of images whose yes/no answer ("is it defective?") matches the 0/1 label."""
    y = _as_labels(labels)
    pred = _as_labels(predicted_defective, "predicted_defective")
    if pred.size != y.size:
        raise ValueError(f"predicted_defective has {pred.size} entries but labels has {y.size}")
    if y.size == 0:
        raise ValueError("answer accuracy needs at least one image")
    return float(np.count_nonzero(pred == y) / y.size)


# --------------------------------------------------------------------------------------------
# Pixel-level metrics
# --------------------------------------------------------------------------------------------

def pixel_auroc(masks: Sequence[ArrayLike], maps: Sequence[ArrayLike]) -> float:
    """Exact AUROC over all pixels of the given images pooled together (one class).

    ``masks[i]`` (H, W) is nonzero on defect pixels, ``maps[i]`` (H, W) is the anomaly map of the
    same image; images may differ in size. Raises ValueError on mismatched shapes (naming the
    index) or when the pooled pixels lack defect or normal pixels.
    """
    return _auc_sorted(*_pool_pixels(_check_pairs(masks, maps)))


def pixel_f1_max(masks: Sequence[ArrayLike], maps: Sequence[ArrayLike]) -> tuple[float, float]:
    """Best pixel-level F1 over every threshold on the pooled pixels, and that threshold."""
    return _f1_sorted(*_pool_pixels(_check_pairs(masks, maps)))


def _pro_counts(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """FPR and PRO at each of the ascending ``thresholds`` (predicate ``map >= t``)."""
    n_thr = thresholds.size
    region_values = []
    region_ids = []
    n_regions = 0
    for mask, amap in pairs:
        if not mask.any():
            continue
        n_labels, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        region_values.append(amap[mask])
        region_ids.append(labels[mask].astype(np.int64) - 1 + n_regions)
        n_regions += n_labels - 1
    if n_regions == 0:
        raise ValueError("AUPRO needs at least one defect region, but every mask is empty")
    normal = np.sort(np.concatenate([amap[~mask] for mask, amap in pairs]))
    if normal.size == 0:
        raise ValueError("AUPRO needs normal pixels, but every pixel of every mask is a defect")

    fpr = (normal.size - np.searchsorted(normal, thresholds, side="left")) / normal.size

    values = np.concatenate(region_values)
    order = np.argsort(values)
    values = values[order]
    ids = np.concatenate(region_ids)[order]
    # below[j] = number of defect pixels with value < thresholds[j]; the pixel at sorted position i
    # is >= thresholds[j] exactly when below[j] <= i, so bin k of position i counts those j.
    below = np.searchsorted(values, thresholds, side="left")
    bins = np.repeat(np.arange(n_thr + 1), np.diff(np.r_[0, below, values.size]))
    hist = np.bincount(ids * (n_thr + 1) + bins, minlength=n_regions * (n_thr + 1)).reshape(n_regions, n_thr + 1)
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # pixels of each region >= thresholds[j]
    sizes = hist.sum(axis=1, keepdims=True)
    pro = (above / sizes).mean(axis=0)
    return fpr, pro


def pro_curve(
    masks: Sequence[ArrayLike], maps: Sequence[ArrayLike], thresholds: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, pro)`` at each of ``thresholds`` (in the given order; a pixel is above when ``map >= t``).

    PRO averages, over every 8-connected defect region of every image, the fraction of the region
    above the threshold; FPR is the fraction of all normal pixels above it. Images without defects
    contribute only to FPR.
    """
    pairs = _check_pairs(masks, maps)
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D array, got shape {thr.shape}")
    if np.isnan(thr).any():
        raise ValueError("thresholds contain NaN")
    order = np.argsort(thr, kind="stable")
    fpr_sorted, pro_sorted = _pro_counts(pairs, thr[order])
    fpr = np.empty_like(fpr_sorted)
    pro = np.empty_like(pro_sorted)
    fpr[order] = fpr_sorted
    pro[order] = pro_sorted
    return fpr, pro


def _partial_area(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under ``y(x)`` for ``0 <= x <= x_max``; ``x`` non-decreasing, starting at 0.

    The curve is interpolated linearly at exactly ``x_max``.
    """
    n_in = int(np.searchsorted(x, x_max, side="right"))  # points with x <= x_max
    xs, ys = x[:n_in], y[:n_in]
    if n_in < x.size and xs[-1] < x_max:
        x0, x1, y0, y1 = x[n_in - 1], x[n_in], y[n_in - 1], y[n_in]
        xs = np.r_[xs, x_max]
        ys = np.r_[ys, y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)]
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1])) / 2.0)


def aupro(
    masks: Sequence[ArrayLike], maps: Sequence[ArrayLike], max_fpr: float = 0.3, num_thresholds: int = 200
) -> float:
    """Normalised area under the PRO-over-FPR curve up to ``max_fpr`` (MVTec-AD AUPRO).

    ``num_thresholds`` thresholds span the maps' value range evenly (inclusive), plus the point
    (FPR 0, PRO 0) of a threshold above every value. A perfect map gives 1.0; a constant map gives
    ``max_fpr / 2`` (the curve is the straight line from (0, 0) to (1, 1)).
    """
    return _aupro(_check_pairs(masks, maps), max_fpr, num_thresholds)


def _aupro(pairs: Sequence[tuple[np.ndarray, np.ndarray]], max_fpr: float, num_thresholds: int) -> float:
    """:func:`aupro` on checked (mask, map) pairs."""
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}")
    lo = min(float(amap.min()) for _, amap in pairs)
    hi = max(float(amap.max()) for _, amap in pairs)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"maps must be finite for AUPRO thresholds, got range [{lo}, {hi}]")
    thresholds = np.linspace(lo, hi, num_thresholds)
    fpr, pro = _pro_counts(pairs, thresholds)
    # Highest threshold first: FPR and PRO both rise; the lowest threshold (the minimum) gives (1, 1).
    fpr = np.r_[0.0, fpr[::-1]]
    pro = np.r_[0.0, pro[::-1]]
    return _partial_area(fpr, pro, max_fpr) / max_fpr


# --------------------------------------------------------------------------------------------
# Per-class evaluation and summary
# --------------------------------------------------------------------------------------------

@dataclass
class ClassMetrics:
    """All metrics of one object class (one row of a results table)."""

    class_name: str
    n_images: int
    n_anomalous: int
    i_auroc: float
    p_auroc: float
    aupro: float
    f1_max: float
    pixel_f1_max: float | None = None
    answer_accuracy: float | None = None


_MEAN_FIELDS = ("i_auroc", "p_auroc", "aupro", "f1_max", "pixel_f1_max", "answer_accuracy")


def evaluate_class(
    class_name: str,
    labels: ArrayLike,
    image_scores: ArrayLike,
    masks: Sequence[ArrayLike],
    maps: Sequence[ArrayLike],
    predicted_defective: Sequence[bool] | None = None,
    *,
    max_fpr: float = 0.3,
    num_thresholds: int = 200,
    compute_pixel_f1: bool = True,
) -> ClassMetrics:
    """Every metric of one class: image labels/scores plus per-image masks and anomaly maps.

    ``predicted_defective`` (the model's yes/no answers) is optional; without it
    ``answer_accuracy`` is None. Errors are re-raised as ValueError prefixed with the class name.
    """
    try:
        y = _as_labels(labels)
        scores = _as_scores(image_scores, y.size, "image_scores")
        if len(masks) != y.size:
            raise ValueError(f"got {y.size} labels but {len(masks)} masks")
        pairs = _check_pairs(masks, maps)
        pos_img, neg_img = np.sort(scores[y]), np.sort(scores[~y])
        pos_px, neg_px = _pool_pixels(pairs)
        acc = None if predicted_defective is None else answer_accuracy(y, predicted_defective)
        return ClassMetrics(
            class_name=class_name,
            n_images=int(y.size),
            n_anomalous=int(y.sum()),
            i_auroc=_auc_sorted(pos_img, neg_img),
            p_auroc=_auc_sorted(pos_px, neg_px),
            aupro=_aupro(pairs, max_fpr, num_thresholds),
            f1_max=_f1_sorted(pos_img, neg_img)[0],
            pixel_f1_max=_f1_sorted(pos_px, neg_px)[0] if compute_pixel_f1 else None,
            answer_accuracy=acc,
        )
    except ValueError as exc:
        raise ValueError(f"class {class_name!r}: {exc}") from exc


def summarise(per_class: Sequence[ClassMetrics]) -> dict[str, Any]:
    """Per-class rows plus the unweighted mean over classes of every metric.

    A mean of an optional metric (pixel F1-max, answer accuracy) is None unless every class has it.
    P-AUROC is pooled over the pixels of each class, then averaged over classes.
    """
    if len(per_class) == 0:
        raise ValueError("summarise needs at least one class")
    names = [m.class_name for m in per_class]
    if len(set(names)) != len(names):
        raise ValueError(f"class names repeat: {names}")
    mean: dict[str, float | None] = {}
    for field in _MEAN_FIELDS:
        values = [getattr(m, field) for m in per_class]
        mean[field] = None if any(v is None for v in values) else float(np.mean(values))
    return {
        "classes": [asdict(m) for m in per_class],
        "mean": mean,
        "n_classes": len(per_class),
        "n_images": sum(m.n_images for m in per_class),
        "n_anomalous": sum(m.n_anomalous for m in per_class),
        "notes": P_AUROC_NOTE,
    }
