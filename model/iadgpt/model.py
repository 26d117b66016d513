"""The IAD-GPT network around the frozen towers: decoder, memory bank read-out, TGE and MMF.

Tensors in, tensors out: no file I/O, no device choice, no pre/post-processing (see inspector.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from iadgpt.config import Preset
from iadgpt.decoder import VisionGuidedDecoder
from iadgpt.encoders import ClipTowers, VisualFeatures
from iadgpt.memory_bank import BankMaps
from iadgpt.mmf import MultiMaskFusion
from iadgpt.prompts import TextPrompts
from iadgpt.tge import TextGuidedEnhancer

TRAINABLE_PARTS = ("decoder", "tge", "mmf")


@dataclass
class VisionOutput:
    layer_maps: torch.Tensor  # per-layer anomaly maps (B, L, h, w) in [0, 1]
    image_embeds: torch.Tensor  # [E_img; E_expert] for the LLM (B, 1 + L1 + L3, D)


def llm_token_norm(llm_model) -> float:
    """The median norm of an LLM's input token embeddings: the scale its layers were trained to read."""
    weight = llm_model.get_input_embeddings().weight.detach()
    return float(weight.float().norm(dim=-1).median())


class IADGPT(nn.Module):
    """The frozen image/text towers plus the trainable heads, for an LLM of width llm_dim."""

    def __init__(self, preset: Preset, towers: ClipTowers, llm_dim: int, token_norm: float | None = None) -> None:
        """token_norm: the norm every image token is rescaled to (preset.heads.token_norm; see
        `llm_token_norm`); None keeps the heads' raw outputs."""
        super().__init__()
        heads = preset.heads
        self.preset = preset
        self.towers = towers
        n_layers = len(towers.layer_dims)
        self.decoder = VisionGuidedDecoder(towers.layer_dims, towers.embed_dim, heads.logit_scale)
        self.tge = TextGuidedEnhancer(towers.embed_dim, towers.embed_dim, llm_dim, n_experts=2,
                                      heads=heads.tge_heads, ffn_ratio=heads.tge_ffn_ratio)
        self.mmf = MultiMaskFusion(n_layers, llm_dim, grid=heads.fusion_grid, base_prompts=heads.base_prompts)
        self.token_norm = token_norm

    def trainable_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: getattr(self, name).state_dict() for name in TRAINABLE_PARTS}

    def layer_maps(self, features: VisualFeatures, prompts: TextPrompts,
                   memory_bank: BankMaps | None = None, use_decoder: bool = True) -> torch.Tensor:
        """Per-layer anomaly maps (B, L, h, w): decoder (Eq. 1), memory bank (Eq. 2), or their mean."""
        h, w = features.grid
        maps = []
        if use_decoder:
            maps.append(self.decoder(features.patch_tokens, prompts.decoder_classes))  # (B, L, N)
        if memory_bank is not None:
            scores = memory_bank.anomaly_scores(features.patch_tokens)  # (B, L, N), Eq. 2 calibrated
            maps.append(scores.to(features.patch_tokens[0].dtype))
        assert maps, "need the decoder, a memory bank, or both"
        combined = torch.stack(maps).mean(dim=0)  # (B, L, N)
        return combined.unflatten(-1, (h, w))  # (B, L, h, w)

    def image_embeddings(self, features: VisualFeatures, prompts: TextPrompts,
                         layer_maps: torch.Tensor) -> torch.Tensor:
        """[E_img; E_expert] (B, 1 + L1 + L3, D) from F_img, T_win and the layer masks."""
        size = self.preset.heads.mask_size
        masks = F.interpolate(layer_maps.float(), size=(size, size), mode="bilinear",
                              align_corners=False)  # (B, L, S, S)
        e_img = self.tge(features.global_embedding, prompts.win)  # (B, 1, D)
        e_expert = self.mmf(masks.to(e_img.dtype))  # (B, L1 + L3, D)
        tokens = torch.cat([e_img, e_expert], dim=1)
        if self.token_norm is None:
            return tokens
        return (F.normalize(tokens.float(), dim=-1) * self.token_norm).to(tokens.dtype)

    def forward(self, images: torch.Tensor, prompts: TextPrompts, memory_bank: BankMaps | None = None,
                use_decoder: bool = True) -> VisionOutput:
        features = self.towers.encode_image(images)
        maps = self.layer_maps(features, prompts, memory_bank, use_decoder)
        return VisionOutput(maps, self.image_embeddings(features, prompts, maps))
