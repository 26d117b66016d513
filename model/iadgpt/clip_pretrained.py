"""How a named open_clip checkpoint wants its images: normalisation and interpolation.

Checkpoints differ: OpenAI's and most LAION ViT-H ones use OpenAI's dataset mean and std, LAION's
ViT-L-14 `laion2b_s32b_b82k` uses 0.5/0.5 (Inception). The values come, in this order, from

1. the preset itself (`clip.mean` / `clip.std` / `clip.interpolation`), when it sets them;
2. `open_clip_config.json` beside a local checkpoint (its `preprocess_cfg`, as the hub repos hold it);
3. open_clip's registry of pretrained checkpoints (`open_clip.get_pretrained_cfg`, offline), found by
   the preset's `arch` and `pretrained` tag or by the `hf-hub:` repo of its weights;
4. OpenAI's values, for random towers and checkpoints open_clip does not know (logged).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from iadgpt.config import CLIP_MEAN, CLIP_STD, HF_PREFIX, ClipConfig

log = logging.getLogger(__name__)

OPEN_CLIP_CONFIG = "open_clip_config.json"


@dataclass(frozen=True)
class ClipPreprocess:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # "bicubic" or "bilinear"
    source: str  # where the values came from, for logs and `models list`


def clip_preprocess(clip: ClipConfig) -> ClipPreprocess:
    """The normalisation and interpolation of the preset's open_clip checkpoint (see the module doc)."""
    return _resolve(clip.arch, clip.pretrained, clip.weights, clip.mean, clip.std, clip.interpolation)


@functools.lru_cache(maxsize=64)
def _resolve(arch: str | None, tag: str | None, weights: str | None, mean, std, interpolation: str | None,
             ) -> ClipPreprocess:
    found = _from_local_config(weights) or _from_registry(arch, tag, weights)
    if found is None:
        if weights:
            log.warning("open_clip does not know the checkpoint %s and no %s lies beside it: using OpenAI's "
                        "normalisation; set clip.mean and clip.std in the preset if it was trained otherwise",
                        weights, OPEN_CLIP_CONFIG)
        found = ClipPreprocess(CLIP_MEAN, CLIP_STD, "bicubic", "OpenAI default")
    return ClipPreprocess(tuple(mean) if mean is not None else found.mean,
                          tuple(std) if std is not None else found.std,
                          interpolation or found.interpolation,
                          "preset" if mean is not None and std is not None else found.source)


def _from_local_config(weights: str | None) -> ClipPreprocess | None:
    if not weights or weights.startswith(HF_PREFIX):
        return None
    path = Path(os.path.expandvars(os.path.expanduser(weights)))
    config = (path if path.is_dir() else path.parent) / OPEN_CLIP_CONFIG
    try:
        cfg = json.loads(config.read_text(encoding="utf-8")).get("preprocess_cfg") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if "mean" not in cfg or "std" not in cfg:
        return None
    return ClipPreprocess(tuple(cfg["mean"]), tuple(cfg["std"]), cfg.get("interpolation", "bicubic"), str(config))


def _from_registry(arch: str | None, tag: str | None, weights: str | None) -> ClipPreprocess | None:
    import open_clip

    repo = weights[len(HF_PREFIX):].partition("@")[0].strip("/") if weights and weights.startswith(HF_PREFIX) \
        else None
    for name, pretrained in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(name, pretrained)
        by_tag = tag is not None and name == arch and pretrained == tag
        by_repo = repo is not None and cfg.get("hf_hub", "").strip("/") == repo
        if (by_tag or by_repo) and "mean" in cfg:
            return ClipPreprocess(tuple(cfg["mean"]), tuple(cfg["std"]), cfg.get("interpolation", "bicubic"),
                                  f"open_clip pretrained config {name}/{pretrained}")
    return None
