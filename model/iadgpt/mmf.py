"""Multi-Mask Fusion (paper Eq. 5-6).

Each layer mask M_i goes through its own Mask Convolution Block (strided convolutions, then a
depthwise-separable convolution) to E_dec_i (L1 x C); the layers are concatenated on channels to
E_fusion (L1 x C_emb), and learned base prompts E_base (L3 x C_emb) are appended on the length
axis: E_expert = [E_fusion; E_base].
"""

from __future__ import annotations

import torch
from torch import nn


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class MaskConvBlock(nn.Module):
    """One layer mask (B, 1, S, S) -> tokens (B, grid*grid, C).

    The convolutions' GroupNorm divides the mask's magnitude out, so they see its pattern only; the
    magnitude is the evidence (a good part's map reads near 0, a defect's near 1), so each grid cell's
    token also gets a learned projection of the mask's maximum and mean in that cell (`level`, zero at
    initialisation). Without it a new product's good parts read "Yes" whatever their map's strength
    (magnetic_tile, 8 references: p(Yes) 0.99 with the map scaled to a maximum of 0.06).
    """

    def __init__(self, channels: int, grid: int) -> None:
        super().__init__()
        widths = [max(channels // 4, 4), max(channels // 2, 8), channels]
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                       nn.GroupNorm(_groups(c_out), c_out), nn.GELU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.pointwise = nn.Conv2d(channels, channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.max_pool = nn.AdaptiveMaxPool2d(grid)
        self.level = nn.Linear(2, channels)
        nn.init.zeros_(self.level.weight)
        nn.init.zeros_(self.level.bias)
        self._register_load_state_dict_pre_hook(self._without_level_path)

    def _without_level_path(self, state_dict, prefix, *args) -> None:
        """Weights trained before the level path existed load with it at zero: they read as they did."""
        for name, tensor in (("weight", self.level.weight), ("bias", self.level.bias)):
            state_dict.setdefault(f"{prefix}level.{name}", torch.zeros_like(tensor))

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        x = self.convs(mask)  # (B, C, S/8, S/8)
        x = self.pointwise(self.depthwise(x))  # (B, C, S/8, S/8)
        x = self.pool(x)  # (B, C, g, g)
        stats = torch.cat([self.max_pool(mask), self.pool(mask)], dim=1)  # (B, 2, g, g): per-cell max, mean
        return x.flatten(2).transpose(1, 2) + self.level(stats.flatten(2).transpose(1, 2))  # (B, g*g, C)


class MultiMaskFusion(nn.Module):
    def __init__(self, n_layers: int, out_dim: int, grid: int = 3, base_prompts: int = 4) -> None:
        super().__init__()
        assert out_dim % n_layers == 0, \
            f"LLM width {out_dim} must be divisible by the {n_layers} layer masks for Multi-Mask Fusion"
        self.blocks = nn.ModuleList(MaskConvBlock(out_dim // n_layers, grid) for _ in range(n_layers))
        self.base = nn.Parameter(torch.randn(base_prompts, out_dim) * 0.02)  # E_base (L3, C_emb)

    @property
    def num_tokens(self) -> int:
        grid = self.blocks[0].pool.output_size
        return grid * grid + self.base.shape[0]

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """masks (B, L, S, S) in [0, 1] -> E_expert (B, L1 + L3, C_emb)."""
        assert masks.shape[1] == len(self.blocks), \
            f"Multi-Mask Fusion built for {len(self.blocks)} masks, got {masks.shape[1]}"
        masks = masks.to(self.base.dtype)
        decoded = [block(masks[:, i:i + 1]) for i, block in enumerate(self.blocks)]  # L x (B, L1, C)
        fusion = torch.cat(decoded, dim=-1)  # E_fusion (B, L1, C_emb)
        base = self.base.unsqueeze(0).expand(masks.shape[0], -1, -1)  # (B, L3, C_emb)
        return torch.cat([fusion, base], dim=1)  # E_expert (B, L1 + L3, C_emb)
