"""Tests of iadgpt.data: dataset listings on the shared datasets, anomaly synthesis, and training answers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from iadgpt.data import (
    AnswerTemplates,
    Sample,
    answer_for_mask,
    cutpaste,
    draw,
    folder_samples,
    foreground_mask,
    load_answer_templates,
    load_sample,
    mvtec_samples,
    nsa,
    synthesize,
    visa_samples,
)
from iadgpt.data.answers import mask_positions
from iadgpt.data.synthesis import nsa_with_boxes
from iadgpt.errors import ConfigError, DatasetError
from iadgpt.position import GRID
from tests.conftest import shared_dataset

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def bsdata_pair() -> tuple[np.ndarray, np.ndarray]:
    train = mvtec_samples(shared_dataset("bsdata"), "train")
    return load_sample(train[0])[0], load_sample(train[7])[0]


@pytest.fixture(scope="module")
def templates() -> AnswerTemplates:
    return load_answer_templates()


# --------------------------------------------------------------------------------------------
# MVTec layout on the shared datasets
# --------------------------------------------------------------------------------------------


def test_magnetic_tile_counts_match_readme():
    root = shared_dataset("magnetic_tile")
    train = mvtec_samples(root, "train")
    test = mvtec_samples(root, "test")
    assert len(train) == 160 and all(s.label == 0 and s.defect == "good" and s.mask is None for s in train)
    assert len(test) == 272
    # README table: 40 good + 50 + 50 + 50 + 32 + 50 = 232 defective.
    assert Counter(s.defect for s in test) == {"good": 40, "blowhole": 50, "break": 50, "crack": 50,
                                                "fray": 32, "uneven": 50}
    assert sum(s.label for s in test) == 232
    assert {s.class_name for s in train + test} == {"magnetic_tile"}
    assert {s.split for s in test} == {"test"}


def test_bsdata_counts_match_readme():
    root = shared_dataset("bsdata")
    train = mvtec_samples(root, "train")
    test = mvtec_samples(root, "test")
    assert len(train) == 120 and {s.label for s in train} == {0}
    assert len(test) == 155
    assert Counter(s.defect for s in test) == {"good": 30, "pitting": 125}
    assert all(s.label == (s.defect != "good") for s in test)


@pytest.mark.parametrize("name", ["magnetic_tile", "bsdata"])
def test_every_defect_sample_has_a_mask_of_its_size(name: str):
    samples = mvtec_samples(shared_dataset(name), "test")
    defects = [s for s in samples if s.label == 1]
    assert defects
    for sample in defects:
        assert sample.mask is not None and sample.mask.is_file(), sample
        assert sample.mask.name == f"{sample.image.stem}_mask.png"
        with Image.open(sample.image) as image, Image.open(sample.mask) as mask:
            assert image.size == mask.size, sample


def test_listing_is_sorted_and_repeatable():
    root = shared_dataset("magnetic_tile")
    first = mvtec_samples(root, "test")
    assert first == mvtec_samples(root, "test")
    keys = [(s.class_name, s.defect, s.image.name) for s in first]
    assert keys == sorted(keys)


def test_dataset_root_with_class_folders(tmp_path: Path):
    bsdata, tiles = shared_dataset("bsdata"), shared_dataset("magnetic_tile")
    (tmp_path / "screw_drive").symlink_to(bsdata, target_is_directory=True)
    (tmp_path / "tile").symlink_to(tiles, target_is_directory=True)
    (tmp_path / "notes").mkdir()  # not a class: no train/ or test/
    train = mvtec_samples(tmp_path, "train")
    assert Counter(s.class_name for s in train) == {"screw_drive": 120, "tile": 160}
    only = mvtec_samples(tmp_path, "test", classes=["tile"])
    assert len(only) == 272 and {s.class_name for s in only} == {"tile"}
    with pytest.raises(DatasetError, match="carpet"):
        mvtec_samples(tmp_path, "test", classes=["carpet"])


def test_layout_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        mvtec_samples(tmp_path / "nowhere", "train")
    with pytest.raises(DatasetError, match="no class in MVTec-AD layout"):
        mvtec_samples(tmp_path, "train")
    with pytest.raises(DatasetError, match="validation"):
        mvtec_samples(shared_dataset("bsdata"), "validation")


def test_missing_mask_names_the_image(tmp_path: Path):
    cls = tmp_path / "widget"
    _write_png(cls / "train" / "good" / "000.png", _noise((16, 16, 3)))
    _write_png(cls / "test" / "good" / "000.png", _noise((16, 16, 3)))
    _write_png(cls / "test" / "crack" / "000.png", _noise((16, 16, 3)))
    cv2.imwrite(str(cls / "test" / "crack" / "001.jpg"), _noise((16, 16, 3)))
    _write_png(cls / "ground_truth" / "crack" / "000_mask.png", np.full((16, 16), 255, np.uint8))
    with pytest.raises(DatasetError, match=r"001\.jpg.*no ground-truth mask"):
        mvtec_samples(cls, "test")
    # Any image suffix is accepted for masks too.
    cv2.imwrite(str(cls / "ground_truth" / "crack" / "001_mask.bmp"), np.zeros((16, 16), np.uint8))
    samples = mvtec_samples(cls, "test")
    assert [(s.defect, s.image.name, s.mask.name if s.mask else None) for s in samples] == [
        ("crack", "000.png", "000_mask.png"), ("crack", "001.jpg", "001_mask.bmp"), ("good", "000.png", None)]


# --------------------------------------------------------------------------------------------
# Loading, folders, VisA
# --------------------------------------------------------------------------------------------


def test_load_sample_native_and_resized():
    samples = mvtec_samples(shared_dataset("bsdata"), "test")
    defect = next(s for s in samples if s.label == 1)
    image, mask = load_sample(defect)
    assert image.shape == (184, 452, 3) and image.dtype == np.uint8
    assert mask.shape == (184, 452) and mask.dtype == np.bool_ and mask.any()
    small, small_mask = load_sample(defect, size=224)
    assert small.shape == (224, 224, 3) and small.dtype == np.uint8
    assert small_mask.shape == (224, 224) and small_mask.dtype == np.bool_
    assert set(np.unique(small_mask.view(np.uint8))) <= {0, 1} and small_mask.any()
    good = next(s for s in samples if s.label == 0)
    _, good_mask = load_sample(good, size=64)
    assert good_mask.shape == (64, 64) and not good_mask.any()


def test_load_sample_grayscale_tile_enlarged():
    sample = mvtec_samples(shared_dataset("magnetic_tile"), "test")[0]
    image, mask = load_sample(sample, size=448)  # larger than the tile: INTER_CUBIC
    assert image.shape == (448, 448, 3)
    assert (image[:, :, 0] == image[:, :, 2]).all()
    assert mask.dtype == np.bool_ and mask.any()


def test_load_sample_rejects_mask_of_other_size(tmp_path: Path):
    image = _write_png(tmp_path / "a.png", _noise((20, 30, 3)))
    mask = _write_png(tmp_path / "a_mask.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="a_mask.png"):
        load_sample(Sample(image, "x", 1, "crack", mask, "test"))


def test_folder_samples(tmp_path: Path):
    folder = shared_dataset("bsdata") / "train" / "good"
    samples = folder_samples(folder, "ball_screw")
    assert len(samples) == 120
    assert all(s.label == 0 and s.mask is None and s.class_name == "ball_screw" for s in samples)
    assert [s.image for s in samples] == sorted(s.image for s in samples)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        folder_samples(tmp_path / "empty", "ball_screw")


def _fake_visa(root: Path) -> Path:
    rows = ["object,split,label,image,mask"]
    for cls in ("candle", "pcb1"):
        for i in range(3):
            _write_png(root / cls / "Data" / "Images" / "Normal" / f"{i:03d}.png", _noise((12, 16, 3), i))
            rows.append(f"{cls},{'train' if i < 2 else 'test'},normal,{cls}/Data/Images/Normal/{i:03d}.png,")
        _write_png(root / cls / "Data" / "Images" / "Anomaly" / "000.png", _noise((12, 16, 3), 9))
        mask = np.zeros((12, 16), np.uint8)
        mask[2:5, 3:7] = 255
        _write_png(root / cls / "Data" / "Masks" / "Anomaly" / "000.png", mask)
        rows.append(f"{cls},test,anomaly,{cls}/Data/Images/Anomaly/000.png,{cls}/Data/Masks/Anomaly/000.png")
    csv_path = root / "split_csv" / "1cls.csv"
    csv_path.parent.mkdir(parents=True)
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return csv_path


def test_visa_csv(tmp_path: Path):
    csv_path = _fake_visa(tmp_path)
    train = visa_samples(tmp_path, "train")
    assert len(train) == 4 and {s.label for s in train} == {0} and {s.split for s in train} == {"train"}
    test = visa_samples(tmp_path, "test")
    assert [(s.class_name, s.label, s.defect) for s in test] == [
        ("candle", 0, "good"), ("candle", 1, "anomaly"), ("pcb1", 0, "good"), ("pcb1", 1, "anomaly")]
    anomalous = test[1]
    assert anomalous.mask == tmp_path / "candle" / "Data" / "Masks" / "Anomaly" / "000.png"
    _, mask = load_sample(anomalous)
    assert mask.sum() == 12
    assert len(visa_samples(tmp_path, "test", csv_path=csv_path, classes=["pcb1"])) == 2

    (tmp_path / "pcb1" / "Data" / "Masks" / "Anomaly" / "000.png").unlink()
    with pytest.raises(DatasetError, match=r"pcb1/Data/Masks/Anomaly/000\.png"):
        visa_samples(tmp_path, "test")
    bad = tmp_path / "bad.csv"
    bad.write_text("object,split,image\ncandle,train,x.png\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="lacks the columns"):
        visa_samples(tmp_path, "train", csv_path=bad)
    with pytest.raises(DatasetError, match="does not exist"):
        visa_samples(tmp_path / "elsewhere", "train")


# --------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------


def _dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nsa_changes_only_the_masked_pixels(bsdata_pair, seed: int):
    target, source = bsdata_pair
    image, mask = nsa(target, source, np.random.default_rng(seed))
    assert image.shape == target.shape and image.dtype == np.uint8
    assert mask.shape == target.shape[:2] and mask.dtype == np.bool_ and mask.any()
    diff = np.abs(image.astype(np.float32) - target).mean(axis=2)
    assert diff[~_dilate(mask, 3)].mean() < 1.0
    assert diff[mask].mean() > 3.0


def test_nsa_is_deterministic(bsdata_pair):
    target, source = bsdata_pair
    a = nsa(target, source, np.random.default_rng(42))
    b = nsa(target, source, np.random.default_rng(42))
    c = nsa(target, source, np.random.default_rng(43))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_nsa_centres_stay_in_the_foreground(bsdata_pair):
    target, source = bsdata_pair
    foreground = np.zeros(target.shape[:2], dtype=bool)
    foreground[90:120, 300:340] = True
    for seed in range(5):
        _, mask, boxes = nsa_with_boxes(target, source, np.random.default_rng(seed), foreground=foreground,
                                        max_frac=0.15)
        assert boxes
        footprint = np.zeros_like(mask)
        for x, y, w, h in boxes:
            assert foreground[y + h // 2, x + w // 2]
            footprint[y:y + h, x:x + w] = True
        assert not (mask & ~footprint).any()


def test_nsa_of_a_matching_patch_is_retried_or_refused():
    flat = np.full((64, 64, 3), 120, np.uint8)
    with pytest.raises(DatasetError, match="uniform or identical"):
        nsa(flat, flat, np.random.default_rng(0))


def test_nsa_on_grayscale_tiles_of_other_sizes():
    train = mvtec_samples(shared_dataset("magnetic_tile"), "train")
    target, source = load_sample(train[0])[0], load_sample(train[1])[0]
    assert target.shape != source.shape
    image, mask = nsa(target, source, np.random.default_rng(3))
    assert image.shape == target.shape and mask.shape == target.shape[:2] and mask.any()
    assert (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all()
    # A single-channel array works too.
    image2, mask2 = nsa(target[:, :, 0], source[:, :, 0], np.random.default_rng(3))
    assert np.array_equal(image, image2) and np.array_equal(mask, mask2)


@pytest.mark.parametrize("jitter", [0.0, 0.1])
def test_cutpaste_mask_is_the_changed_rectangle(bsdata_pair, jitter: float):
    target = bsdata_pair[0]
    for seed in range(3):
        image, mask = cutpaste(target, np.random.default_rng(seed), jitter=jitter)
        changed = (image != target).any(axis=2)
        assert not (changed & ~mask).any()
        ys, xs = np.nonzero(mask)
        assert mask.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # a filled rectangle
        cy, cx = np.nonzero(changed)
        assert (cy.min(), cy.max(), cx.min(), cx.max()) == (ys.min(), ys.max(), xs.min(), xs.max())


def test_synthesize_methods(bsdata_pair):
    target, source = bsdata_pair
    for method in ("nsa", "cutpaste", "mix", "draw", "all"):
        a = synthesize(target, source, np.random.default_rng(5), method=method)
        b = synthesize(target, source, np.random.default_rng(5), method=method)
        assert a[1].any() and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ConfigError, match="draem"):
        synthesize(target, source, np.random.default_rng(0), method="draem")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(6))
def test_draw_marks_what_it_changes(bsdata_pair, seed: int):
    """Every labelled pixel visibly changed, and every strongly changed pixel is labelled."""
    target = bsdata_pair[0]
    image, mask = draw(target, np.random.default_rng(seed))
    assert image.shape == target.shape and image.dtype == np.uint8 and mask.any()
    diff = np.abs(image.astype(np.float32) - target).mean(axis=2)
    assert (diff[mask] > 4.0).all()
    assert not (diff > 30.0)[~mask].any()  # soft edges outside the mask stay faint
    assert diff[~_dilate(mask, 12)].max() < 4.0  # away from the marks only a stain's faint fringe


def test_draw_on_magnetic_tiles_makes_visible_gray_defects():
    """On the tiles, where NSA patches are nearly invisible, drawn marks stand out and stay gray."""
    train = mvtec_samples(shared_dataset("magnetic_tile"), "train")
    kinds = Counter()
    for i, sample in enumerate(train[:12]):
        target = load_sample(sample, 160)[0]
        image, mask = draw(target, np.random.default_rng(i), n_marks=(1, 1))
        assert (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all()
        change = np.abs(image[:, :, 0].astype(np.float32) - target[:, :, 0])[mask].mean()
        assert change > 10.0
        area = mask.sum() / mask.size
        kinds["spot" if area < 0.002 else "stroke or stain"] += 1
    assert kinds["spot"] and kinds["stroke or stain"]  # both small and larger marks are drawn


def test_draw_keeps_marks_in_the_foreground_and_shows_on_white(bsdata_pair):
    target = bsdata_pair[0]
    foreground = np.zeros(target.shape[:2], dtype=bool)
    foreground[60:120, 200:300] = True
    # a mark starts (stroke) or is centred (spot, stain) in the foreground; strokes reach 50 % of the side
    near = _dilate(foreground, int(0.5 * min(target.shape[:2]) + 2))
    for seed in range(5):
        _, mask = draw(target, np.random.default_rng(seed), n_marks=(1, 1), min_frac=0.02, max_frac=0.05,
                       foreground=foreground)
        assert near[mask].all()
    anywhere = [draw(target, np.random.default_rng(s), n_marks=(1, 1))[1] for s in range(10)]
    assert any(not near[m].all() for m in anywhere)  # without a foreground they land elsewhere too
    white = np.full((64, 64, 3), 255, np.uint8)
    image, mask = draw(white, np.random.default_rng(0))  # darker marks still show on white
    assert mask.any() and (image[mask] < 255).all()
    with pytest.raises(ValueError, match="n_marks"):
        draw(target, np.random.default_rng(0), n_marks=(0, 2))


def test_synthesize_patch_fraction_sets_the_defect_size(bsdata_pair):
    """Small patches for small-defect data (pits, holes): the masks shrink with patch_frac."""
    target, source = bsdata_pair
    for method in ("nsa", "cutpaste"):
        small = [synthesize(target, source, np.random.default_rng(s), method, patch_frac=(0.02, 0.06))[1]
                 for s in range(6)]
        large = [synthesize(target, source, np.random.default_rng(s), method, patch_frac=(0.2, 0.3))[1]
                 for s in range(6)]
        side = max(target.shape[:2])
        assert all(m.any() for m in small)
        # at most 4 patches of at most 6 % of the side each (pasted patches may be resized by 1.3)
        assert max(m.sum() for m in small) <= 4 * (0.06 * side * 1.3) ** 2
        assert np.mean([m.sum() for m in small]) * 8 < np.mean([m.sum() for m in large])
    with pytest.raises(ValueError):
        synthesize(target, source, np.random.default_rng(0), "nsa", patch_frac=(0.4, 0.1))


def test_foreground_mask_finds_an_object_on_a_plain_background():
    rng = np.random.default_rng(0)
    disc = np.zeros((96, 128), np.uint8)
    cv2.circle(disc, (70, 50), 30, 1, -1)
    images = []
    for _ in range(5):
        image = np.full((96, 128, 3), 30, np.int16) + rng.integers(-8, 9, (96, 128, 3))
        image[disc > 0] = (200, 160, 90)
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    foreground = foreground_mask(images)
    iou = (foreground & (disc > 0)).sum() / (foreground | (disc > 0)).sum()
    assert iou > 0.9
    texture = [_noise((96, 128, 3), seed) // 16 + 100 for seed in range(3)]
    assert foreground_mask(texture).all()


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def test_answer_templates_load(templates: AnswerTemplates):
    assert templates.normal == "No, there are no abnormalities in the image."
    assert len(templates.abnormal) >= 40 and all("{position}" in t for t in templates.abnormal)


def test_empty_mask_gives_the_normal_answer(templates: AnswerTemplates):
    answer = answer_for_mask(np.zeros((90, 120), bool), templates, np.random.default_rng(0))
    assert answer == templates.normal


def test_blob_bottom_right(templates: AnswerTemplates):
    mask = np.zeros((90, 120), bool)
    mask[70:80, 95:110] = True
    for seed in range(10):
        answer = answer_for_mask(mask, templates, np.random.default_rng(seed))
        assert answer.startswith("Yes") and "bottom right" in answer, answer


def test_two_blobs_name_both_positions(templates: AnswerTemplates):
    mask = np.zeros((90, 120), bool)
    mask[5:15, 5:20] = True
    mask[40:50, 55:65] = True
    assert mask_positions(mask) == ["top left", "center"]
    answer = answer_for_mask(mask, templates, np.random.default_rng(1))
    assert "top left and center" in answer or "center and top left" in answer


def test_tiny_defect_is_still_abnormal(templates: AnswerTemplates):
    mask = np.zeros((300, 300), bool)
    mask[0, 299] = True  # one pixel, like the smallest magnetic-tile masks
    answer = answer_for_mask(mask, templates, np.random.default_rng(0))
    assert answer.startswith("Yes") and GRID[0][2] in answer


def test_answer_templates_from_env_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "answer_templates.json").write_text(
        '{"normal": "No.", "abnormal": ["Yes, at the {position}."]}', encoding="utf-8")
    monkeypatch.setenv("IADGPT_RESOURCES", str(tmp_path))
    assert load_answer_templates() == AnswerTemplates("No.", ("Yes, at the {position}.",))
    bad = tmp_path / "bad.json"
    bad.write_text('{"normal": "No.", "abnormal": ["Yes, {where}."]}', encoding="utf-8")
    with pytest.raises(DatasetError, match="bad.json"):
        load_answer_templates(bad)
    with pytest.raises(DatasetError, match="do not exist"):
        load_answer_templates(tmp_path / "missing.json")
