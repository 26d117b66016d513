"""One builder for inspection, training and evaluation: a preset -> image tower, LLM and heads."""

from __future__ import annotations

from pathlib import Path

import torch

from iadgpt.config import Preset
from iadgpt.encoders import ClipTowers, build_clip
from iadgpt.llm import LanguageModel
from iadgpt.model import IADGPT, llm_token_norm
from iadgpt.precision import checkpoint_dtype, pick_dtype

ImageTower = ClipTowers  # or efficientnet.EfficientNetTower: the same encode_image/encode_text/layer_dims


def build_towers(preset: Preset):
    """The preset's frozen image (and text) tower."""
    if preset.efficientnet is not None:
        from iadgpt.efficientnet import build_efficientnet

        e = preset.efficientnet
        return build_efficientnet(e.variant, e.taps, pretrained=e.pretrained, seed=e.seed,
                                  grid_stride=e.grid_stride, pool=e.pool)
    assert preset.clip is not None
    return build_clip(preset.clip)


def llm_folder(preset: Preset) -> Path:
    """The folder of the preset's LLM: the tiny one built offline, or a local folder / HF-cache repo."""
    from iadgpt.tiny import ensure_tiny_llm
    from iadgpt.weights import resolve_model_folder

    cfg = preset.llm
    if cfg.tiny is not None:
        return ensure_tiny_llm(cfg.tiny)
    return resolve_model_folder(
        cfg.path, what=f"LLM of preset '{preset.name}'",
        fix="run `iadgpt models download " + preset.name + "` on an online machine, "
            "`iadgpt models import DIR`, or point Settings > Model (or --llm) at the model folder")


def load_llm(preset: Preset, device: torch.device | str, dtype: torch.dtype) -> LanguageModel:
    """The preset's LLM, loaded from `llm_folder(preset)`."""
    return LanguageModel.load(llm_folder(preset), device, dtype)


def preset_dtype(preset: Preset, precision: str, device: torch.device) -> torch.dtype:
    """pick_dtype for this preset: `auto` on a GPU follows the dtype its LLM was trained in."""
    trained = checkpoint_dtype(llm_folder(preset)) if precision == "auto" and device.type == "cuda" else None
    return pick_dtype(precision, device, trained)


def build_model(preset: Preset, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                ) -> tuple[IADGPT, LanguageModel]:
    """The untrained IAD-GPT network (towers + fresh heads) and its LLM, on device in dtype."""
    llm = load_llm(preset, device, dtype)
    norm = llm_token_norm(llm.model) if preset.heads.token_norm else None
    model = IADGPT(preset, build_towers(preset), llm.hidden_size, token_norm=norm)
    return model.to(device, dtype), llm


def vision_module(model: IADGPT) -> torch.nn.Module | None:
    """The image tower's trainable-from-scratch module (open_clip's visual), None for a pretrained CNN."""
    towers = model.towers
    return towers.clip.visual if isinstance(towers, ClipTowers) else None
