"""Device and precision: which device a model runs on and in which floating-point type.

`auto` precision is fp32 on the CPU. On a GPU it is bf16 where the GPU supports it and the LLM was
trained in bf16 (its config.json says so, as Qwen2.5's and Llama's do): such models overflow in fp16,
whose range is far smaller. Otherwise fp16.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from iadgpt.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_CONFIG_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' was asked for but no CUDA GPU is available; choose 'cpu' "
                          f"or 'auto' in Settings > Model (or --device)")
    return torch.device(device)


def checkpoint_dtype(llm_folder: str | Path | None) -> torch.dtype | None:
    """The dtype a Hugging Face model folder's config.json says it was trained in (None: not said)."""
    if llm_folder is None:
        return None
    try:
        config = json.loads((Path(llm_folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    named = config.get("torch_dtype") or config.get("dtype") if isinstance(config, dict) else None
    return _CONFIG_DTYPES.get(str(named).removeprefix("torch.")) if named else None


def pick_dtype(precision: str, device: torch.device, trained: torch.dtype | None = None) -> torch.dtype:
    """The dtype for `precision` on `device`; `trained` is the LLM's own dtype (for `auto` on a GPU)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type != "cuda":
            return torch.float32
        if trained == torch.bfloat16:
            if torch.cuda.is_bf16_supported():
                return torch.bfloat16
            log.warning("the LLM was trained in bf16, which this GPU lacks; running it in fp16, where it may "
                        "overflow (choose fp32 if answers come out as NaN)")
        return torch.float16
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("fp16 is not supported on the CPU; choose fp32 or bf16 in Settings > Model (or "
                          "--precision)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"bf16 is not supported by the GPU {torch.cuda.get_device_name(device)}; choose fp16 "
                          f"or fp32 in Settings > Model (or --precision)")
    return _DTYPES[precision]
