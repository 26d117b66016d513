"""Procedural products (iadgpt.data.procedural): good parts of made-up products for the bank-map branch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from iadgpt.data import mvtec_samples
from iadgpt.data.procedural import FAMILIES, main, write_products


def _descriptor(image: np.ndarray) -> np.ndarray:
    """What a part looks like regardless of where its pattern starts: the colour and the log
    spectrum of the grey image, pooled to 16 x 16 (the phase, which changes from part to part, left out)."""
    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (128, 128)).astype(np.float32) / 255
    spectrum = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean()))))
    pooled = cv2.resize(spectrum, (16, 16), interpolation=cv2.INTER_AREA).ravel()
    colour = image.reshape(-1, 3).mean(axis=0) / 255
    return np.concatenate([pooled / (np.linalg.norm(pooled) + 1e-6), colour])


def test_procedural_products_are_readable_good_parts_of_every_family(tmp_path: Path) -> None:
    counts = write_products(tmp_path / "drawn", products=12, images=5, seed=0)
    assert len(counts) == 12 and set(counts.values()) == {5}
    assert {name.split("_")[1] for name in counts} == set(FAMILIES)
    samples = mvtec_samples(tmp_path / "drawn", "train")
    assert {s.class_name for s in samples} == set(counts) and all(s.label == 0 for s in samples)
    for s in samples:
        image = cv2.imread(str(s.image))
        assert image is not None and image.ndim == 3 and max(image.shape[:2]) == 256
        assert image.std() > 5, f"{s.image} is blank"


def test_parts_of_one_product_differ_but_look_like_their_product(tmp_path: Path) -> None:
    """Each product has normal variation (no two parts are the same image) and is one product:
    a part's nearest part by appearance is, nearly always, another part of the same product."""
    counts = write_products(tmp_path / "drawn", products=18, images=6, seed=3)
    samples = mvtec_samples(tmp_path / "drawn", "train")
    images = [cv2.imread(str(s.image)) for s in samples]
    labels = [s.class_name for s in samples]
    for name in counts:
        own = [im.tobytes() for im, label in zip(images, labels, strict=True) if label == name]
        assert len(set(own)) == len(own), f"{name} repeats a part"
    features = np.stack([_descriptor(im) for im in images])
    distance = np.linalg.norm(features[:, None] - features[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    nearest = distance.argmin(axis=1)
    same = np.mean([labels[i] == labels[j] for i, j in enumerate(nearest)])
    assert same >= 0.9, f"only {same:.0%} of the parts look most like their own product"


def test_the_same_seed_draws_the_same_products_and_another_seed_others(tmp_path: Path) -> None:
    write_products(tmp_path / "a", products=6, images=4, seed=1)
    write_products(tmp_path / "b", products=6, images=4, seed=1)
    write_products(tmp_path / "c", products=6, images=4, seed=2)
    part = Path("proc_weave_0") / "train" / "good" / "002.png"
    assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes()
    assert (tmp_path / "a" / part).read_bytes() != (tmp_path / "c" / part).read_bytes()


def test_too_few_images_per_product_is_refused_with_the_reason(tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match="at least 4 good images"):
        write_products(tmp_path / "d", products=2, images=3)
    assert main([str(tmp_path / "e"), "--products", "2", "--images", "2"]) == 2
    assert "at least 4 good images" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
