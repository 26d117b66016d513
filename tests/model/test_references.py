"""The nearest good reference (few-shot): which reference image a part looks most like, and its file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from iadgpt.errors import MemoryBankError
from iadgpt.imageio import load_image
from iadgpt.inspector import Inspector
from iadgpt.prompt_bank import default_bank_dir
from iadgpt.references import BUILD_KEY, ReferenceSet, load_beside, references_path

SAMPLES = default_bank_dir().parent / "samples" / "ball_screw_drive"


@pytest.fixture(scope="module")
def builtin() -> Inspector:
    """The built-in model, as a new product uses it: a memory bank from the shipped good references."""
    inspector = Inspector("unified-lite0", device="cpu", class_name="magnetic_tile")
    inspector.build_memory_bank(sorted((SAMPLES / "reference").glob("*.png")))
    return inspector


def _slightly_changed(rgb: np.ndarray) -> np.ndarray:
    """Another shot of the same part: a little brighter, moved by a few pixels."""
    h, w = rgb.shape[:2]
    brighter = np.clip(rgb.astype(np.int16) + 12, 0, 255).astype(np.uint8)
    return cv2.warpAffine(brighter, np.float32([[1, 0, 4], [0, 1, 3]]), (w, h), borderMode=cv2.BORDER_REFLECT)


def test_a_changed_copy_of_reference_b_is_nearest_to_b_not_to_another(builtin: Inspector) -> None:
    paths = sorted((SAMPLES / "reference").glob("*.png"))
    assert len(paths) >= 2
    for path in paths:
        result = builtin.inspect(_slightly_changed(load_image(path)), generate_answer=False)
        nearest = result.nearest_reference
        assert result.mode == "few-shot" and nearest is not None
        assert nearest.name == path.name and nearest.path == str(path), f"{path.name} matched {nearest.name}"
        assert 0.9 < nearest.similarity <= 1.0 + 1e-6


def test_zero_shot_and_a_bank_without_references_name_no_reference(builtin: Inspector) -> None:
    image = load_image(sorted((SAMPLES / "inspect").glob("*.png"))[0])
    bank, refs = builtin.memory_bank, builtin.references
    try:
        builtin.set_memory_bank(bank)  # a bank loaded from an older file: no reference index
        assert builtin.inspect(image, generate_answer=False).nearest_reference is None
        builtin.set_memory_bank(None)
        assert builtin.inspect(image, generate_answer=False).nearest_reference is None
    finally:
        builtin.set_memory_bank(bank, refs)


def test_arrays_are_named_by_their_place_and_have_no_path() -> None:
    refs = ReferenceSet(torch.eye(3, 4), ["/good/a.png", None, ""])
    assert [refs.name(i) for i in range(3)] == ["a.png", "reference 2", "reference 3"]
    nearest = refs.nearest(torch.tensor([[0.0, 3.0, 0.1, 0.0]]))
    assert (nearest.index, nearest.name, nearest.path) == (1, "reference 2", None)
    assert nearest.similarity == pytest.approx(3.0 / np.hypot(3.0, 0.1))


def test_saved_beside_the_bank_and_read_back_only_for_the_same_build(tmp_path) -> None:
    bank_path = tmp_path / "product-1.safetensors"
    assert references_path(bank_path) == tmp_path / "product-1.references.safetensors"
    embeddings = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    refs = ReferenceSet(embeddings, ["/good/a.png", "/good/b.png", "/good/c.png"], {BUILD_KEY: "b1", "preset": "x"})
    assert load_beside(bank_path, {BUILD_KEY: "b1"}) is None  # an old bank: no file, no reference, no error
    refs.save(references_path(bank_path))
    loaded = load_beside(bank_path, {BUILD_KEY: "b1"})
    assert loaded is not None and loaded.sources == refs.sources and loaded.meta == refs.meta
    assert torch.allclose(loaded.embeddings, refs.embeddings)
    assert loaded.nearest(embeddings[2] + 0.01).name == "c.png"
    assert load_beside(bank_path, {BUILD_KEY: "another"}) is None  # left from another build of the bank
    assert load_beside(bank_path, {}) is None  # a bank from before build ids


def test_a_damaged_reference_index_is_a_sentence(tmp_path) -> None:
    bank_path = tmp_path / "product-2.safetensors"
    references_path(bank_path).write_bytes(b"not a safetensors file")
    with pytest.raises(MemoryBankError, match="rebuild the memory bank"):
        load_beside(bank_path, {BUILD_KEY: "b1"})
