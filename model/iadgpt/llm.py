"""The language model: loading from a local folder, the image splice, verdicts and streamed answers.

Image embeddings reach the LLM through `inputs_embeds`: the prompt holds one image placeholder
token, and `splice_image_embeddings` replaces it with [E_img; E_expert] (LLaVA-style).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from iadgpt.errors import WeightsError
from iadgpt.prompts import class_words

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
IGNORE_INDEX = -100
NORMAL_ANSWER = "No, there are no abnormalities in the image."
TURN_MARKERS = ("### Human:", "### Assistant:", "### System:")  # plain-transcript roles (and the tiny LLM's)


def splice_image_embeddings(
    input_ids: torch.Tensor,
    text_embeds: torch.Tensor,
    image_embeds: torch.Tensor,
    image_token_id: int,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Replace each row's single image placeholder with that row's image embeddings.

    input_ids (B, T), text_embeds (B, T, D), image_embeds (B, K, D), attention_mask (B, T),
    labels (B, T) or None. Returns inputs_embeds (B, T+K-1, D), attention_mask (B, T+K-1) and labels
    (B, T+K-1) with IGNORE_INDEX at the image positions. Every row holds exactly one placeholder, so
    every row grows by the same K-1 and left or right padding stays where it was.
    """
    B, T = input_ids.shape
    K = image_embeds.shape[1]
    is_image = input_ids == image_token_id  # (B, T)
    counts = is_image.sum(dim=1)
    assert bool((counts == 1).all()), f"each row needs exactly one image placeholder, got {counts.tolist()}"
    assert text_embeds.shape[:2] == (B, T) and image_embeds.shape[0] == B, "batch shapes disagree"
    position = is_image.float().argmax(dim=1)  # (B,)
    rows_embeds, rows_mask, rows_labels = [], [], []
    image_mask = attention_mask.new_ones(K)
    image_labels = None if labels is None else labels.new_full((K,), IGNORE_INDEX)
    for b in range(B):
        p = int(position[b])
        rows_embeds.append(torch.cat([text_embeds[b, :p], image_embeds[b].to(text_embeds.dtype),
                                      text_embeds[b, p + 1:]]))  # (T+K-1, D)
        rows_mask.append(torch.cat([attention_mask[b, :p], image_mask, attention_mask[b, p + 1:]]))
        if labels is not None:
            rows_labels.append(torch.cat([labels[b, :p], image_labels, labels[b, p + 1:]]))
    spliced_labels = torch.stack(rows_labels) if labels is not None else None
    return torch.stack(rows_embeds), torch.stack(rows_mask), spliced_labels


