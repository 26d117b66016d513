"""Stand-ins for real pretrained weights, in the exact on-disk formats, built offline in seconds.

No real weights exist where the tests run, so the real-weights path (HF cache lookups, open_clip
checkpoints, Hugging Face LLM folders with each family's tokenizer and chat template) is exercised
with small random models written in the formats the real ones ship in:

* open_clip checkpoints: ``open_clip_config.json`` + ``open_clip_model.safetensors`` (or
  ``open_clip_pytorch_model.bin``), as the laion hub repos hold them;
* the Hugging Face cache layout: ``models--org--name/blobs/<sha256>``, ``snapshots/<commit>/<file>``
  as relative symlinks to the blobs, and ``refs/main`` naming the commit;
* LLM folders in four families, each with a real ``tokenizer.json`` trained here with `tokenizers`:
  Qwen2 (byte-level BPE, ``<|im_start|>``/``<|im_end|>``, eos ``<|im_end|>``, pad ``<|endoftext|>``,
  no BOS, config vocabulary larger than the tokenizer's, bf16 in config.json), Llama-2-chat
  (sentencepiece-style ``▁`` pieces, BOS ``<s>`` added by the tokenizer and written by the template),
  Mistral-Instruct (a template that raises on a system turn) and Vicuna v1.5 (no chat template);
* a safetensors file whose header has a real architecture's names and shapes but no data on disk
  (a sparse file), for structural checks of full-size checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import torch

# Small open_clip towers (the tiny-test preset's shape).
TINY_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 128, "layers": 4, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
LAION_L14 = "laion/CLIP-ViT-L-14-laion2B-s32B-b82K"
QWEN = "Qwen/Qwen2.5-1.5B-Instruct"

CORPUS = """
Yes, there is an anomaly in the image, at the top left of the image. Yes yes YES
No, there are no abnormalities in the image. No no NO
You are an industrial inspection assistant. You look at an image of a product and answer questions
about anomalies in it: whether there is one, where it is and what kind it is.
This is a photo of a generic product for industrial inspection. Is there any anomaly in the image?
Where is the defect? What kind of defect is it? How big is it? Is it safe to ship?
Map evidence: strongest response at the center; 1 region; small; shape: compact spot; likely type: crack.
The anomaly is at the center, top, bottom, left, right of the image. Cracks, scratches, holes, dents.
"""

# Chat templates in each family's format (written for these tests from the families' documented formats).
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
MISTRAL_TEMPLATE = (  # Mistral-Instruct v0.1: user/assistant only, a system turn raises
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
FAMILIES = ("qwen2", "llama", "mistral", "vicuna")


# ---------------------------------------------------------------------------------------------
# open_clip checkpoints


def write_open_clip_checkpoint(folder: Path, arch: dict | None = None, *, seed: int = 0, pickle: bool = False,
                               mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
                               std: tuple[float, float, float] = (0.5, 0.5, 0.5)) -> Path:
    """open_clip_config.json + open_clip_model.safetensors (or open_clip_pytorch_model.bin) of random
    towers of `arch` in `folder`, as a laion hub repo holds them; returns the weights file."""
    import open_clip
    from safetensors.torch import save_file

    arch = arch or TINY_CLIP
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        state = open_clip.model.CLIP(**arch).state_dict()
    config = {"model_cfg": arch, "preprocess_cfg": {"mean": list(mean), "std": list(std),
                                                    "interpolation": "bicubic", "resize_mode": "shortest"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config), encoding="utf-8")
    if pickle:
        path = folder / "open_clip_pytorch_model.bin"
        torch.save(state, path)
    else:
        path = folder / "open_clip_model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def write_transformers_clip(path: Path) -> Path:
    """A `model.safetensors` in transformers' CLIPModel naming (what laion repos also ship): real file,
    wrong format for open_clip."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"vision_model.embeddings.patch_embedding.weight": torch.zeros(8, 3, 4, 4),
               "vision_model.encoder.layers.0.self_attn.q_proj.weight": torch.zeros(8, 8),
               "text_model.embeddings.token_embedding.weight": torch.zeros(16, 8),
               "logit_scale": torch.zeros(())}, str(path))
    return path


