"""Vision-guided decoder (paper Eq. 1).

Per tapped layer l: project the patch tokens into the text space, compare them with the class
prompts, softmax over the prompt classes, and read the anomaly probability as the probability of
the abnormal classes. The caller upsamples and averages the layer maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class VisionGuidedDecoder(nn.Module):
    def __init__(self, layer_dims: Sequence[int], text_dim: int, logit_scale: float = 100.0) -> None:
        super().__init__()
        self.projections = nn.ModuleList(nn.Linear(d, text_dim) for d in layer_dims)
        self.logit_scale = logit_scale

    def forward(self, patch_tokens: Sequence[torch.Tensor], text_classes: torch.Tensor) -> torch.Tensor:
        """patch_tokens: L tensors (B, N, C_l); text_classes (K, C) or (B, K, C), class 0 normal.

        Returns the per-layer anomaly probability (B, L, N).
        """
        assert len(patch_tokens) == len(self.projections), \
            f"decoder built for {len(self.projections)} layers, got {len(patch_tokens)}"
        assert text_classes.shape[-2] >= 2, "need a normal class and at least one abnormal class"
        text = F.normalize(text_classes, dim=-1)
        if text.dim() == 2:
            text = text.unsqueeze(0)  # (1, K, C)
        n_abnormal = text.shape[1] - 1
        maps = []
        for tokens, projection in zip(patch_tokens, self.projections, strict=True):
            feats = F.normalize(projection(tokens.to(projection.weight.dtype)), dim=-1)  # (B, N, C)
            logits = self.logit_scale * feats @ text.transpose(1, 2).to(feats.dtype)  # (B, N, K)
            # With many abnormal sentences a plain softmax would favour "abnormal" a priori; giving the
            # normal class log(K-1) extra makes it one normal class against the mean abnormal class.
            normal = logits[..., :1] + math.log(n_abnormal)  # (B, N, 1)
            probs = torch.cat([normal, logits[..., 1:]], dim=-1).softmax(dim=-1)  # (B, N, K)
            maps.append(1.0 - probs[..., 0])  # (B, N)
        return torch.stack(maps, dim=1)  # (B, L, N)
