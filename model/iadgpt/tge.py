"""Text-Guided Enhancer (paper Eq. 3-4).

A mixture of experts on the global image embedding, gated by the text: the gate compares an
attention summary of F_img with the T_win class embeddings (one expert per class), and the output
E_img is the gate-weighted sum of the experts, in the LLM's embedding width.
"""

from __future__ import annotations

import torch
from torch import nn


class Expert(nn.Module):
    """Linear lift to the LLM width, then a pre-norm attention block and a feed-forward block."""

    def __init__(self, in_dim: int, out_dim: int, heads: int, ffn_ratio: float) -> None:
        super().__init__()
        self.lift = nn.Linear(in_dim, out_dim)
        self.norm1 = nn.LayerNorm(out_dim)
        self.attn = nn.MultiheadAttention(out_dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(out_dim)
        hidden = int(out_dim * ffn_ratio)
        self.ffn = nn.Sequential(nn.Linear(out_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lift(x)  # (B, T, D)
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.ffn(self.norm2(x))  # (B, T, D)


class TextGuidedEnhancer(nn.Module):
    def __init__(self, image_dim: int, text_dim: int, out_dim: int, n_experts: int = 2,
                 heads: int = 4, ffn_ratio: float = 2.0) -> None:
        super().__init__()
        assert out_dim % heads == 0, f"TGE width {out_dim} must be divisible by its {heads} heads"
        gate_heads = heads if image_dim % heads == 0 else 1
        self.gate_norm = nn.LayerNorm(image_dim)
        self.gate_attn = nn.MultiheadAttention(image_dim, gate_heads, batch_first=True)
        self.gate_query = nn.Linear(image_dim, out_dim)
        self.gate_key = nn.Linear(text_dim, out_dim)
        self.experts = nn.ModuleList(Expert(image_dim, out_dim, heads, ffn_ratio) for _ in range(n_experts))
        self.scale = out_dim ** -0.5

    def gate(self, image: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
        """W_e (Eq. 3): image (B, T, C_img), win (E, C_text) or (B, E, C_text) -> (B, E)."""
        h = self.gate_norm(image)
        summary = (image + self.gate_attn(h, h, h, need_weights=False)[0]).mean(dim=1)  # (B, C_img)
        query = self.gate_query(summary)  # (B, D)
        keys = self.gate_key(win.to(query.dtype))  # (E, D) or (B, E, D)
        if keys.dim() == 2:
            keys = keys.unsqueeze(0).expand(query.shape[0], -1, -1)  # (B, E, D)
        assert keys.shape[1] == len(self.experts), \
            f"TGE has {len(self.experts)} experts but got {keys.shape[1]} T_win classes"
        logits = torch.einsum("bd,bed->be", query, keys) * self.scale  # (B, E)
        return logits.softmax(dim=-1)

    def forward(self, global_embedding: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
        """E_img (Eq. 4): global_embedding (B, C_img) or (B, T, C_img) -> (B, T, D)."""
        image = global_embedding if global_embedding.dim() == 3 else global_embedding.unsqueeze(1)
        image = image.to(self.gate_query.weight.dtype)  # (B, T, C_img)
        weights = self.gate(image, win)  # (B, E)
        outputs = torch.stack([expert(image) for expert in self.experts], dim=1)  # (B, E, T, D)
        return torch.einsum("be,betd->btd", weights, outputs)  # (B, T, D)
