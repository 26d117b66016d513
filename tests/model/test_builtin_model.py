"""The shipped built-in model (resources/models/unified-lite0): loaded by default, no download, grounded answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from iadgpt.config import DEFAULT_PRESET
from iadgpt.grounding import consistent, position_agrees
from iadgpt.inspector import Inspector, shipped_weights
from iadgpt.prompt_bank import default_bank_dir
from iadgpt.weights import load_trainable

SAMPLES = default_bank_dir().parent / "samples" / "ball_screw_drive"
GOOD = ("good_015.png", "good_023.png")
PITTED = ("pitting_080.png", "pitting_113.png")


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector(DEFAULT_PRESET, class_name="ball_screw_drive")


def test_the_builtin_model_ships_and_loads_by_default(inspector, tmp_path, monkeypatch):
    shipped = shipped_weights(DEFAULT_PRESET)
    assert shipped is not None and shipped == default_bank_dir().parent / "models" / DEFAULT_PRESET
    assert inspector.preset.name == DEFAULT_PRESET and inspector.trained
    manifest, parts = load_trainable(shipped, expect_preset=DEFAULT_PRESET)
    assert set(parts) == {"decoder", "tge", "mmf", "llm"}, "the image tower comes from its wheel, not from resources"
    assert manifest["extra"]["products"] == {"bsdata": "ball_screw_drive"}
    assert sum(p.stat().st_size for p in Path(shipped).iterdir()) <= 25 * 2**20
    monkeypatch.setenv("IADGPT_RESOURCES", str(tmp_path))  # a resources folder without the model
    assert shipped_weights(DEFAULT_PRESET) is None


def test_zero_shot_on_its_trained_product_tells_good_from_pitted(inspector):
    inspector.set_memory_bank(None)
    assert inspector.use_decoder and inspector.mode == "zero-shot"
    for name in GOOD:
        result = inspector.inspect(SAMPLES / "inspect" / name)
        assert result.verdict == "good" and result.answer.startswith("No"), (name, result.answer)
        assert result.position is None and result.defect_types == []
    for name in PITTED:
        result = inspector.inspect(SAMPLES / "inspect" / name)
        assert result.verdict == "defective" and result.answer.startswith("Yes"), (name, result.answer)
        assert result.position == result.evidence.position, "the Position row is the evidence the LLM read"


def test_chat_about_a_pitted_part_is_grounded_in_what_the_screen_shows(inspector):
    inspector.set_memory_bank(None)
    image = SAMPLES / "inspect" / PITTED[0]
    result = inspector.inspect(image)
    history = [{"role": "user", "content": "Is there any anomaly in the image?"},
               {"role": "assistant", "content": result.answer}]
    ship = "".join(inspector.chat(image, history, "Is it safe to ship?")).strip()
    assert consistent("ship", ship, True, result.evidence), ship


@pytest.mark.parametrize("name", PITTED)
def test_the_answer_and_the_chat_name_the_place_the_position_row_shows(inspector, name):
    """The place is copied from the evidence line, never read from the image tokens (decision 0009)."""
    inspector.set_memory_bank(None)
    image = SAMPLES / "inspect" / name
    result = inspector.inspect(image)
    assert result.position and position_agrees(result.answer, result.evidence), (result.position, result.answer)
    history = [{"role": "user", "content": "Is there any anomaly in the image?"},
               {"role": "assistant", "content": result.answer}]
    where = "".join(inspector.chat(image, history, "Where is it?")).strip()
    assert consistent("where", where, True, result.evidence), (result.position, where)


def test_a_new_product_is_served_by_its_references_alone(inspector):
    """A product the weights never saw: the memory bank of its good images decides, the decoder is off."""
    inspector.set_product("generic")
    try:
        inspector.build_memory_bank(sorted((SAMPLES / "reference").glob("*.png")))
        assert not inspector.use_decoder and inspector.mode == "few-shot"
        good = [inspector.inspect(SAMPLES / "inspect" / n, generate_answer=False) for n in GOOD]
        pitted = [inspector.inspect(SAMPLES / "inspect" / n, generate_answer=False) for n in PITTED]
        assert max(r.score for r in good) < min(r.score for r in pitted)
    finally:
        inspector.set_product("ball_screw_drive")
        inspector.set_memory_bank(None)


@pytest.mark.parametrize("typed, trained", [("where is it", "Where is it?"),
                                            ("  is it safe   to ship?", "Is it safe to ship?")])
def test_a_question_typed_in_lower_case_gets_the_answer_of_the_question_as_trained(inspector, typed, trained):
    """The LLM's tokens tell "where" from "Where": a question typed without capitals or question mark
    was answered as another kind of question ("where is the defect?" -> a size)."""
    inspector.set_memory_bank(None)
    image = SAMPLES / "inspect" / PITTED[0]
    result = inspector.inspect(image)
    history = [{"role": "user", "content": "is there any anomaly in the image"},
               {"role": "assistant", "content": result.answer}]
    asked = "".join(inspector.chat(image, history, typed)).strip()
    kind = "where" if "where" in trained.lower() else "ship"
    assert asked == "".join(inspector.chat(image, history, trained)).strip()
    assert consistent(kind, asked, True, result.evidence), asked


def test_chat_about_an_inspection_reads_the_map_it_was_shown_with_whatever_product_is_active(inspector):
    """Asked about a stored ball-screw inspection while a new product's memory bank was active, the
    chat named places the Position row did not show: it rebuilt the map with the active bank."""
    inspector.set_memory_bank(None)
    image = SAMPLES / "inspect" / PITTED[1]
    result = inspector.inspect(image)
    stored = np.round(result.anomaly_map * 255).astype(np.uint8) / 255.0  # as History keeps it (8-bit PNG)
    history = [{"role": "user", "content": "Is there any anomaly in the image?"},
               {"role": "assistant", "content": result.answer}]
    inspector.set_product("generic")
    try:
        inspector.build_memory_bank(sorted((SAMPLES / "reference").glob("*.png"))[:2])
        where = "".join(inspector.chat(image, history, "Where is it?", shown_map=stored)).strip()
    finally:
        inspector.set_memory_bank(None)
        inspector.set_product("ball_screw_drive")
    assert consistent("where", where, True, result.evidence), (result.position, where)
