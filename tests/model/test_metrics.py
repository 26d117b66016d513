"""Tests of the anomaly-detection metrics (I-AUROC, P-AUROC, F1-max, AUPRO, answer accuracy)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from iadgpt.metrics import (
    ClassMetrics,
    answer_accuracy,
    aupro,
    auroc,
    evaluate_class,
    f1_max,
    pixel_auroc,
    pixel_f1_max,
    pro_curve,
    roc_curve,
    summarise,
)


def _tied_data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Random labels and scores quantised to 10 levels, so ties are plentiful."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.random(n) + 0.3 * labels, 1)
    return labels, scores


def _brute_f1(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """F1 at every unique score (anomalous when score >= t); the highest threshold wins ties."""
    best, best_t = -1.0, None
    for t in np.unique(scores)[::-1]:
        pred = scores >= t
        tp = np.sum(pred & (labels == 1))
        fp = np.sum(pred & (labels == 0))
        fn = np.sum(~pred & (labels == 1))
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
        if f1 > best:
            best, best_t = f1, t
    return best, best_t


def _blob_masks(n: int, size: int, seed: int) -> list[np.ndarray]:
    """Masks with 0-3 random rectangles each (about a third of the images are defect-free)."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n):
        mask = np.zeros((size, size), bool)
        for _ in range(rng.integers(0, 4)):
            y, x = rng.integers(0, size - 8, 2)
            h, w = rng.integers(2, max(3, size // 4), 2)
            mask[y:y + h, x:x + w] = True
        masks.append(mask)
    return masks


# ------------------------------------------------------------------------------------------------
# Image-level AUROC and ROC curve
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_auroc_matches_sklearn_with_ties(seed: int) -> None:
    labels, scores = _tied_data(seed)
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_hand_cases() -> None:
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # labels [0, 1, 0, 1], scores [0.1, 0.4, 0.4, 0.8]: the 4 (positive, negative) pairs are
    # (0.4 vs 0.1) win 1, (0.4 vs 0.4) tie 1/2, (0.8 vs 0.1) win 1, (0.8 vs 0.4) win 1 -> 3.5 / 4.
    assert auroc([0, 1, 0, 1], [0.1, 0.4, 0.4, 0.8]) == 0.875
    assert auroc([False, True], [1, 2]) == 1.0


def test_auroc_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both classes"):
        auroc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="0/1"):
        auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="entries"):
        auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0, 1], [0.1, np.nan])


@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_matches_sklearn_and_auroc(seed: int) -> None:
    labels, scores = _tied_data(seed, 200)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert thresholds[0] == np.inf
    np.testing.assert_allclose(thresholds[1:], sk_thr[1:])
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)
    assert area == pytest.approx(auroc(labels, scores), abs=1e-12)


# ------------------------------------------------------------------------------------------------
# F1-max
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_f1_max_matches_brute_force(seed: int) -> None:
    labels, scores = _tied_data(seed, 150)
    best, threshold = f1_max(labels, scores)
    ref_best, ref_threshold = _brute_f1(labels, scores)
    assert best == pytest.approx(ref_best, abs=1e-12)
    assert threshold == ref_threshold


def test_f1_max_hand_case() -> None:
    # Sorted by score: 0.9(+) 0.8(-) 0.7(+) 0.3(-) 0.2(+); 3 positives, so with FN = 3 - TP
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + 3):
    # t=0.9: 2/4 = 0.5; t=0.8: 2/5 = 0.4; t=0.7: 4/6; t=0.3: 4/7; t=0.2: 6/8 = 0.75 (best).
    best, threshold = f1_max([1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.3, 0.2])
    assert best == pytest.approx(0.75)
    assert threshold == 0.2
    assert f1_max([0, 1, 1], [0.1, 0.5, 0.7]) == (1.0, 0.5)
    with pytest.raises(ValueError, match="positive"):
        f1_max([0, 0], [0.1, 0.2])


# ------------------------------------------------------------------------------------------------
# Pixel AUROC
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_pixel_auroc_matches_sklearn_on_pooled_pixels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shapes = [(16, 20), (24, 24), (10, 30), (16, 20)]
    masks = [rng.random(shape) < 0.2 for shape in shapes]
    maps = [np.round(rng.random(mask.shape) + 0.4 * mask, 2) for mask in masks]
    masks[2][:] = False  # a defect-free image still pools its normal pixels
    pooled_labels = np.concatenate([m.ravel() for m in masks])
    pooled_scores = np.concatenate([m.ravel() for m in maps])
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(pooled_labels, pooled_scores), abs=1e-12)
    assert pixel_f1_max(masks, maps) == pytest.approx(_brute_f1(pooled_labels.astype(int), pooled_scores))


