"""Tests of Multi-Mask Fusion (iadgpt.mmf, paper Eq. 5-6): E_expert = [E_fusion; E_base]."""

from __future__ import annotations

import pytest
import torch

from iadgpt.mmf import MultiMaskFusion

LAYERS, OUT, GRID, BASE, S = 4, 32, 3, 2, 32  # the tiny-test sizes (mask_size 32)
SLICE = OUT // LAYERS


@pytest.fixture
def mmf() -> MultiMaskFusion:
    torch.manual_seed(0)
    return MultiMaskFusion(LAYERS, OUT, grid=GRID, base_prompts=BASE).eval()


def blob(cy: int, cx: int, r: int = 4, size: int = S) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).float()


def run(mmf: MultiMaskFusion, masks: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return mmf(masks)


# --------------------------------------------------------------------------------------------------
# Shape and base prompts


@pytest.mark.parametrize(("grid", "base"), [(3, 2), (3, 9), (2, 4), (4, 1)])
def test_output_shape_and_num_tokens(grid, base):
    torch.manual_seed(1)
    mmf = MultiMaskFusion(LAYERS, OUT, grid=grid, base_prompts=base).eval()
    out = run(mmf, torch.rand(3, LAYERS, S, S))
    assert out.shape == (3, grid * grid + base, OUT)
    assert mmf.num_tokens == grid * grid + base
    assert torch.isfinite(out).all()


def test_base_tokens_are_the_learned_parameter_for_every_row(mmf):
    masks = torch.stack([torch.zeros(LAYERS, S, S), torch.ones(LAYERS, S, S), torch.rand(LAYERS, S, S)])
    out = run(mmf, masks)
    for row in range(3):
        torch.testing.assert_close(out[row, -BASE:], mmf.base.detach(), rtol=0, atol=0)


def test_base_tokens_train_and_fusion_tokens_do_not_depend_on_them(mmf):
    masks = torch.rand(2, LAYERS, S, S)
    before = run(mmf, masks)
    with torch.no_grad():
        mmf.base.add_(1.0)
    after = run(mmf, masks)
    torch.testing.assert_close(after[:, :GRID * GRID], before[:, :GRID * GRID])
    torch.testing.assert_close(after[:, -BASE:], before[:, -BASE:] + 1.0)


def test_batch_rows_are_independent(mmf):
    masks = torch.rand(3, LAYERS, S, S)
    together = run(mmf, masks)
    alone = torch.cat([run(mmf, masks[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Layer i's mask drives channel slice i


@pytest.mark.parametrize("layer", range(LAYERS))
def test_changing_one_layer_mask_changes_only_its_channel_slice(mmf, layer):
    torch.manual_seed(2)
    masks = torch.rand(2, LAYERS, S, S)
    changed = masks.clone()
    changed[:, layer] = blob(10, 20)
    a, b = run(mmf, masks), run(mmf, changed)
    fusion_a, fusion_b = a[:, :GRID * GRID], b[:, :GRID * GRID]
    for i in range(LAYERS):
        cols = slice(i * SLICE, (i + 1) * SLICE)
        if i == layer:
            assert not torch.allclose(fusion_a[..., cols], fusion_b[..., cols], atol=1e-4)
        else:
            torch.testing.assert_close(fusion_a[..., cols], fusion_b[..., cols], rtol=0, atol=0)
    torch.testing.assert_close(a[:, -BASE:], b[:, -BASE:], rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# Where the mask is shows in where the tokens change


def test_blob_location_shows_in_the_matching_grid_token(mmf):
    zero = run(mmf, torch.zeros(1, LAYERS, S, S))
    top_left = run(mmf, blob(5, 5).expand(1, LAYERS, S, S))
    bottom_right = run(mmf, blob(S - 6, S - 6).expand(1, LAYERS, S, S))
    assert not torch.allclose(top_left[:, :GRID * GRID], bottom_right[:, :GRID * GRID], atol=1e-4)

    d_tl = (top_left - zero)[0, :GRID * GRID].norm(dim=-1)  # change of each grid token
    d_br = (bottom_right - zero)[0, :GRID * GRID].norm(dim=-1)
    first, last = 0, GRID * GRID - 1  # top-left and bottom-right grid cells
    assert d_tl[first] > d_tl[last]
    assert d_br[last] > d_br[first]
    # the same cell responds more to a blob over it than to one in the opposite corner
    assert d_tl[first] > d_br[first]
    assert d_br[last] > d_tl[last]


def test_the_maps_magnitude_reaches_the_tokens_through_the_level_path(mmf):
    """The convolutions' GroupNorm makes them blind to the map's strength; the per-cell level path is
    what tells a faint map from a strong one with the same pattern (zero at initialisation, learned)."""
    pattern = blob(10, 20, r=6).expand(1, LAYERS, S, S)
    blank = run(mmf, torch.zeros(1, LAYERS, S, S))[:, :GRID * GRID]
    def faint_over_strong() -> float:  # how far a tenth of the map moves the tokens, vs the whole map
        strong, faint = (run(mmf, k * pattern)[:, :GRID * GRID] for k in (1.0, 0.1))
        return float((faint - blank).norm() / (strong - blank).norm())

    assert faint_over_strong() > 0.7  # the convolutions alone: a tenth of the map reads almost alike
    with torch.no_grad():
        for block in mmf.blocks:
            block.level.weight.fill_(1.0)
    assert faint_over_strong() < 0.5


def test_weights_from_before_the_level_path_load_and_read_as_before(mmf):
    old = {k: v for k, v in mmf.state_dict().items() if ".level." not in k}
    torch.manual_seed(5)
    fresh = MultiMaskFusion(LAYERS, OUT, grid=GRID, base_prompts=BASE).eval()
    with torch.no_grad():
        for block in fresh.blocks:
            block.level.weight.fill_(1.0)
    fresh.load_state_dict(old, strict=True)
    masks = torch.rand(2, LAYERS, S, S)
    torch.testing.assert_close(run(fresh, masks), run(mmf, masks))


# --------------------------------------------------------------------------------------------------
# Errors


def test_out_dim_not_divisible_by_layers_raises():
    with pytest.raises(AssertionError, match="divisible"):
        MultiMaskFusion(n_layers=3, out_dim=32)


def test_wrong_number_of_masks_raises(mmf):
    with pytest.raises(AssertionError, match="4 masks"):
        mmf(torch.zeros(1, LAYERS - 1, S, S))


def test_gradients_reach_every_block_and_the_base():
    torch.manual_seed(3)
    mmf = MultiMaskFusion(LAYERS, OUT, grid=GRID, base_prompts=BASE).train()
    mmf(torch.rand(2, LAYERS, S, S)).sum().backward()
    assert mmf.base.grad is not None and mmf.base.grad.abs().sum() > 0
    for i, block in enumerate(mmf.blocks):
        assert block.pointwise.weight.grad.abs().sum() > 0, f"block {i} got no gradient"
