"""Stage 0: make randomly initialised towers and LLM useful before the paper's three stages.

Only for presets whose image tower has no pretrained weights (clip.weights is null): the `demo`
preset, and `tiny-test` in tests. See docs/decisions/0004-demo-model.md.

(a) Image tower, self-supervised like NSA: the model's own vision-guided decoder (Eq. 1) turns
    every patch token of each tapped block into an anomaly probability, trained jointly with the
    tower with focal + dice against the synthetic mask max-pooled to the patch grid; a linear head on
    F_img predicts whether the image holds a synthetic anomaly. The decoder keeps what it learns and
    stage 2 continues from it (a throw-away head would leave stage 2 to start from nothing).
(b) LLM, a causal LM on the conversation corpus (training/corpus.py), with the image placeholder
    replaced by pretext slots: learned embeddings laid out like [E_img; E_fusion; E_base] that
    carry the conversation's state (normal/anomalous, defect cells of the 3x3 grid).

Both losses are summed and trained in one loop. The classification head and the slots are thrown
away after stage 0; the tower and the LLM are then frozen, exactly as the paper freezes its
pretrained ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from iadgpt.decoder import VisionGuidedDecoder
from iadgpt.encoders import ClipTowers
from iadgpt.llm import IGNORE_INDEX, embed_with_image
from iadgpt.position import POSITIONS
from iadgpt.training.losses import dice_loss, focal_loss, lm_loss

PRETEXT_PART = "pretext"  # checkpoint part name of the stage-0 heads (never in final weights)
SLOT_NOISE = 0.02  # std of the noise added to the slots, so the LLM reads their direction, not exact values


class PretextHeads(nn.Module):
    """Classification head on F_img and the LLM's pretext slots (segmentation uses the decoder)."""

    def __init__(self, embed_dim: int, llm_dim: int, fusion_grid: int, base_prompts: int) -> None:
        super().__init__()
        self.classify = nn.Linear(embed_dim, 1)
        self.grid = fusion_grid
        self.state = nn.Parameter(torch.randn(2, llm_dim) * 0.02)  # E_img: normal, anomalous
        self.cell_state = nn.Parameter(torch.randn(2, llm_dim) * 0.02)  # per fusion token: clean, defect
        self.cell_position = nn.Parameter(torch.randn(fusion_grid * fusion_grid, llm_dim) * 0.02)
        self.base = nn.Parameter(torch.randn(base_prompts, llm_dim) * 0.02)  # stands in for E_base
        # fusion token (r, c) of a g x g grid covers 3x3-position cell (3r // g, 3c // g)
        cover = [3 * (i // fusion_grid) // fusion_grid * 3 + 3 * (i % fusion_grid) // fusion_grid
                 for i in range(fusion_grid * fusion_grid)]
        self.register_buffer("cover", torch.tensor(cover), persistent=False)

    def slots(self, anomalous: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """anomalous (B,) bool, cells (B, 9) bool over position.POSITIONS -> slots (B, 1 + g*g + L3, D)."""
        B = anomalous.shape[0]
        e_img = self.state[anomalous.long()].unsqueeze(1)  # (B, 1, D)
        hit = cells[:, self.cover].long()  # (B, g*g)
        fusion = self.cell_state[hit] + self.cell_position.unsqueeze(0)  # (B, g*g, D)
        base = self.base.unsqueeze(0).expand(B, -1, -1)  # (B, L3, D)
        slots = torch.cat([e_img, fusion, base], dim=1)
        return slots + SLOT_NOISE * torch.randn_like(slots)


class PretextStep(nn.Module):
    """One stage-0 step: segmentation + classification losses on images, LM loss on conversations."""

    def __init__(self, towers: ClipTowers, decoder: VisionGuidedDecoder, heads: PretextHeads, llm_model,
                 image_token_id: int, pad_token_id: int, train_vision: bool = True) -> None:
        super().__init__()
        self.towers = towers
        self.train_vision = train_vision
        self.decoder = decoder
        self.heads = heads
        self.llm_model = llm_model
        self.image_token_id = image_token_id
        self.pad_token_id = pad_token_id

    def image_losses(self, images: torch.Tensor, masks: torch.Tensor, text_classes: torch.Tensor
                     ) -> dict[str, torch.Tensor]:
        if self.train_vision:
            visual = self.towers.clip.visual
            out = visual.forward_intermediates(images, indices=self.towers.tap_indices, output_fmt="NLC")
            patch = visual.patch_size
            grid = (images.shape[-2] // patch[0], images.shape[-1] // patch[1])
            tokens, global_embedding = out["image_intermediates"], out["image_features"]
        else:  # a pretrained tower stays frozen; only the decoder learns to segment its features
            features = self.towers.encode_image(images)
            tokens, global_embedding, grid = features.patch_tokens, features.global_embedding, features.grid
        maps = self.decoder(tokens, text_classes).unflatten(-1, grid)  # (B, L, h, w)
        focal, dice = layer_map_losses(maps, masks)
        label = (masks.flatten(1).amax(dim=1) > 0).float()  # (B,)
        logit = self.heads.classify(global_embedding.float()).squeeze(-1)  # (B,)
        return {"focal": focal, "dice": dice,
                "cls": F.binary_cross_entropy_with_logits(logit, label)}

    def lm_loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, anomalous: torch.Tensor,
                cells: torch.Tensor, labels: torch.Tensor | None = None,
                token_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Causal LM loss on `labels`; None: on every real text token (slots and padding ignored).

        Labels on the answers only matter: on every token, the one verdict token that depends on
        the slots is a ~1/150 share of the loss, and the LLM learns the answer prior instead.
        """
        if labels is None:
            labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
            labels = labels.masked_fill(input_ids == self.image_token_id, IGNORE_INDEX)
        slots = self.heads.slots(anomalous, cells)  # (B, K, D)
        embeds, mask, spliced = embed_with_image(self.llm_model, input_ids, slots, self.image_token_id,
                                                 self.pad_token_id, attention_mask, labels)
        return lm_loss(self.llm_model, embeds, mask, spliced, token_weights)

    def forward(self, images: torch.Tensor | None, masks: torch.Tensor | None, text_classes: torch.Tensor,
                input_ids: torch.Tensor, attention_mask: torch.Tensor, anomalous: torch.Tensor,
                cells: torch.Tensor, labels: torch.Tensor | None = None,
                token_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        # With a pretrained image tower there is nothing to pretrain on images (stage 2 trains the
        # decoder): stage 0 is the LM alone, and images is None.
        out = self.image_losses(images, masks, text_classes) if images is not None else {}
        out["lm"] = self.lm_loss(input_ids, attention_mask, anomalous, cells, labels, token_weights)
        out = {k: v.float() for k, v in out.items()}
        out["loss"] = sum(out.values())
        return out


def layer_map_losses(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Focal and dice of every layer map (B, L, h, w) against the pixel masks (B, S, S), averaged
    over the layers; a patch is anomalous if any of its pixels is (max-pooled target)."""
    target = F.adaptive_max_pool2d(masks.unsqueeze(1).float(), maps.shape[-2:])  # (B, 1, h, w)
    target = target.expand(-1, maps.shape[1], -1, -1).flatten(0, 1).unsqueeze(1)  # (B*L, 1, h, w)
    prob = maps.float().flatten(0, 1).unsqueeze(1)  # (B*L, 1, h, w)
    return focal_loss(prob, target), dice_loss(prob, target)


def cells_tensor(cell_lists: list[tuple[int, ...]]) -> torch.Tensor:
    """Defect cells per conversation -> (B, 9) bool over position.POSITIONS."""
    out = torch.zeros(len(cell_lists), len(POSITIONS), dtype=torch.bool)
    for b, cells in enumerate(cell_lists):
        out[b, list(cells)] = True
    return out
