"""Tests of the LLaVA-style image splice (iadgpt.llm.splice_image_embeddings), a pure tensor function."""

from __future__ import annotations

import pytest
import torch

from iadgpt.llm import IGNORE_INDEX, splice_image_embeddings

IMG = 99  # the placeholder id used in these tests
PAD = 0
D = 4
K = 3


def _batch(side: str, lengths=(8, 5, 3), positions=(5, 1, 2), seed: int = 0):
    """B rows of different true lengths, padded on `side`, one placeholder per row at `positions`
    (counted within the row's real tokens). Returns input_ids, text_embeds, mask, labels, image_embeds
    and each row's placeholder index in the padded (B, T) layout."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    input_ids = torch.full((B, T), PAD, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    placeholder = []
    for b, (n, p) in enumerate(zip(lengths, positions, strict=True)):
        start = 0 if side == "right" else T - n
        real = torch.arange(10 + 10 * b, 10 + 10 * b + n)
        real[p] = IMG
        input_ids[b, start:start + n] = real
        mask[b, start:start + n] = 1
        # labels on every real token except the first one and the placeholder
        lab = real.clone()
        lab[0] = IGNORE_INDEX
        lab[p] = IGNORE_INDEX
        labels[b, start:start + n] = lab
        placeholder.append(start + p)
    text_embeds = torch.randn(B, T, D, generator=g)
    image_embeds = torch.randn(B, K, D, generator=g) + 100.0  # far from any text embedding
    return input_ids, text_embeds, mask, labels, image_embeds, placeholder


def test_explicit_small_case():
    input_ids = torch.tensor([[5, IMG, 6, PAD]])
    text = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    image = torch.tensor([[[10.0], [20.0]]])
    mask = torch.tensor([[1, 1, 1, 0]])
    labels = torch.tensor([[IGNORE_INDEX, 7, 6, IGNORE_INDEX]])
    embeds, out_mask, out_labels = splice_image_embeddings(input_ids, text, image, IMG, mask, labels)
    assert embeds[0, :, 0].tolist() == [1.0, 10.0, 20.0, 3.0, 4.0]
    assert out_mask.tolist() == [[1, 1, 1, 1, 0]]
    assert out_labels.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 6, IGNORE_INDEX]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch(side):
    input_ids, text, mask, labels, image, placeholder = _batch(side)
    B, T = input_ids.shape
    embeds, out_mask, out_labels = splice_image_embeddings(input_ids, text, image, IMG, mask, labels)

    assert embeds.shape == (B, T + K - 1, D)
    assert out_mask.shape == (B, T + K - 1)
    assert out_labels.shape == (B, T + K - 1)
    assert out_mask.dtype == mask.dtype and out_labels.dtype == labels.dtype
    for b in range(B):
        p = placeholder[b]
        # the K image embeddings sit exactly where the placeholder was
        torch.testing.assert_close(embeds[b, p:p + K], image[b], rtol=0, atol=0)
        # text before and after unchanged and in order
        torch.testing.assert_close(embeds[b, :p], text[b, :p], rtol=0, atol=0)
        torch.testing.assert_close(embeds[b, p + K:], text[b, p + 1:], rtol=0, atol=0)
        # mask: image positions attend, everything else is carried over
        assert out_mask[b, p:p + K].tolist() == [1] * K
        assert out_mask[b, :p].tolist() == mask[b, :p].tolist()
        assert out_mask[b, p + K:].tolist() == mask[b, p + 1:].tolist()
        # labels: image positions ignored, everything else carried over
        assert out_labels[b, p:p + K].tolist() == [IGNORE_INDEX] * K
        assert out_labels[b, :p].tolist() == labels[b, :p].tolist()
        assert out_labels[b, p + K:].tolist() == labels[b, p + 1:].tolist()
        # padding stays on the same side with the same number of pad positions
        n_pad = int((mask[b] == 0).sum())
        row = out_mask[b].tolist()
        real = int(mask[b].sum()) + K - 1
        if side == "right":
            assert row == [1] * real + [0] * n_pad
        else:
            assert row == [0] * n_pad + [1] * real


def test_rows_have_different_placeholder_positions():
    # guard on the fixture itself: the padded test above is only meaningful if rows differ
    for side in ("right", "left"):
        *_, placeholder = _batch(side)
        assert len(set(placeholder)) == len(placeholder)


def test_several_turns_keep_every_answer_label():
    # [sys sys] [user IMG q q] [asst a a eos] [user q] [asst b b b eos]
    ids = [1, 2, 3, IMG, 4, 5, 6, 31, 32, 2, 3, 7, 6, 41, 42, 43, 2]
    answer1, answer2 = [7, 8, 9], [13, 14, 15, 16]
    labels = [IGNORE_INDEX] * len(ids)
    for i in answer1 + answer2:
        labels[i] = ids[i]
    input_ids = torch.tensor([ids])
    lab = torch.tensor([labels])
    text = torch.randn(1, len(ids), D)
    image = torch.randn(1, K, D)
    mask = torch.ones(1, len(ids), dtype=torch.long)
    _, out_mask, out_labels = splice_image_embeddings(input_ids, text, image, IMG, mask, lab)
    kept = [i for i, v in enumerate(out_labels[0].tolist()) if v != IGNORE_INDEX]
    assert kept == [i + K - 1 for i in answer1 + answer2]
    assert [out_labels[0, i].item() for i in kept] == [ids[i] for i in answer1 + answer2]
    assert out_mask.tolist() == [[1] * (len(ids) + K - 1)]


@pytest.mark.parametrize("row", [[5, 6, 7, 8], [5, IMG, IMG, 8]], ids=["zero", "two"])
def test_rows_need_exactly_one_placeholder(row):
    input_ids = torch.tensor([[5, IMG, 7, 8], row])
    text = torch.randn(2, 4, D)
    image = torch.randn(2, K, D)
    mask = torch.ones(2, 4, dtype=torch.long)
    with pytest.raises(AssertionError, match="exactly one image placeholder"):
        splice_image_embeddings(input_ids, text, image, IMG, mask)


def test_labels_none_gives_none():
    input_ids, text, mask, _, image, _ = _batch("right")
    embeds, out_mask, out_labels = splice_image_embeddings(input_ids, text, image, IMG, mask)
    assert out_labels is None
    assert embeds.shape[1] == out_mask.shape[1] == input_ids.shape[1] + K - 1


def test_gradients_flow_into_image_embeds():
    input_ids, text, mask, labels, image, placeholder = _batch("left")
    image = image.clone().requires_grad_(True)
    text = text.clone().requires_grad_(True)
    embeds, _, _ = splice_image_embeddings(input_ids, text, image, IMG, mask, labels)
    weights = torch.randn_like(embeds)
    (embeds * weights).sum().backward()
    assert image.grad is not None
    for b, p in enumerate(placeholder):
        torch.testing.assert_close(image.grad[b], weights[b, p:p + K])
        # the placeholder's own text embedding is dropped, so it gets no gradient
        assert text.grad[b, p].abs().sum() == 0


def test_float32_image_into_bfloat16_text():
    input_ids, text, mask, _, image, placeholder = _batch("right")
    text = text.to(torch.bfloat16)
    assert image.dtype == torch.float32
    embeds, _, _ = splice_image_embeddings(input_ids, text, image, IMG, mask)
    assert embeds.dtype == torch.bfloat16
    for b, p in enumerate(placeholder):
        torch.testing.assert_close(embeds[b, p:p + K], image[b].to(torch.bfloat16), rtol=0, atol=0)
