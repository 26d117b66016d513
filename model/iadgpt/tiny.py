"""Small random-initialised language models with a tokenizer built offline.

They let tests and benchmarks run the very same loading path as a real model (a local folder with
config.json, model.safetensors and tokenizer files) on a machine with no downloaded weights. The
folder is built once, deterministically from the config, and cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from iadgpt.config import TinyLLMConfig

log = logging.getLogger(__name__)

_SPECIALS = ["<pad>", "<s>", "</s>", "<image>"]
_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}### Human: {{ m['content'] }}\n"
    "{% else %}### Assistant: {{ m['content'] }}</s>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:{% endif %}"
)
# Text the byte-level BPE learns its merges from: the words this product's prompts and answers use.
# The words the evidence line and the answers share ("size:", "likely type:") and the shipped prompt
# banks' defect words are in it, so each is one token: the small LLM copies one token after a matching
# word far better than a word spelt out in pieces (" s" "i" "z" "e"; decision 0009).
_CORPUS = """
Yes, there is an anomaly in the image, at the top left of the image.
No, there are no abnormalities in the image.
Is there any anomaly in the image? Where is the defect? What kind of defect is it? How big is it?
This is a photo of a product for industrial inspection. The anomaly is at the center, top, bottom,
left, right, top right, bottom left, bottom right of the image. Cracks, scratches, holes, dents, stains,
contamination, missing parts, broken edges, pitting, blowholes, fray, uneven surface, color spots.
You are an industrial inspection assistant. You look at an image of a product and answer questions.
Map evidence: strongest response at the top; 1 region; 2 regions; tiny, small, medium, large (0.6 % of the
image); shape: thin line, compact spot, wide patch, missing piece, unclear; likely type: crack or scratch.
Is it safe to ship? Can this part be shipped? It should not be shipped. Set it aside for review. What should
I do? Reject the part or send it for review. No action is needed. Describe it. Compared with the good
references, it differs. It looks like the good references; nothing differs. There is one defect region.
There are 3 defect regions. The type is unclear from the image. 0 1 2 3 4 5 6 7 8 9 %
### Human: ### Assistant: ### System:
Map evidence: strongest response at the left; size: small, 1.0 % of the image; regions: 4; shape: unclear.
It is at the top; size: tiny, 0.3 % of the image. Defect regions: 2. The likely type: hole or dent.
A thin line at the top; size: large, 12.0 % of the image; likely type: crack. What size is the anomaly?
How large is the defect? How many anomalies do you see? Is the part OK? What do you see? Describe the defect.
There is no defect to name; the part looks normal. There is no defect to measure. Compare it with the reference.
blowhole break crack fray uneven pitting scratch hole dent stain bent broken bubble burn burnt burr chip
colour contamination corrosion cut damage damaged deformation deformed dirt discolouration edge extra
fold foreign glue leak liquid loose melt melted metal misaligned misplaced missing mould oil print residue
rough rust solder splinter split squeeze thread wear worn wax wire wick lead pin bristles shell teeth
The likely type: blowhole. The likely type: blowhole or stain. Answer from the image and its map evidence.
"""


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of a tokenizer's vocabulary: trained LLM weights record it and check it on loading."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(vocab.encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("IADGPT_CACHE", Path.home() / ".cache" / "iadgpt"))


def _fingerprint(cfg: TinyLLMConfig) -> str:
    fields = asdict(cfg)
    if not cfg.share_tokens:  # the folders built before the field keep their names
        del fields["share_tokens"]
    payload = json.dumps({"cfg": fields, "corpus": _CORPUS, "template": _CHAT_TEMPLATE,
                          "specials": _SPECIALS, "format": 1}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _build_tokenizer(cfg: TinyLLMConfig):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS.splitlines(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", additional_special_tokens=["<image>"])
    if cfg.share_tokens:
        # Matched in the text before the byte-level split (leftmost-longest, so "12.5" is one token,
        # never "1" + "2.5"); the space before a share stays a token of its own.
        fast.add_tokens([AddedToken(share, normalized=False) for share in share_strings()])
    fast.chat_template = _CHAT_TEMPLATE
    return fast


def share_strings() -> list[str]:
    """Every share of the image as the evidence line writes it (one decimal, 0.0 to 100.0)."""
    return [f"{tenths / 10:.1f}" for tenths in range(1001)]


def _build_model(cfg: TinyLLMConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        return LlamaForCausalLM(config)


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """transformers' progress bars off for the block, as they were after it."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def ensure_tiny_llm(cfg: TinyLLMConfig, root: Path | None = None) -> Path:
    """The folder of the tiny LLM described by cfg, building it on first use."""
    folder = (root or cache_root()) / f"tiny-llm-{_fingerprint(cfg)}"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        tokenizer = _build_tokenizer(cfg)
        model = _build_model(cfg, tokenizer)
        tokenizer.save_pretrained(staging)
        with _quiet_progress():  # a first start printed "Writing model shards: 100%" to the user's console
            model.save_pretrained(staging, safe_serialization=True)
        try:
            os.rename(staging, folder)  # atomic: a reader sees the whole folder or none
        except OSError:
            if not (folder / "config.json").is_file():  # not another process finishing first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("built tiny LLM in %s", folder)
    return folder
