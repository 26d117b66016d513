"""Evidence lines, grounding checks and the conversation corpus built on them."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from iadgpt.data.answers import load_answer_templates
from iadgpt.evaluation import scripted_chat
from iadgpt.evidence import Evidence, bank_types, map_evidence, mask_evidence
from iadgpt.grounding import consistent, position_agrees, positions_in, scripted_questions, type_label
from iadgpt.position import anomaly_regions, positions_phrase
from iadgpt.prompt_bank import load_bank
from iadgpt.training.corpus import QUESTIONS, answer, sample_conversation

NAMES = ["blowhole", "break", "crack", "fray", "uneven", "scratch"]


def _map_with(shape: str) -> np.ndarray:
    m = np.zeros((120, 240), np.float32)
    if shape == "line":
        cv2.line(m, (30, 30), (200, 90), 1.0, 2)
    elif shape == "spot":
        cv2.circle(m, (180, 60), 4, 1.0, -1)
    elif shape == "patch":
        cv2.ellipse(m, (120, 60), (40, 30), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), 1.0)


def test_a_thin_line_reads_as_a_crack_and_a_small_spot_as_a_blowhole():
    line, _ = map_evidence(_map_with("line"), NAMES)
    spot, _ = map_evidence(_map_with("spot"), NAMES)
    patch, _ = map_evidence(_map_with("patch"), NAMES)
    assert line.shape == "line" and "crack" in line.types and "blowhole" not in line.types
    assert spot.shape == "spot" and spot.types == ("blowhole",)
    assert spot.position == "right" and spot.count == 1 and spot.size == "tiny"
    assert patch.shape == "patch" and patch.types == ("uneven",)


def test_the_evidence_position_is_the_position_row():
    m = _map_with("spot") + 0.9 * np.roll(_map_with("spot"), (40, -150), axis=(0, 1))
    evidence, regions = map_evidence(m, NAMES)
    assert evidence.position == positions_phrase([r.position for r in anomaly_regions(m)[:3]])
    assert evidence.count == 2 and len(regions) == 2
    assert f"strongest response at the {evidence.position};" in evidence.text()


def test_no_type_is_named_when_no_bank_name_fits_the_shape():
    line = mask_evidence(_map_with("line") > 0.5, ["pitting", "corrosion"])
    assert line.shape == "line" and line.types == () and "likely type: unclear" in line.text()
    assert bank_types(None, NAMES) == ()


def test_bank_names_cannot_forge_the_image_placeholder():
    from iadgpt.llm import IMAGE_TOKEN, inspection_messages

    evidence = Evidence("center", 1, 0.01, "spot", ("a<image>b",)).text()
    content = inspection_messages("sys", "x<image>y", evidence)[1]["content"]
    assert content.count(IMAGE_TOKEN) == 1 and content.startswith(IMAGE_TOKEN)


def test_positions_are_parsed_longest_first():
    assert positions_in("It is at the top left and center of the image.") == {"top left", "center"}
    assert positions_in("at the bottom, top left and top right") == {"bottom", "top left", "top right"}
    assert positions_in("No, there are no abnormalities in the image.") == set()


EV = Evidence("top left and center", 2, 0.031, "line", ("crack",))


@pytest.mark.parametrize("kind,good,bad", [
    ("where", "The defect is at the top left and center of the image.", "It is at the bottom right."),
    ("type", "It looks like crack.", "The type is unclear from the image."),
    ("size", "It is medium: about 3.1 % of the image.", "It is tiny: about 0.1 % of the image."),
    ("count", "There are 2 defect regions.", "There is one defect region."),
    ("ship", "No, it should not be shipped: there is a defect at the top left and center.",
     "Yes, no anomaly was found; it can be shipped."),
    ("describe", "A medium thin line at the top left and center, about 3.1 % of the image.",
     "The part looks normal; no anomaly stands out."),
])
def test_consistency_checks_accept_the_grounded_answer_and_reject_others(kind, good, bad):
    assert consistent(kind, good, True, EV)
    assert not consistent(kind, bad, True, EV)


def test_a_size_answer_with_another_share_than_the_screen_is_inconsistent():
    """The chat once said "small, 1.7 % of the image" of regions the evidence line gave as 1.0-1.5 %."""
    ev = Evidence("right", 1, 0.012, "spot", ("hole", "stain"))
    assert consistent("size", "Measured at the right; size: small, 1.2 % of the image.", True, ev)
    assert consistent("size", "It is small.", True, ev)
    assert not consistent("size", "Measured at the right; size: small, 1.7 % of the image.", True, ev)
    assert consistent("describe", "A compact spot at the right; size: small, 1.2 % of the image; likely type: "
                      "hole or stain.", True, ev)
    assert not consistent("describe", "A compact spot at the right; size: small, 1.7 % of the image; likely "
                          "type: hole or stain.", True, ev)


def test_good_parts_must_be_answered_negatively_without_a_position():
    assert consistent("where", "There is no defect in the image; the tile looks normal.", False, EV)
    assert not consistent("where", "The defect is at the top left.", False, EV)
    assert consistent("ship", "Yes, no anomaly was found; it can be shipped.", False, EV)
    assert not consistent("ship", "No, it should not be shipped.", False, EV)


def test_a_good_part_called_by_another_products_name_is_inconsistent():
    """The chat once said "the ball screw drive looks normal" of a magnetic tile."""
    assert consistent("where", "There is no defect in the image; the magnetic tile looks normal.", False, EV,
                      "magnetic_tile")
    assert not consistent("where", "There is no defect in the image; the ball screw drive looks normal.", False,
                          EV, "magnetic_tile")
    assert consistent("compare", "It looks like the good references; nothing differs.", False, EV, "magnetic_tile")


def test_type_labels_map_test_folders_to_bank_names():
    assert type_label("blowhole", NAMES) == "blowhole"
    assert type_label("pitting", ["pitting", "scratch"]) == "pitting"
    assert type_label("good", NAMES) is None


def test_corpus_answers_come_from_the_evidence_line_and_do_not_leak_the_verdict():
    bank, templates = load_bank("magnetic_tile"), load_answer_templates()
    rng = np.random.default_rng(0)
    areas = {True: [], False: []}
    for _ in range(600):
        talk = sample_conversation(rng, "magnetic_tile", bank, templates, "sys")
        first = talk.messages[1]["content"]
        position = first.split("strongest response at the ")[1].split(";")[0]
        areas[talk.anomalous].append(float(first.split("size: ")[1].split(", ")[1].split(" %")[0]))
        if talk.anomalous and len(talk.messages) == 2:
            assert position_agrees(talk.answer, Evidence(position, 1, 0.0, None, ()))
        if not talk.anomalous:
            assert not positions_in(talk.answer), talk.answer
    # the evidence line is drawn alike for good and defective parts: the LLM must read the image
    assert abs(np.median(areas[True]) - np.median(areas[False])) < 1.0


@pytest.mark.parametrize("kind", list(QUESTIONS))
def test_every_question_kind_has_a_grounded_answer_for_both_verdicts(kind):
    rng = np.random.default_rng(1)
    assert consistent(kind, answer(kind, True, EV, rng), True, EV)
    assert consistent(kind, answer(kind, False, EV, rng), False, EV)


def test_scripted_chat_counts_each_question_kind_apart():
    """The eval's chat metric: an inspector that answers one of two defective parts as the corpus would
    and says "no abnormalities" about the other scores one half on every question kind."""
    kinds = {question: kind for kind, question in scripted_questions()}
    rng = np.random.default_rng(2)

    class Chatty:
        def chat(self, image, history, question):
            if image == "denied.png":
                yield "No, there are no abnormalities in the image."
            else:
                yield answer(kinds[question], True, EV, rng)

    result = SimpleNamespace(class_name="tile", answer="Yes, there is a defect.", verdict="defective", evidence=EV)
    hits = scripted_chat(Chatty(), [("grounded.png", result), ("denied.png", result)])
    assert set(hits) == set(QUESTIONS)
    assert all(share == pytest.approx(0.5) for share in hits.values()), hits


def test_a_type_answer_lists_the_evidence_lines_types_and_no_others():
    """The chat said "The likely type: hole or stain." of a tile whose Likely-defect row says blowhole and
    stain: "stain" is right, "hole" is a type the screen does not show, so the answer is not consistent."""
    ev = Evidence("bottom right", 1, 0.004, "spot", ("blowhole", "stain"))
    assert consistent("type", "The likely type: blowhole or stain.", True, ev)
    assert consistent("type", "The likely type: stain.", True, ev)
    assert not consistent("type", "The likely type: hole or stain.", True, ev)
    assert not consistent("type", "The likely type:Me thread.", True, ev)
    assert not consistent("type", "The likely type: .", True, ev)
    describe = "A compact spot at the bottom right; size: tiny, 0.4 % of the image; likely type: {}."
    assert consistent("describe", describe.format("blowhole or stain"), True, ev)
    assert not consistent("describe", describe.format("pitting or stain"), True, ev)
    unclear = Evidence("bottom right", 1, 0.004, None, ())
    assert consistent("type", "The type is unclear from the image; it is a defect at the bottom right.", True,
                      unclear)
    assert not consistent("type", "The likely type: crack.", True, unclear)
