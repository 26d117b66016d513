"""The shipped APG prompt banks and answer templates: they load, cover every class, and are well formed."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from iadgpt.errors import PromptBankError
from iadgpt.prompt_bank import GENERIC_CLASS, DefectAttribute, PromptBank, available_banks, load_bank

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
BANK_DIR = RESOURCES / "apg"
TEMPLATES = RESOURCES / "answer_templates.json"

MVTEC = ["bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw",
         "tile", "toothbrush", "transistor", "wood", "zipper"]
VISA = ["candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2",
        "pcb3", "pcb4", "pipe_fryum"]
OTHER = ["magnetic_tile", "ball_screw_drive"]
TEXTURES = {"carpet", "grid", "leather", "tile", "wood", "magnetic_tile"}
POSITIONS = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom",
             "bottom right"]

BANK_FILES = sorted(BANK_DIR.glob("*.json"))


def test_every_expected_class_has_a_bank():
    names = available_banks(BANK_DIR)
    assert len(MVTEC) == 15 and len(VISA) == 12
    missing = set(MVTEC + VISA + OTHER + [GENERIC_CLASS]) - set(names)
    assert not missing, f"no shipped bank for {sorted(missing)}"
    assert names == sorted(names)


@pytest.mark.parametrize("path", BANK_FILES, ids=lambda p: p.stem)
def test_shipped_bank_loads_and_is_well_formed(path):
    bank = PromptBank.load(path)
    assert bank.path == path
    assert bank.class_name == path.stem, "the 'class' field must match the file name"
    assert bank.source == "curated"
    assert bank.description.strip()
    assert 6 <= len(bank.attributes) <= 10

    names = [n.lower() for n in bank.names]
    assert len(names) == len(set(names)), f"duplicate attribute names in {path.name}"
    assert len(set(bank.sentences)) == len(bank.sentences), f"duplicate sentences in {path.name}"
    for attr in bank.attributes:
        assert attr.name == attr.name.lower() and 1 <= len(attr.name.split()) <= 3
        assert attr.sentence.lower().startswith(attr.name.lower() + ":"), attr.sentence
        assert "abnormal" in attr.sentence.lower(), attr.sentence
        assert 12 <= len(attr.sentence.split()) <= 35, attr.sentence

    # Round trip: what the loader reads is exactly what is on disk.
    assert bank.to_json() == json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", MVTEC + VISA + OTHER)
def test_dataset_and_object_flags(name):
    bank = load_bank(name, BANK_DIR)
    expected_dataset = "mvtec-ad" if name in MVTEC else "visa" if name in VISA else "other"
    assert bank.dataset == expected_dataset
    if name in TEXTURES or name == "ball_screw_drive":
        assert bank.is_object is False
    else:
        assert bank.is_object is True


def test_generic_bank_is_class_agnostic():
    bank = load_bank(GENERIC_CLASS, BANK_DIR)
    assert bank.is_object is None and bank.dataset == ""
    for sentence in bank.sentences:
        assert "an abnormal object" in sentence.lower() or "an abnormal surface" in sentence.lower()


def test_unknown_class_falls_back_to_generic_but_keeps_its_name():
    generic = load_bank(GENERIC_CLASS, BANK_DIR)
    bank = load_bank("some_unknown_class", BANK_DIR)
    assert bank.class_name == "some_unknown_class"
    assert bank.sentences == generic.sentences
    assert load_bank("Some Unknown-Class", BANK_DIR).class_name == "some_unknown_class"


def test_class_lookup_is_normalised():
    assert load_bank("Metal Nut", BANK_DIR).class_name == "metal_nut"
    assert load_bank("pipe-fryum", BANK_DIR).sentences == load_bank("pipe_fryum", BANK_DIR).sentences


def test_answer_templates():
    data = json.loads(TEMPLATES.read_text(encoding="utf-8"))
    assert set(data) == {"normal", "abnormal"}
    assert data["normal"] == "No, there are no abnormalities in the image."
    templates = data["abnormal"]
    assert len(templates) >= 40
    assert len(set(templates)) == len(templates)
    phrases = POSITIONS + ["top left and bottom right", "top, center and bottom left"]
    for template in templates:
        assert template.startswith("Yes"), template
        assert template.count("{position}") == 1, template
        for phrase in phrases:
            text = template.format(position=phrase)  # fails on any other placeholder or stray brace
            assert phrase in text and "{" not in text and "}" not in text
            assert "  " not in text and text.endswith(".")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("content", [
    pytest.param(json.dumps({"class": "bottle", "dataset": "mvtec-ad"}), id="missing-attributes"),
    pytest.param(json.dumps({"class": "bottle", "attributes": []}), id="empty-attributes"),
    pytest.param(json.dumps({"class": "bottle", "colour": "brown",
                             "attributes": [{"name": "crack", "sentence": "Crack: An abnormal bottle."}]}),
                 id="unknown-key"),
    pytest.param(json.dumps({"class": "bottle", "attributes": [{"name": "crack"}]}),
                 id="attribute-no-sentence"),
    pytest.param('{"class": "bottle", "attributes": [', id="invalid-json"),
    pytest.param(json.dumps(["not", "an", "object"]), id="not-an-object"),
])
def test_malformed_bank_raises_with_path(tmp_path, content):
    path = _write(tmp_path, content)
    with pytest.raises(PromptBankError) as info:
        PromptBank.load(path)
    assert str(path) in str(info.value)


def test_missing_bank_file_raises_with_path(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(PromptBankError, match="nope.json"):
        PromptBank.load(path)


def test_no_generic_fallback_raises(tmp_path):
    with pytest.raises(PromptBankError, match="generic"):
        load_bank("bottle", tmp_path)


def _bank(sentence: str) -> PromptBank:
    return PromptBank("bottle", (DefectAttribute("crack", sentence),), dataset="mvtec-ad", is_object=True)


def test_a_saved_bank_replaces_the_old_one_and_leaves_nothing_beside_it(tmp_path):
    path = tmp_path / "bottle.json"
    _bank("Crack: An abnormal bottle might have a crack.").save(path)
    _bank("Crack: An abnormal bottle might have a long crack.").save(path)
    assert PromptBank.load(path).sentences == ["Crack: An abnormal bottle might have a long crack."]
    assert [p.name for p in tmp_path.iterdir()] == ["bottle.json"]


def test_a_save_that_fills_the_disk_keeps_the_previous_bank(tmp_path, disk_fills_midway):
    path = tmp_path / "bottle.json"
    path.write_text(json.dumps(_bank("Crack: the edited sentence.").to_json()), encoding="utf-8")
    with pytest.raises(OSError) as caught:
        _bank("Crack: a newer sentence.").save(path)
    assert caught.value.errno == errno.ENOSPC
    assert PromptBank.load(path).sentences == ["Crack: the edited sentence."]
    assert [p.name for p in tmp_path.iterdir()] == ["bottle.json"]
