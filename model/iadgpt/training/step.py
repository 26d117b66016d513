"""One training step of stages 1-3 (the module accelerate runs) and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from iadgpt.llm import LanguageModel, embed_with_image
from iadgpt.memory_bank import BankMaps
from iadgpt.model import IADGPT
from iadgpt.prompts import TextPrompts
from iadgpt.training.losses import dice_loss, focal_loss, lm_loss
from iadgpt.training.pretext import layer_map_losses


class TrainStep(nn.Module):
    """model + LLM -> losses for one batch; the module handed to accelerate (forward = one step)."""

    def __init__(self, model: IADGPT, llm: LanguageModel) -> None:
        super().__init__()
        self.model = model
        self.llm_model = llm.model
        self.image_token_id = llm.image_token_id
        self.pad_token_id = llm.tokenizer.pad_token_id
        self.seg_loss = False
        self.answer_loss = True  # False: the decoder's maps alone (`--decoder-only`), no LLM pass

    def forward(self, images: torch.Tensor, masks: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, labels: torch.Tensor, win: torch.Tensor,
                apg: torch.Tensor, memory_bank: BankMaps | None = None,
                use_decoder: bool = True, token_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        towers = self.model.towers
        dtype = next(towers.parameters()).dtype
        features = towers.encode_image(images.to(dtype))  # no grad: frozen
        prompts = TextPrompts("batch", win, apg, [])
        # The LLM learns to read the decoder's map, the memory bank's, or their mean (Inspector.use_decoder).
        maps = self.model.layer_maps(features, prompts, memory_bank, use_decoder=use_decoder)  # (B, L, h, w)
        out: dict[str, torch.Tensor] = {}
        if self.answer_loss:
            image_embeds = self.model.image_embeddings(features, prompts, maps)  # (B, K, D)
            embeds, mask, spliced = embed_with_image(self.llm_model, input_ids, image_embeds, self.image_token_id,
                                                     self.pad_token_id, attention_mask, labels)
            out["ce"] = lm_loss(self.llm_model, embeds, mask, spliced, token_weights).float()
        if self.seg_loss:
            size = masks.shape[-2:]
            pred = F.interpolate(maps.float().mean(dim=1, keepdim=True), size=size, mode="bilinear",
                                 align_corners=False)  # (B, 1, S, S)
            layer_focal, layer_dice = layer_map_losses(maps, masks)
            out["focal"] = (focal_loss(pred, masks) + layer_focal) / 2
            out["dice"] = (dice_loss(pred, masks) + layer_dice) / 2
        out["loss"] = sum(out.values())
        return out


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then one cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
