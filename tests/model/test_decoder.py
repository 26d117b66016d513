"""Tests of the vision-guided decoder (iadgpt.decoder, paper Eq. 1) with hand-set geometry.

Every projection is set to the identity, so a patch token *is* a point of the text space and the
anomaly probability can be predicted from which class embedding it points at.
"""

from __future__ import annotations

import pytest
import torch

from iadgpt.decoder import VisionGuidedDecoder

C = 16  # text width = every layer width


def identity_decoder(n_layers: int = 2, dim: int = C, logit_scale: float = 100.0) -> VisionGuidedDecoder:
    decoder = VisionGuidedDecoder([dim] * n_layers, dim, logit_scale=logit_scale)
    with torch.no_grad():
        for projection in decoder.projections:
            projection.weight.copy_(torch.eye(dim))
            projection.bias.zero_()
    return decoder.eval()


def basis(i: int, dim: int = C) -> torch.Tensor:
    v = torch.zeros(dim)
    v[i] = 1.0
    return v


def classes(k: int, dim: int = C) -> torch.Tensor:
    """K orthonormal classes: row 0 normal (e0), rows 1..K-1 abnormal (e1..e_{K-1})."""
    return torch.stack([basis(i, dim) for i in range(k)])


def run(decoder: VisionGuidedDecoder, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, C) fed to every layer."""
    with torch.no_grad():
        return decoder([tokens] * len(decoder.projections), text)


# --------------------------------------------------------------------------------------------------
# Geometry


@pytest.mark.parametrize("k", [2, 3, 8])
def test_token_on_normal_embedding_is_normal(k):
    decoder = identity_decoder()
    out = run(decoder, basis(0).view(1, 1, C), classes(k))
    assert out.shape == (1, 2, 1)
    assert torch.all(out < 1e-3)


@pytest.mark.parametrize("k", [2, 3, 8])
@pytest.mark.parametrize("which", [1, -1], ids=["first-abnormal", "last-abnormal"])
def test_token_on_an_abnormal_embedding_is_anomalous(k, which):
    decoder = identity_decoder()
    target = which % k
    out = run(decoder, basis(target).view(1, 1, C), classes(k))
    assert torch.all(out > 1 - 1e-3)


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_token_orthogonal_to_every_class_is_exactly_even(k):
    """The log(K-1) prior on the normal class: one normal class against the mean abnormal class."""
    decoder = identity_decoder()
    out = run(decoder, basis(C - 1).view(1, 1, C), classes(k))
    torch.testing.assert_close(out, torch.full_like(out, 0.5), atol=1e-6, rtol=0)


def test_token_scale_does_not_matter():
    decoder = identity_decoder()
    token = torch.randn(1, 1, C)
    text = torch.randn(4, C)
    small = run(decoder, token * 0.01, text)
    large = run(decoder, token * 100.0, text)
    torch.testing.assert_close(small, large, atol=1e-5, rtol=1e-5)


def test_text_classes_need_not_be_normalised():
    decoder = identity_decoder()
    tokens = torch.randn(2, 5, C)
    text = torch.randn(3, C)
    torch.testing.assert_close(run(decoder, tokens, text), run(decoder, tokens, text * 7.5))


def test_closer_to_abnormal_means_more_anomalous():
    """Rotating a token from the normal to the abnormal direction raises the probability monotonically."""
    decoder = identity_decoder(n_layers=1, logit_scale=10.0)
    angles = torch.linspace(0, torch.pi / 2, 9)
    tokens = (torch.cos(angles)[:, None] * basis(0) + torch.sin(angles)[:, None] * basis(1)).view(1, 9, C)
    probs = run(decoder, tokens, classes(2))[0, 0]
    assert torch.all(probs[1:] > probs[:-1])
    assert probs[0] < 0.5 < probs[-1]
    torch.testing.assert_close(probs[4], torch.tensor(0.5), atol=1e-5, rtol=0)


def test_lower_logit_scale_gives_softer_probabilities():
    token = (basis(1) + 0.5 * basis(0)).view(1, 1, C)
    sharp = run(identity_decoder(logit_scale=100.0), token, classes(2))
    soft = run(identity_decoder(logit_scale=1.0), token, classes(2))
    assert torch.all(sharp > soft)
    assert torch.all(soft > 0.5)


def test_each_layer_map_comes_from_its_own_tokens():
    decoder = identity_decoder(n_layers=3)
    normal, abnormal, neutral = basis(0).view(1, 1, C), basis(1).view(1, 1, C), basis(C - 1).view(1, 1, C)
    with torch.no_grad():
        out = decoder([normal, abnormal, neutral], classes(2))
    assert out[0, 0, 0] < 1e-3
    assert out[0, 1, 0] > 1 - 1e-3
    torch.testing.assert_close(out[0, 2, 0], torch.tensor(0.5), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# Shapes, ranges, per-sample classes


def test_output_shape_and_range_with_random_weights():
    torch.manual_seed(0)
    dims = [8, 12, 20]
    decoder = VisionGuidedDecoder(dims, text_dim=C).eval()
    tokens = [torch.randn(4, 49, d) for d in dims]
    with torch.no_grad():
        out = decoder(tokens, torch.randn(6, C))
    assert out.shape == (4, 3, 49)
    assert torch.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_text_classes_per_batch_are_applied_per_sample():
    decoder = identity_decoder()
    tokens = basis(0).view(1, 1, C).expand(2, 3, C).clone()  # every token on e0
    per_sample = torch.stack([classes(2), classes(2).flip(0)])  # sample 1: e0 is its abnormal class
    out = run(decoder, tokens, per_sample)
    assert out.shape == (2, 2, 3)
    assert torch.all(out[0] < 1e-3)
    assert torch.all(out[1] > 1 - 1e-3)


def test_shared_text_classes_equal_the_same_classes_repeated_per_batch():
    torch.manual_seed(1)
    decoder = VisionGuidedDecoder([C, C], C).eval()
    tokens = torch.randn(3, 7, C)
    text = torch.randn(4, C)
    shared = run(decoder, tokens, text)
    repeated = run(decoder, tokens, text.expand(3, -1, -1))
    torch.testing.assert_close(shared, repeated)


def test_mismatched_layer_count_raises():
    decoder = identity_decoder(n_layers=3)
    with pytest.raises(AssertionError, match="3 layers"):
        decoder([torch.randn(1, 4, C)] * 2, classes(2))


def test_a_single_class_raises():
    decoder = identity_decoder()
    with pytest.raises(AssertionError):
        decoder([torch.randn(1, 4, C)] * 2, classes(1))


def test_gradients_reach_every_projection():
    torch.manual_seed(2)
    decoder = VisionGuidedDecoder([C, C], C, logit_scale=10.0)
    out = decoder([torch.randn(2, 5, C), torch.randn(2, 5, C)], torch.randn(3, C))
    out.sum().backward()
    for projection in decoder.projections:
        assert projection.weight.grad is not None
        assert projection.weight.grad.abs().sum() > 0
