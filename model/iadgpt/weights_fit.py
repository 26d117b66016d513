"""Do pretrained weights fit the architecture? Names and shapes only, never a full load.

`iadgpt doctor` calls a preset ready only when these checks pass: the open_clip checkpoint's tensors
(from the safetensors header, or a memory-mapped PyTorch file) against the towers built on the meta
device, and the LLM folder's weight files against the model its config.json describes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from iadgpt.config import ClipConfig
from iadgpt.errors import IADGPTError
from iadgpt.weights import tensor_shapes

TRANSFORMERS_CLIP_PREFIXES = ("vision_model.", "text_model.")
LLM_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
LLM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def shape_problems(source: Path, got: Mapping[str, tuple[int, ...]], want: Mapping[str, tuple[int, ...]],
                   what: str, may_miss: frozenset[str] = frozenset()) -> list[str]:
    """Sentences on what `got` (a file's tensors) lacks or holds reshaped compared with `want`."""
    missing = sorted(set(want) - set(got) - may_miss)
    reshaped = sorted(k for k in set(want) & set(got) if tuple(want[k]) != tuple(got[k]))
    problems = []
    if missing:
        problems.append(f"{source} does not fit {what}: {len(missing)} of its {len(want)} tensors are missing "
                        f"(e.g. {', '.join(missing[:3])})")
    if reshaped:
        k = reshaped[0]
        problems.append(f"{source} does not fit {what}: {len(reshaped)} tensors have other shapes (e.g. {k} is "
                        f"{list(got[k])}, {what} needs {list(want[k])})")
    return problems


def clip_format_hint(names: list[str] | set[str]) -> str:
    """The fix for a checkpoint that does not fit open_clip, naming transformers' CLIP format when it is that."""
    if any(n.startswith(TRANSFORMERS_CLIP_PREFIXES) for n in names):
        return ("it is in transformers' CLIPModel format (the repo's model.safetensors); open_clip needs the same "
                "repo's open_clip_model.safetensors (or open_clip_pytorch_model.bin)")
    return "use the checkpoint made for this architecture"


def clip_problems(path: Path, clip: ClipConfig) -> list[str]:
    """What keeps the open_clip checkpoint at `path` from loading into the preset's towers (empty: it fits)."""
    import open_clip

    from iadgpt.encoders import arch_config

    cfg = {k: v for k, v in arch_config(clip).items() if k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")}
    with torch.device("meta"):
        want = {k: tuple(v.shape) for k, v in open_clip.model.CLIP(**cfg).state_dict().items()}
    try:
        got = {k.removeprefix("module."): v for k, v in tensor_shapes(path).items()}
    except IADGPTError as exc:
        return [str(exc)]
    problems = shape_problems(path, got, want, f"open_clip {clip.arch or 'custom towers'}")
    if problems:
        problems[-1] += "; " + clip_format_hint(set(got))
    return problems


def llm_problems(folder: Path) -> list[str]:
    """What keeps the Hugging Face model folder from loading (empty: config, tokenizer and weights fit)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return [f"LLM folder {folder} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); copy the model's "
                f"whole Hugging Face folder"]
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        return [f"LLM folder {folder}: config.json describes no model transformers can build ({exc}); use a "
                f"causal LM that needs no code of its own"]
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    files = weight_files(folder)
    if not files:
        return [f"LLM folder {folder} holds no weights ({', '.join(LLM_WEIGHT_FILES)} or sharded with an index); "
                f"copy them, or run `iadgpt models download PRESET` on an online machine"]
    got: dict[str, tuple[int, ...]] = {}
    try:
        for path in files:
            got.update(tensor_shapes(path))
    except IADGPTError as exc:
        return [str(exc)]
    tied = frozenset({"lm_head.weight"}) if getattr(config, "tie_word_embeddings", False) else frozenset()
    return shape_problems(folder, got, want, f"the {config.model_type} model of its config.json", tied)


def weight_files(folder: Path) -> list[Path]:
    """The LLM folder's weight files: the shards an index lists, else the single file (safetensors first)."""
    for index in LLM_WEIGHT_INDEXES:
        if (folder / index).is_file():
            try:
                shards = sorted(set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError):
                return []
            return [folder / s for s in shards]
    return [folder / n for n in LLM_WEIGHT_FILES if (folder / n).is_file()][:1]


def part_problems(preset, what: str, path: Path) -> list[str]:
    """Structural problems of one found part of a preset ("clip", "llm"; the image-tower wheel has none)."""
    if what == "clip" and preset.clip is not None:
        return clip_problems(path, preset.clip)
    if what == "llm":
        return llm_problems(path)
    return []