def test_pixel_auroc_mixed_dtypes_and_int_masks() -> None:
    mask = np.array([[0, 1], [1, 0]], np.uint8)
    maps = [np.array([[0.1, 0.9], [0.8, 0.2]], np.float32), np.array([[0, 5], [3, 0]])]
    assert pixel_auroc([mask, mask], maps) == 1.0


def test_pixel_inputs_mismatched_shape_name_the_index() -> None:
    masks = [np.zeros((4, 4), bool), np.ones((4, 4), bool)]
    maps = [np.zeros((4, 4)), np.zeros((4, 5))]
    for fn in (pixel_auroc, aupro, pixel_f1_max):
        with pytest.raises(ValueError, match=r"masks\[1\].*maps\[1\]"):
            fn(masks, maps)
    with pytest.raises(ValueError, match=r"masks\[1\]"):
        pro_curve(masks, maps, [0.5])
    with pytest.raises(ValueError, match="2 masks but 1 maps"):
        pixel_auroc(masks, maps[:1])
    with pytest.raises(ValueError, match=r"maps\[0\] must be 2-D"):
        pixel_auroc([np.zeros(4, bool)], [np.zeros(4)])


def test_pixel_auroc_needs_both_kinds_of_pixel() -> None:
    with pytest.raises(ValueError, match="both classes"):
        pixel_auroc([np.zeros((3, 3), bool)], [np.random.default_rng(0).random((3, 3))])


# ------------------------------------------------------------------------------------------------
# PRO curve and AUPRO
# ------------------------------------------------------------------------------------------------

def test_aupro_perfect_map_is_one() -> None:
    masks = _blob_masks(12, 32, seed=1)
    masks[0][:] = False
    masks[1][3:9, 3:9] = True
    maps = [m.astype(np.float32) for m in masks]
    assert aupro(masks, maps) == pytest.approx(1.0, abs=1e-12)
    assert aupro(masks, maps, max_fpr=1.0) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("max_fpr", [0.3, 0.05, 1.0])
def test_aupro_uniform_map_is_half_max_fpr(max_fpr: float) -> None:
    # A constant map c: every threshold equals c, so every pixel is ">= t" and the only sampled
    # point is (FPR 1, PRO 1); with the (0, 0) point of a threshold above every value, the curve
    # is the diagonal PRO = FPR. Its area on [0, m] is m^2 / 2; normalised by m it is m / 2
    # (0.15 for the default max_fpr = 0.3), the chance level of AUPRO.
    masks = _blob_masks(6, 16, seed=2)
    masks[0][2:5, 2:5] = True
    maps = [np.full(m.shape, 0.7) for m in masks]
    assert aupro(masks, maps, max_fpr=max_fpr) == pytest.approx(max_fpr / 2, abs=1e-12)


