"""Estimated GPU memory per preset, from parameter counts (no GPU, no downloads): the README's table.

Parameters are counted exactly on the meta device (open_clip towers of the preset's architecture, the
LLM from the shape of its config.json, the heads as the preset builds them). Memory is then estimated:

* inference: every weight in 16-bit, plus the LLM's KV cache and activations for one conversation of
  PROMPT_TOKENS tokens, plus CUDA_CONTEXT for the CUDA context and allocator slack;
* training (stages 1-3): frozen weights in 16-bit, the heads in fp32 with AdamW (weights, gradients and
  two moments: 16 bytes per parameter), and the activations the backward pass keeps through the frozen
  LLM for a batch of BATCH conversations (about 34 * hidden bytes per token and layer in 16-bit,
  Korthikanti et al. 2022, without recomputation).

These are estimates; `benchmarks/gpu_check.py` measures the real peak on a GPU.

    .venv/bin/python benchmarks/memory_estimate.py
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from gpu_check import LLM_SHAPES  # noqa: E402 - beside this script

from iadgpt.config import load_preset  # noqa: E402
from iadgpt.encoders import arch_config  # noqa: E402

PROMPT_TOKENS = 160  # system text, evidence line, question, E_img + E_expert tokens, a short answer
BATCH = 8  # `iadgpt train --batch-size` default
CUDA_CONTEXT = 0.6  # GiB
PRESETS = {"workstation": "qwen2.5-1.5b", "paper": "vicuna-7b"}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def estimate(preset_name: str, llm_shape: str) -> dict[str, float]:
    import open_clip
    from transformers import AutoConfig, AutoModelForCausalLM

    from iadgpt.model import IADGPT, TRAINABLE_PARTS

    preset = load_preset(preset_name)
    cfg = {k: v for k, v in arch_config(preset.clip).items() if k in ("embed_dim", "vision_cfg", "text_cfg")}
    shape = dict(LLM_SHAPES[llm_shape])
    config = AutoConfig.for_model(shape.pop("model_type"), **shape)
    with torch.device("meta"):
        clip = open_clip.model.CLIP(**cfg)
        llm = AutoModelForCausalLM.from_config(config)
        from iadgpt.encoders import ClipTowers

        towers = ClipTowers(clip, preset.clip, tokenizer=None)
        heads = IADGPT(preset, towers, config.hidden_size)
    n_clip, n_llm = _count(clip), _count(llm)
    n_heads = sum(_count(getattr(heads, name)) for name in TRAINABLE_PARTS)
    gib = 2**30
    layers, hidden = config.num_hidden_layers, config.hidden_size
    kv_heads, head_dim = config.num_key_value_heads, hidden // config.num_attention_heads
    kv = 2 * layers * kv_heads * head_dim * PROMPT_TOKENS * 2  # keys and values, 16-bit
    logits = PROMPT_TOKENS * config.vocab_size * 4  # the fp32 logits of the prompt
    inference = (2 * (n_clip + n_llm + n_heads) + kv + logits) / gib + CUDA_CONTEXT
    activations = 34 * hidden * layers * PROMPT_TOKENS * BATCH + BATCH * PROMPT_TOKENS * config.vocab_size * 4 * 2
    training = (2 * (n_clip + n_llm) + 16 * n_heads + activations) / gib + CUDA_CONTEXT
    return {"clip": n_clip / 1e9, "llm": n_llm / 1e9, "heads": n_heads / 1e6, "inference": inference,
            "training": training}


def main() -> None:
    print(f"| preset | open_clip params | LLM params | heads params | inference, 16-bit (GiB) | "
          f"training stages 1-3, batch {BATCH} (GiB) |")
    print("|---|---|---|---|---|---|")
    for name, shape in PRESETS.items():
        e = estimate(name, shape)
        print(f"| {name} | {e['clip']:.2f} B | {e['llm']:.2f} B | {e['heads']:.1f} M | {e['inference']:.1f} | "
              f"{e['training']:.1f} |")


if __name__ == "__main__":
    main()
