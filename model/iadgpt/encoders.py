"""The frozen open_clip towers: image encoder (global embedding + tapped patch tokens) and text encoder."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import open_clip
import torch
from torch import nn

from iadgpt.config import ClipConfig
from iadgpt.errors import ConfigError, WeightsError

log = logging.getLogger(__name__)

CLIP_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors")


@dataclass
class VisualFeatures:
    """What the image encoder gives the rest of the model."""

    global_embedding: torch.Tensor  # F_img (B, C_embed)
    patch_tokens: list[torch.Tensor]  # F_patch^l, one per tap, each (B, N, C_vis)
    grid: tuple[int, int]  # patch grid (h, w), N = h * w


class ClipTowers(nn.Module):
    """open_clip CLIP with the taps of a preset. Frozen: always used under no_grad and eval()."""

    def __init__(self, clip: open_clip.model.CLIP, cfg: ClipConfig, tokenizer) -> None:
        super().__init__()
        self.clip = clip
        self.cfg = cfg
        self.tokenizer = tokenizer
        blocks = len(clip.visual.transformer.resblocks)
        if max(cfg.taps) > blocks:
            raise ConfigError(f"preset taps {list(cfg.taps)} exceed the image encoder's {blocks} blocks")
        self.tap_indices = [t - 1 for t in cfg.taps]  # open_clip counts blocks from 0
        self.embed_dim = int(clip.text_projection.shape[1]) if clip.text_projection is not None \
            else int(clip.token_embedding.weight.shape[1])
        self.vision_width = int(clip.visual.conv1.out_channels)
        self.requires_grad_(False)
        self.eval()

    @property
    def layer_dims(self) -> list[int]:
        return [self.vision_width] * len(self.tap_indices)

    def train(self, mode: bool = True) -> ClipTowers:
        # The towers stay frozen in eval mode even when the heads around them train.
        return super().train(False)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> VisualFeatures:
        """images (B, 3, S, S), normalised -> global embedding and tapped patch tokens."""
        out = self.clip.visual.forward_intermediates(images, indices=self.tap_indices, output_fmt="NLC")
        patch = self.clip.visual.patch_size
        grid = (images.shape[-2] // patch[0], images.shape[-1] // patch[1])
        return VisualFeatures(out["image_features"], list(out["image_intermediates"]), grid)

    @torch.no_grad()
    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """texts -> (K, C_embed) embeddings, L2-normalised by default."""
        device = self.clip.token_embedding.weight.device
        tokens = self.tokenizer(texts).to(device)  # (K, context_length)
        features = self.clip.encode_text(tokens, normalize=normalize)
        return features


def arch_config(cfg: ClipConfig) -> dict:
    if cfg.arch_config is not None:
        return dict(cfg.arch_config)
    model_cfg = open_clip.get_model_config(cfg.arch)
    if model_cfg is None:
        raise ConfigError(f"open_clip has no architecture '{cfg.arch}'; "
                          f"choose one of open_clip.list_models() in the preset")
    return model_cfg


def build_clip(cfg: ClipConfig) -> ClipTowers:
    """Build the towers; load pretrained weights when the preset names them (local files only)."""
    model_cfg = arch_config(cfg)
    vision_size = model_cfg["vision_cfg"].get("image_size", 224)
    if vision_size != cfg.image_size:
        raise ConfigError(f"clip.image_size {cfg.image_size} does not match the tower's {vision_size}")
    model_cfg = {k: v for k, v in model_cfg.items() if k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")}
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        clip = open_clip.model.CLIP(**model_cfg)
    if cfg.weights:
        from iadgpt.weights import load_state_dict_file, resolve_checkpoint
        from iadgpt.weights_fit import clip_format_hint

        path = resolve_checkpoint(
            cfg.weights, filenames=CLIP_FILENAMES, what=f"open_clip {cfg.arch or 'custom'}",
            fix="run `iadgpt models download PRESET` on an online machine, or `iadgpt models import DIR`, "
                "or point Settings > Model > CLIP weights (or --clip) at the weights file or folder")
        state = load_state_dict_file(path)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        missing, unexpected = clip.load_state_dict(state, strict=False)
        if missing:
            raise WeightsError(f"{path} does not fit open_clip {cfg.arch or 'custom towers'}: {len(missing)} "
                               f"tensors missing (e.g. {missing[:3]}); {clip_format_hint(state)}")
        if unexpected:
            log.warning("%s: ignored %d unexpected tensors", path, len(unexpected))
        log.info("loaded open_clip weights from %s", path)
    else:
        log.info("open_clip %s with random weights (seed %d)", cfg.arch or "custom tower", cfg.seed)
    context = model_cfg["text_cfg"].get("context_length", 77)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    return ClipTowers(clip, cfg, tokenizer)