def test_pro_weights_regions_not_pixels() -> None:
    mask = np.zeros((10, 10), bool)
    amap = np.zeros((10, 10))
    mask[0:2, 0:2] = True  # region A: 4 pixels, all at 1.0
    amap[0:2, 0:2] = 1.0
    mask[5:7, 4:8] = True  # region B: 8 pixels, half at 1.0 and half at 0.5
    amap[5, 4:8] = 1.0
    amap[6, 4:8] = 0.5
    amap[9, 0:5] = 0.5  # 5 of the 88 normal pixels at 0.5
    fpr, pro = pro_curve([mask], [amap], [1.0, 0.5, 0.0, 1.5])
    # t=1.0: A fully, B half -> PRO (1 + 0.5) / 2 = 0.75 (pixel recall would be 8/12), FPR 0.
    # t=0.5: both regions fully, 5 normal pixels; t=0.0: everything; t=1.5: nothing.
    np.testing.assert_allclose(pro, [0.75, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(fpr, [0.0, 5 / 88, 1.0, 0.0])


def test_pro_uses_8_connectivity_and_regions_across_images() -> None:
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = mask[1, 2] = True  # one region when diagonals connect, two otherwise
    amap = np.zeros((4, 4))
    amap[0, 0] = 1.0
    _, pro = pro_curve([mask], [amap], [1.0])
    assert pro[0] == pytest.approx(1 / 3)  # 4-connectivity would give mean(1, 0) = 0.5
    # Regions in different images are separate; a defect-free image only adds normal pixels.
    mask2 = np.zeros((4, 4), bool)
    mask2[3, 3] = True
    amap2 = np.zeros((4, 4))
    amap2[3, 3] = 1.0
    clean_map = np.ones((4, 4))
    fpr, pro = pro_curve([mask, mask2, np.zeros((4, 4), bool)], [amap, amap2, clean_map], [1.0])
    assert pro[0] == pytest.approx((1 / 3 + 1) / 2)
    assert fpr[0] == pytest.approx(16 / (13 + 15 + 16))


@pytest.mark.parametrize("seed", range(3))
def test_pro_curve_matches_naive_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = _blob_masks(8, 20, seed)
    maps = [np.round(rng.random(m.shape) + 0.3 * m, 2) for m in masks]
    thresholds = np.r_[np.linspace(0.0, 1.3, 27), 0.5, 0.25]  # unsorted, with repeats
    regions = []  # (image index, region mask) per 8-connected region
    for i, mask in enumerate(masks):
        n_labels, labelled = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        regions += [(i, labelled == r) for r in range(1, n_labels)]
    n_normal = sum(int((~m).sum()) for m in masks)
    ref_fpr = [sum(int(((a >= t) & ~m).sum()) for m, a in zip(masks, maps, strict=True)) / n_normal
               for t in thresholds]
    ref_pro = [np.mean([(maps[i][r] >= t).mean() for i, r in regions]) for t in thresholds]
    fpr, pro = pro_curve(masks, maps, thresholds)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(pro, ref_pro, atol=1e-12)


def test_aupro_max_fpr_interpolation_is_exact() -> None:
    # 10 normal and 2 defect pixels (one region); map levels 0, 0.5, 1 = the 3 thresholds.
    # t=1.0: 2 normal + 1 defect -> (FPR 0.2, PRO 0.5); t=0.5: 5 normal + both -> (0.5, 1.0);
    # t=0.0: (1, 1); above all: (0, 0). The curve is (0,0) (0.2,0.5) (0.5,1) (1,1).
    mask = np.zeros((3, 4), bool)
    mask[0, 0:2] = True
    amap = np.array([[1.0, 0.5, 1.0, 1.0], [0.5, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    fpr, pro = pro_curve([mask], [amap], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(fpr, [0.2, 0.5, 1.0])
    np.testing.assert_allclose(pro, [0.5, 1.0, 1.0])
    # max_fpr 0.3: PRO(0.3) = 0.5 + 0.5 * (0.1 / 0.3) = 2/3;
    # area = 0.2 * 0.5 / 2 + 0.1 * (0.5 + 2/3) / 2 = 0.05 + 0.058333... = 0.108333...
    assert aupro([mask], [amap], max_fpr=0.3, num_thresholds=3) == pytest.approx((0.05 + 0.1 * (7 / 6) / 2) / 0.3)
    assert aupro([mask], [amap], max_fpr=0.2, num_thresholds=3) == pytest.approx(0.05 / 0.2)  # on a vertex
    assert aupro([mask], [amap], max_fpr=1.0, num_thresholds=3) == pytest.approx(0.05 + 0.3 * 0.75 + 0.5)
    # Extra thresholds between the levels add points on the same flat stretches: same area.
    assert aupro([mask], [amap], max_fpr=0.3, num_thresholds=201) == pytest.approx(
        aupro([mask], [amap], max_fpr=0.3, num_thresholds=3))


def test_aupro_rejects_bad_input() -> None:
    normal = [np.zeros((3, 3), bool)]
    with pytest.raises(ValueError, match="defect region"):
        aupro(normal, [np.zeros((3, 3))])
    with pytest.raises(ValueError, match="normal pixels"):
        aupro([np.ones((3, 3), bool)], [np.zeros((3, 3))])
    mask = [np.eye(3, dtype=bool)]
    with pytest.raises(ValueError, match="max_fpr"):
        aupro(mask, [np.zeros((3, 3))], max_fpr=0.0)
    with pytest.raises(ValueError, match="num_thresholds"):
        aupro(mask, [np.zeros((3, 3))], num_thresholds=1)


# ------------------------------------------------------------------------------------------------
# Answer accuracy, per-class evaluation, summary
# ------------------------------------------------------------------------------------------------

def test_answer_accuracy() -> None:
    assert answer_accuracy([1, 0, 1, 0], [True, False, False, False]) == 0.75
    with pytest.raises(ValueError, match="entries"):
        answer_accuracy([1, 0], [True])


def _class_data(seed: int, n: int = 12):
    rng = np.random.default_rng(seed)
    masks = _blob_masks(n, 24, seed)
    masks[0][:] = False
    masks[1][4:10, 4:10] = True
    labels = np.array([int(m.any()) for m in masks])
    maps = [np.clip(rng.normal(0.2, 0.15, m.shape) + 0.5 * m, 0, None) for m in masks]
    scores = np.array([m.max() for m in maps])
    predicted = scores > 0.8
    return labels, scores, masks, maps, predicted


def test_evaluate_class_and_summarise_mean_over_classes() -> None:
    results = []
    for seed, name in enumerate(["bottle", "cable", "screw"]):
        labels, scores, masks, maps, predicted = _class_data(seed)
        metrics = evaluate_class(name, labels, scores, masks, maps, predicted)
        assert metrics.class_name == name
        assert metrics.n_images == len(labels) and metrics.n_anomalous == int(labels.sum())
        assert metrics.i_auroc == auroc(labels, scores)
        assert metrics.p_auroc == pixel_auroc(masks, maps)
        assert metrics.aupro == aupro(masks, maps)
        assert metrics.f1_max == f1_max(labels, scores)[0]
        assert metrics.pixel_f1_max == pixel_f1_max(masks, maps)[0]
        assert metrics.answer_accuracy == answer_accuracy(labels, predicted)
        results.append(metrics)
    summary = summarise(results)
    assert summary["n_classes"] == 3
    assert [row["class_name"] for row in summary["classes"]] == ["bottle", "cable", "screw"]
    for field in ("i_auroc", "p_auroc", "aupro", "f1_max", "pixel_f1_max", "answer_accuracy"):
        assert summary["mean"][field] == pytest.approx(np.mean([getattr(m, field) for m in results]))
    assert "pooled per class" in summary["notes"]


def test_summarise_optional_fields_and_errors() -> None:
    a = ClassMetrics("a", 4, 2, 0.9, 0.8, 0.7, 0.6)
    b = ClassMetrics("b", 6, 3, 0.7, 0.6, 0.5, 0.4, pixel_f1_max=0.3, answer_accuracy=1.0)
    summary = summarise([a, b])
    assert summary["mean"]["i_auroc"] == pytest.approx(0.8)
    assert summary["mean"]["pixel_f1_max"] is None and summary["mean"]["answer_accuracy"] is None
    assert summary["n_images"] == 10 and summary["n_anomalous"] == 5
    with pytest.raises(ValueError, match="at least one"):
        summarise([])
    with pytest.raises(ValueError, match="repeat"):
        summarise([a, a])


def test_evaluate_class_errors_name_the_class() -> None:
    labels, scores, masks, maps, _ = _class_data(0)
    with pytest.raises(ValueError, match=r"'pill'.*masks\[1\]"):
        evaluate_class("pill", labels, scores, masks, [maps[0], maps[1][:5]] + maps[2:])
    with pytest.raises(ValueError, match="'pill'.*both classes"):
        evaluate_class("pill", np.ones_like(labels), scores, masks, maps)
    without = evaluate_class("pill", labels, scores, masks, maps, compute_pixel_f1=False)
    assert without.pixel_f1_max is None and without.answer_accuracy is None


# ------------------------------------------------------------------------------------------------
# Large inputs
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pixel_metrics_on_100_images(dtype) -> None:
    """100 maps of 256x256 in either precision (their speed is in benchmarks/speed.py)."""
    rng = np.random.default_rng(0)
    masks = _blob_masks(100, 256, seed=3)
    maps = [(rng.random((256, 256)) + 0.5 * m).astype(dtype) for m in masks]
    value = pixel_auroc(masks, maps)
    pro = aupro(masks, maps)
    assert 0.5 < value <= 1.0 and 0.0 < pro <= 1.0
