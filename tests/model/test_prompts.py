"""Tests of the text prompts (iadgpt.prompts): the compositional ensemble T_win and the APG prompts T_apg."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from iadgpt.config import load_preset
from iadgpt.encoders import ClipTowers, build_clip
from iadgpt.prompt_bank import DefectAttribute, PromptBank, load_bank
from iadgpt.prompts import (
    ABNORMAL_STATES,
    NORMAL_STATES,
    TEMPLATES,
    TextPrompts,
    build_text_prompts,
    class_words,
    compositional_prompts,
    defect_type_probabilities,
)


@pytest.fixture(scope="module")
def towers() -> ClipTowers:
    return build_clip(load_preset("tiny-test").clip)


def make_bank(class_name: str = "metal_nut") -> PromptBank:
    words = class_words(class_name)
    return PromptBank(
        class_name=class_name,
        attributes=(
            DefectAttribute("scratch", f"Scratch: An abnormal {words} might have thin bright scratches."),
            DefectAttribute("dent", f"Dent: An abnormal {words} might have a pressed-in dent."),
            DefectAttribute("rust", f"Rust: An abnormal {words} might have reddish-brown rust spots."),
        ),
    )


@pytest.fixture(scope="module")
def prompts(towers) -> TextPrompts:
    return build_text_prompts(towers, make_bank())


def assert_unit_rows(t: torch.Tensor) -> None:
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(t.shape[0]), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------------
# compositional_prompts


@pytest.mark.parametrize(("name", "words"), [("metal_nut", "metal nut"), ("bottle", "bottle"),
                                              ("pcb1", "pcb1"), ("screw_bag_x", "screw bag x")])
def test_compositional_prompts_count_and_mention_the_class_in_words(name, words):
    normal, abnormal = compositional_prompts(name)
    assert len(normal) == len(NORMAL_STATES) * len(TEMPLATES)
    assert len(abnormal) == len(ABNORMAL_STATES) * len(TEMPLATES)
    for sentence in normal + abnormal:
        assert words in sentence
        assert "_" not in sentence
        assert "{" not in sentence and "}" not in sentence


def test_compositional_prompts_are_distinct_and_on_the_right_side():
    normal, abnormal = compositional_prompts("metal_nut")
    assert len(set(normal)) == len(normal)
    assert len(set(abnormal)) == len(abnormal)
    assert not set(normal) & set(abnormal)
    assert "a photo of a metal nut." in normal
    assert "a photo of a damaged metal nut." in abnormal
    for sentence in normal:
        assert not any(word in sentence for word in ("damaged", "broken", "defective", "with flaw",
                                                     "with defect", "with damage"))
    for sentence in abnormal:
        assert not any(word in sentence for word in ("flawless", "perfect", "without", "intact"))


def test_class_words():
    assert class_words("metal_nut") == "metal nut"
    assert class_words(" bottle ") == "bottle"


# --------------------------------------------------------------------------------------------------
# build_text_prompts with the tiny towers


def test_build_text_prompts_shapes_and_normalisation(towers, prompts):
    c = towers.embed_dim
    assert prompts.class_name == "metal_nut"
    assert prompts.win.shape == (2, c)
    assert prompts.apg.shape == (3, c)
    assert prompts.apg_names == ["scratch", "dent", "rust"]
    assert_unit_rows(prompts.win)
    assert_unit_rows(prompts.apg)
    assert not prompts.win.requires_grad and not prompts.apg.requires_grad


def test_win_rows_are_the_normal_and_abnormal_ensembles(towers, prompts):
    normal, abnormal = compositional_prompts("metal_nut")
    expected_normal = F.normalize(towers.encode_text(normal).mean(dim=0), dim=-1)
    expected_abnormal = F.normalize(towers.encode_text(abnormal).mean(dim=0), dim=-1)
    torch.testing.assert_close(prompts.win[0], expected_normal, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(prompts.win[1], expected_abnormal, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(prompts.win[0], prompts.win[1], atol=1e-4)


def test_apg_rows_are_one_embedding_per_bank_sentence(towers, prompts):
    bank = make_bank()
    expected = towers.encode_text(bank.sentences)
    torch.testing.assert_close(prompts.apg, expected, atol=1e-5, rtol=1e-5)
    # sentence order follows the bank order
    assert not torch.allclose(prompts.apg[0], prompts.apg[1], atol=1e-4)


def test_apg_count_follows_the_bank(towers):
    bank = PromptBank("bottle", (DefectAttribute("crack", "Crack: An abnormal bottle might have a crack."),))
    one = build_text_prompts(towers, bank)
    assert one.apg.shape == (1, towers.embed_dim)
    assert one.decoder_classes.shape == (3, towers.embed_dim)


def test_shipped_bank_gives_one_apg_row_per_attribute(towers):
    bank = load_bank("metal_nut")
    shipped = build_text_prompts(towers, bank)
    assert shipped.apg.shape == (len(bank.attributes), towers.embed_dim)
    assert shipped.apg_names == bank.names
    assert shipped.decoder_classes.shape == (2 + len(bank.attributes), towers.embed_dim)
    assert_unit_rows(shipped.apg)


def test_decoder_classes_put_the_normal_ensemble_first(prompts):
    classes = prompts.decoder_classes
    assert classes.shape == (2 + 3, prompts.win.shape[1])
    torch.testing.assert_close(classes[0], prompts.win[0])
    torch.testing.assert_close(classes[1], prompts.win[1])
    torch.testing.assert_close(classes[2:], prompts.apg)


def test_text_prompts_are_class_specific_and_reproducible(towers, prompts):
    again = build_text_prompts(towers, make_bank())
    torch.testing.assert_close(again.win, prompts.win)
    torch.testing.assert_close(again.apg, prompts.apg)
    other = build_text_prompts(towers, make_bank("bottle"))
    assert not torch.allclose(other.win, prompts.win, atol=1e-4)


def test_text_prompts_to_dtype_keeps_everything(prompts):
    wide = prompts.to("cpu", torch.float64)
    assert wide.win.dtype == torch.float64 and wide.apg.dtype == torch.float64
    assert wide.class_name == prompts.class_name and wide.apg_names == prompts.apg_names
    torch.testing.assert_close(wide.win.float(), prompts.win)


# --------------------------------------------------------------------------------------------------
# defect_type_probabilities


def random_prompts(k: int = 6, c: int = 32, seed: int = 0) -> TextPrompts:
    gen = torch.Generator().manual_seed(seed)
    win = F.normalize(torch.randn(2, c, generator=gen), dim=-1)
    apg = F.normalize(torch.randn(k, c, generator=gen), dim=-1)
    return TextPrompts("widget", win, apg, [f"kind{i}" for i in range(k)])


@pytest.mark.parametrize("target", range(6))
def test_defect_type_matching_the_image_embedding_ranks_first(target):
    prompts = random_prompts()
    image = prompts.apg[target:target + 1] * 4.2  # scale must not matter
    probs = defect_type_probabilities(image, prompts)
    assert probs.shape == (1, 6)
    assert int(probs.argmax(dim=-1)) == target
    assert prompts.apg_names[int(probs.argmax())] == f"kind{target}"
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(1))
    assert torch.all(probs >= 0)


def test_defect_type_probabilities_per_sample():
    prompts = random_prompts()
    image = torch.stack([prompts.apg[3], prompts.apg[0], prompts.apg[5]])
    probs = defect_type_probabilities(image, prompts)
    assert probs.shape == (3, 6)
    assert probs.argmax(dim=-1).tolist() == [3, 0, 5]
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(3))


def test_defect_type_probabilities_sharpen_with_the_logit_scale():
    prompts = random_prompts()
    image = prompts.apg[2:3] + 0.3 * prompts.apg[4:5]
    sharp = defect_type_probabilities(image, prompts, logit_scale=100.0)
    soft = defect_type_probabilities(image, prompts, logit_scale=1.0)
    assert sharp.argmax() == soft.argmax()
    assert sharp.max() > soft.max()
    torch.testing.assert_close(defect_type_probabilities(image, prompts, logit_scale=0.0),
                               torch.full((1, 6), 1 / 6))


def test_defect_type_probabilities_accept_half_precision_inputs():
    prompts = random_prompts()
    half = TextPrompts(prompts.class_name, prompts.win.half(), prompts.apg.half(), prompts.apg_names)
    probs = defect_type_probabilities(prompts.apg[1:2].half(), half)
    assert probs.dtype == torch.float32
    assert int(probs.argmax()) == 1