def embed_with_image(llm_model, input_ids: torch.Tensor, image_embeds: torch.Tensor, image_token_id: int,
                     pad_token_id: int, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Token ids with one image placeholder per row -> inputs_embeds with the image spliced in.

    The one embed-and-splice path of inspection, chat, training and stage 0: the placeholder is
    embedded as padding (its embedding is replaced anyway), then `splice_image_embeddings`.
    """
    safe_ids = input_ids.masked_fill(input_ids == image_token_id, pad_token_id)
    text_embeds = llm_model.get_input_embeddings()(safe_ids)  # (B, T, D)
    return splice_image_embeddings(input_ids, text_embeds, image_embeds.to(text_embeds.dtype), image_token_id,
                                   attention_mask, labels)


def user_text(text: str) -> str:
    """Text a person typed (a class name, a question, an earlier turn): it can never hold the image
    placeholder, which only the program places (a forged one would splice the image twice)."""
    return text.replace(IMAGE_TOKEN, "")


def inspection_messages(system_prompt: str, class_name: str, evidence: str | None = None) -> list[dict[str, str]]:
    """The first turn of every inspection: the model is trained and asked with exactly this text.

    evidence: the map's evidence line (evidence.Evidence.text), placed after the image so that
    answers can name the position, size and type the screen shows.
    """
    words = class_words(class_name).replace(IMAGE_TOKEN, "")
    lines = [IMAGE_TOKEN]
    if evidence:
        lines.append(evidence.replace(IMAGE_TOKEN, ""))
    lines.append(f"This is a photo of a {words} for industrial inspection. Is there any anomaly in the image?")
    first = "\n".join(lines)
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": first}]


def plain_transcript(messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """A simple '### Human / ### Assistant' transcript for tokenizers without a chat template."""
    parts = []
    for m in messages:
        role = {"system": "### System", "user": "### Human", "assistant": "### Assistant"}[m["role"]]
        parts.append(f"{role}: {m['content']}")
    text = "\n".join(parts)
    return text + "\n### Assistant:" if add_generation_prompt else text


@dataclass
class Verdict:
    """The first answer token's Yes/No read-out."""

    defective: bool
    p_yes: float  # P(Yes) / (P(Yes) + P(No)) of the first answer token


class LanguageModel:
    """A Hugging Face causal LM and its tokenizer, with the image placeholder registered."""

    def __init__(self, model, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        if IMAGE_TOKEN not in tokenizer.get_vocab():
            # The placeholder is never embedded (it is replaced), so the embedding table stays as is.
            tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.yes_ids = self._first_token_ids(["Yes", " Yes", "yes"])
        self.no_ids = self._first_token_ids(["No", " No", "no"]) - self.yes_ids
        assert self.yes_ids and self.no_ids, "tokenizer cannot tell 'Yes' from 'No'"
        model.requires_grad_(False)
        model.eval()

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> LanguageModel:
        """Load model and tokenizer from a local folder (never from the network)."""
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise WeightsError(f"LLM folder {folder} has no config.json; point Settings > Model (or --llm) "
                               f"at a Hugging Face model folder, or run `iadgpt models download PRESET`")
        hf_logging.disable_progress_bar()
        try:
            # trust_remote_code=False: a folder's own Python (config.json "auto_map") never runs.
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype,
                                                         trust_remote_code=False)
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise WeightsError(f"cannot load the LLM from {folder}: {exc}; check that the folder is "
                               f"complete (re-import or re-download it)") from exc
        return cls(model.to(device), tokenizer, folder.name)

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    def _first_token_ids(self, words: list[str]) -> set[int]:
        """The first token that carries letters of each spelling (a bare space token is skipped)."""
        ids = set()
        for w in words:
            for token in self.tokenizer.encode(w, add_special_tokens=False):
                if self.tokenizer.decode([token]).strip():
                    ids.add(token)
                    break
        return ids

    def prompt_text(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                      add_generation_prompt=add_generation_prompt)
        return plain_transcript(messages, add_generation_prompt)

    def embed_prompt(self, messages: Sequence[dict[str, str]], image_embeds: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """One conversation holding one image placeholder -> (inputs_embeds (1, T', D), mask (1, T'))."""
        text = self.prompt_text(messages)
        encoded = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        input_ids = encoded["input_ids"].to(self.device)  # (1, T)
        mask = encoded["attention_mask"].to(self.device)
        embeds, mask, _ = embed_with_image(self.model, input_ids, image_embeds, self.image_token_id,
                                           self.tokenizer.pad_token_id, mask)
        return embeds, mask

    @torch.no_grad()
    def verdict(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> list[Verdict]:
        """Fast path: Yes/No from the logits of the first answer token; no manual threshold."""
        logits = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits  # (B, T, V)
        last = attention_mask.shape[1] - 1 - attention_mask.flip(1).float().argmax(dim=1)  # last real token
        first = logits[torch.arange(logits.shape[0]), last].float()  # (B, V)
        yes = first[:, sorted(self.yes_ids)].logsumexp(dim=-1)
        no = first[:, sorted(self.no_ids)].logsumexp(dim=-1)
        p_yes = torch.sigmoid(yes - no)
        if not bool(torch.isfinite(p_yes).all()):  # NaN > 0.5 is False: that would read as "good"
            raise WeightsError(f"the language model '{self.name}' gave non-finite logits (NaN or infinity), so "
                               f"there is no verdict; its weights or the image embeddings are damaged - run "
                               f"`iadgpt models verify` on the weights folder, re-copy or retrain them")
        return [Verdict(bool(p > 0.5), float(p)) for p in p_yes]

    @torch.no_grad()
    def stream(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
               should_stop: Callable[[], bool] = lambda: False, temperature: float = 0.0,
               seed: int | None = None, stop_strings: Sequence[str] = TURN_MARKERS) -> Iterator[str]:
        """Generate one answer (batch of one), yielding text pieces as they are decoded.

        Stops at end-of-sequence, at any of stop_strings (the start of another transcript turn), after
        max_new_tokens, or as soon as should_stop() is true.
        """
        assert inputs_embeds.shape[0] == 1, "streamed generation answers one conversation at a time"
        generator = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        eos = {self.tokenizer.eos_token_id} | set(getattr(self.model.generation_config, "eos_token_id", None)
                                                   and _as_list(self.model.generation_config.eos_token_id) or [])
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=True)
        generated: list[int] = []
        shown = ""
        for _ in range(max_new_tokens):
            if should_stop():
                return
            logits = out.logits[:, -1].float()  # (1, V)
            if temperature > 0:
                probs = (logits / temperature).softmax(-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=generator))
            else:
                token = int(logits.argmax(-1))
            if token in eos:
                break
            generated.append(token)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            cut = min((i for i in (text.find(m) for m in stop_strings) if i >= 0), default=-1)
            if cut >= 0:  # the model began a new turn of the transcript: the answer ends here
                text = text[:cut].rstrip()
                if len(text) > len(shown):
                    yield text[len(shown):]
                return
            # Hold back half a character, and any tail that may be the start of a turn marker.
            safe = text[:len(text) - _marker_prefix_len(text, stop_strings)].rstrip("\ufffd")
            if len(safe) > len(shown):
                yield safe[len(shown):]
                shown = safe
            if len(generated) == max_new_tokens:
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(1, 1)], dim=1)
            next_ids = torch.tensor([[token]], device=inputs_embeds.device)
            out = self.model(input_ids=next_ids, attention_mask=attention_mask, use_cache=True,
                             **_cache_kwargs(out))
        # The answer ended (end of sequence or token budget): show what was held back.
        final = self.tokenizer.decode(generated, skip_special_tokens=True).rstrip("\ufffd")
        if len(final) > len(shown):
            yield final[len(shown):]


def _marker_prefix_len(text: str, markers: Sequence[str]) -> int:
    """Length of the longest tail of text that is the beginning of a marker (0 if none)."""
    best = 0
    for marker in markers:
        for n in range(min(len(marker), len(text)), best, -1):
            if marker.startswith(text[-n:]):
                best = n
                break
    return best


def _cache_kwargs(out) -> dict:
    # transformers 5 names the KV cache `cache`; older model classes still call it past_key_values.
    if "cache" in out:
        return {"cache": out["cache"]}
    return {"past_key_values": out["past_key_values"]}


def _as_list(value) -> list[int]:
    return list(value) if isinstance(value, list | tuple) else [value]