def architecture_shapes(arch_name: str) -> dict[str, tuple[list[int], str]]:
    """{tensor name: (shape, safetensors dtype)} of an open_clip architecture, built on the meta device."""
    import open_clip

    cfg = open_clip.get_model_config(arch_name)
    cfg = {k: v for k, v in cfg.items() if k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu")}
    with torch.device("meta"):
        model = open_clip.model.CLIP(**cfg)
    return {k: (list(v.shape), "F16") for k, v in model.state_dict().items()}


def write_sparse_safetensors(path: Path, shapes: dict[str, tuple[list[int], str]]) -> Path:
    """A valid safetensors file with these names and shapes whose data is a hole (no disk used)."""
    sizes = {"F16": 2, "BF16": 2, "F32": 4}
    header: dict = {}
    offset = 0
    for name, (shape, dtype) in shapes.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return path


# ---------------------------------------------------------------------------------------------
# the Hugging Face cache layout


def put_in_hf_cache(cache: Path, repo_id: str, source: Path, *, move: bool = False) -> Path:
    """Every file of `source` into the cache as the hub writes it (blobs, snapshot symlinks, refs/main);
    returns the snapshot folder. Blobs are named by a hash of the file's path and size (the hub uses a
    content hash; nothing reads it back), so a large sparse file is never read; `move` moves it there."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    files = sorted(p for p in source.rglob("*") if p.is_file())
    commit = hashlib.sha1("".join(f"{p.relative_to(source)}{p.stat().st_size}" for p in files).encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for p in files:
        rel = p.relative_to(source)
        blob = repo / "blobs" / hashlib.sha256(f"{rel}:{p.stat().st_size}".encode()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if move:
            p.replace(blob)
        else:
            shutil.copyfile(p, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(*[".."] * (len(rel.parts) + 1)) / "blobs" / blob.name)  # up to the repo folder
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot


# ---------------------------------------------------------------------------------------------
# LLM folders


def _byte_level_tokenizer(specials: list[str], corpus: str, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus.splitlines(), trainer)
    return tok


def _sentencepiece_style_tokenizer(corpus: str, vocab_size: int):
    """BPE over '▁'-marked words with byte fallback, BOS added by the post-processor: Llama's tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    alphabet = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", *alphabet],
                                  show_progress=False)
    tok.train_from_iterator(corpus.splitlines(), trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    return tok


def write_llm_folder(folder: Path, family: str, *, corpus: str = CORPUS, vocab_size: int = 600,
                     seed: int = 0) -> Path:
    """A tiny random causal LM of `family` (see FAMILIES) with its tokenizer files and chat template,
    saved as a Hugging Face model folder (config.json, model.safetensors, tokenizer files)."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    assert family in FAMILIES, family
    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=512)
    if family == "qwen2":
        raw = _byte_level_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], corpus, vocab_size)
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                            additional_special_tokens=["<|im_start|>", "<|im_end|>"])
        tokenizer.chat_template = QWEN_TEMPLATE
        config = Qwen2Config(vocab_size=len(tokenizer) + 37, tie_word_embeddings=True, dtype="bfloat16",
                             eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.pad_token_id, **sizes)
        model_class = Qwen2ForCausalLM
    else:
        raw = _sentencepiece_style_tokenizer(corpus, vocab_size)
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>",
                                            unk_token="<unk>")
        tokenizer.chat_template = {"llama": LLAMA2_TEMPLATE, "mistral": MISTRAL_TEMPLATE, "vicuna": None}[family]
        common = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False, **sizes)
        if family == "mistral":
            config, model_class = MistralConfig(dtype="bfloat16", **common), MistralForCausalLM
        else:
            config, model_class = LlamaConfig(dtype="float16", **common), LlamaForCausalLM
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class(config).to(config.dtype)  # stored in the family's dtype, as the real weights are
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_preset(path: Path, *, clip_weights: str, llm: str, name: str | None = None, **clip_extra) -> Path:
    """A preset .json with the small towers of TINY_CLIP reading `clip_weights` and the LLM at `llm`."""
    preset = {
        "name": name or path.stem,
        "description": "stand-in of a real-weights preset: small towers in the real on-disk formats",
        "clip": {"arch_config": TINY_CLIP, "weights": clip_weights, "taps": [1, 2, 3, 4], "image_size": 128,
                 **clip_extra},
        "llm": {"path": llm, "max_new_tokens": 6},
        "heads": {"mask_size": 32, "fusion_grid": 3, "base_prompts": 2, "tge_heads": 2, "tge_ffn_ratio": 2.0},
        "inference": {"smoothing_sigma": 2.0, "max_memory_patches": 2048, "defect_types_top_k": 3},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(preset), encoding="utf-8")
    return path
