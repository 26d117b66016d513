"""Tests of the Text-Guided Enhancer (iadgpt.tge, paper Eq. 3-4): a text-gated mixture of experts."""

from __future__ import annotations

import pytest
import torch

from iadgpt.tge import TextGuidedEnhancer

IMG, TXT, OUT = 24, 16, 32


@pytest.fixture
def tge() -> TextGuidedEnhancer:
    torch.manual_seed(0)
    return TextGuidedEnhancer(IMG, TXT, OUT, n_experts=2, heads=4, ffn_ratio=2.0).eval()


@pytest.fixture
def win() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.nn.functional.normalize(torch.randn(2, TXT), dim=-1)


def _gate(tge: TextGuidedEnhancer, image: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return tge.gate(image if image.dim() == 3 else image.unsqueeze(1), win)


# --------------------------------------------------------------------------------------------------
# The gate


def test_gate_weights_are_a_distribution_per_sample(tge, win):
    image = torch.randn(5, IMG)
    weights = _gate(tge, image, win)
    assert weights.shape == (5, 2)
    assert torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(5))
    # different images get different mixtures
    assert not torch.allclose(weights[0], weights[1])


def test_gate_with_more_experts_is_still_a_distribution():
    torch.manual_seed(3)
    tge = TextGuidedEnhancer(IMG, TXT, OUT, n_experts=4, heads=4).eval()
    weights = _gate(tge, torch.randn(3, 2, IMG), torch.randn(4, TXT))
    assert weights.shape == (3, 4)
    assert torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3))


def test_swapping_the_text_rows_swaps_the_gate_weights(tge, win):
    """The text guides the mixture: expert e follows T_win row e."""
    image = torch.randn(4, IMG)
    weights = _gate(tge, image, win)
    swapped = _gate(tge, image, win.flip(0))
    assert not torch.allclose(weights, swapped, atol=1e-4)
    torch.testing.assert_close(swapped, weights.flip(-1))


def test_different_text_changes_the_gate(tge, win):
    image = torch.randn(2, IMG)
    other = torch.nn.functional.normalize(torch.randn(2, TXT), dim=-1)
    assert not torch.allclose(_gate(tge, image, win), _gate(tge, image, other), atol=1e-4)


def test_per_sample_text_is_used_per_sample(tge, win):
    image = torch.randn(2, IMG)
    per_sample = torch.stack([win, win.flip(0)])  # (B, E, C_text)
    weights = _gate(tge, image, per_sample)
    shared = _gate(tge, image, win)
    torch.testing.assert_close(weights[0], shared[0])
    torch.testing.assert_close(weights[1], shared[1].flip(-1))


def test_text_row_count_must_match_the_experts(tge):
    with pytest.raises(AssertionError, match="2 experts"):
        tge(torch.randn(1, IMG), torch.randn(3, TXT))


# --------------------------------------------------------------------------------------------------
# Mixture output


def test_one_hot_gate_gives_that_experts_output(tge, win, monkeypatch):
    image = torch.randn(3, IMG)
    for chosen in (0, 1):
        one_hot = torch.zeros(3, 2)
        one_hot[:, chosen] = 1.0
        monkeypatch.setattr(tge, "gate", lambda image, win, w=one_hot: w)
        with torch.no_grad():
            out = tge(image, win)
            expected = tge.experts[chosen](image.unsqueeze(1))
        torch.testing.assert_close(out, expected)
    with torch.no_grad():
        assert not torch.allclose(tge.experts[0](image.unsqueeze(1)), tge.experts[1](image.unsqueeze(1)))


def test_saturated_gate_weights_pick_the_aligned_expert(tge):
    """Hand-set gate: a constant query q, and expert 0's key +100 q, expert 1's key -100 q."""
    q = torch.nn.functional.normalize(torch.randn(OUT), dim=0)
    win = torch.eye(2, TXT)  # row 0 = e0, row 1 = e1
    with torch.no_grad():
        tge.gate_query.weight.zero_()
        tge.gate_query.bias.copy_(q)
        tge.gate_key.weight.zero_()
        tge.gate_key.bias.zero_()
        tge.gate_key.weight[:, 0] = 100.0 * q
        tge.gate_key.weight[:, 1] = -100.0 * q
        image = torch.randn(3, IMG)
        weights = tge.gate(image.unsqueeze(1), win)
        out = tge(image, win)
        expert0 = tge.experts[0](image.unsqueeze(1))
        swapped_out = tge(image, win.flip(0))
        expert1 = tge.experts[1](image.unsqueeze(1))
    assert torch.all(weights[:, 0] > 0.999)
    torch.testing.assert_close(out, expert0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(swapped_out, expert1, atol=1e-4, rtol=1e-4)


def test_output_is_the_gate_weighted_sum_of_the_experts(tge, win):
    image = torch.randn(2, 3, IMG)
    with torch.no_grad():
        weights = tge.gate(image, win)
        out = tge(image, win)
        expected = sum(weights[:, e, None, None] * tge.experts[e](image) for e in range(2))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((4, IMG), (4, 1, OUT)), ((4, 5, IMG), (4, 5, OUT)), ((1, 1, IMG), (1, 1, OUT))],
    ids=["global-vector", "token-sequence", "single"],
)
def test_output_width_is_the_llm_width_and_token_count_follows_input(tge, win, shape, expected):
    with torch.no_grad():
        out = tge(torch.randn(*shape), win)
    assert out.shape == expected
    assert torch.isfinite(out).all()


def test_image_width_not_divisible_by_heads_still_works(win):
    torch.manual_seed(4)
    tge = TextGuidedEnhancer(image_dim=10, text_dim=TXT, out_dim=OUT, heads=4).eval()
    with torch.no_grad():
        out = tge(torch.randn(2, 10), win)
    assert out.shape == (2, 1, OUT)


def test_out_dim_must_divide_into_heads():
    with pytest.raises(AssertionError, match="divisible"):
        TextGuidedEnhancer(IMG, TXT, out_dim=30, heads=4)


def test_samples_are_independent(tge, win):
    """The batch does not leak between samples (eval mode, no batch statistics)."""
    images = torch.randn(3, IMG)
    with torch.no_grad():
        together = tge(images, win)
        alone = torch.cat([tge(images[i:i + 1], win) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Training


def test_gradients_reach_both_experts_and_the_gate(win):
    torch.manual_seed(5)
    tge = TextGuidedEnhancer(IMG, TXT, OUT, n_experts=2, heads=4).train()
    tge(torch.randn(3, 2, IMG), win).sum().backward()
    for e, expert in enumerate(tge.experts):
        grads = [p.grad for p in expert.parameters()]
        assert all(g is not None for g in grads), f"expert {e} has parameters without gradient"
        assert expert.lift.weight.grad.abs().sum() > 0, f"expert {e} lift got no gradient"
    for name in ("gate_query", "gate_key", "gate_attn", "gate_norm"):
        module = getattr(tge, name)
        total = sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None)
        assert total > 0, f"{name} got no gradient"
