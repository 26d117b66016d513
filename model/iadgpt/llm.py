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
from jinja2 import TemplateError
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from iadgpt.cpu_threads import is_small, one_thread_if
from iadgpt.errors import WeightsError
from iadgpt.prompts import class_words

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
IGNORE_INDEX = -100
NORMAL_ANSWER = "No, there are no abnormalities in the image."
VICUNA_EOS = "</s>"
# Where an answer ends and another turn begins: the Vicuna transcript's roles and the tiny LLM's.
TURN_MARKERS = ("USER:", "ASSISTANT:", "### Human:", "### Assistant:", "### System:")


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


_QUESTION_WORDS = ("where", "what", "which", "how", "is", "are", "can", "could", "should", "does", "do", "why",
                   "will", "was", "any")


def question_text(text: str) -> str:
    """A question as a person typed it, written the way questions are written in training: spaces
    collapsed, the first letter a capital, a question mark after a question word's sentence, the
    image placeholder removed (`user_text`). "where is the defect" and "Where is the defect?" are
    then one question to the LLM, whose tokens tell the two apart. Only the form changes; the words
    stay the user's.
    """
    words = " ".join(user_text(text).split())
    if not words:
        return words
    words = words[0].upper() + words[1:]
    first = words.split(" ", 1)[0].lower().strip(",")
    if words[-1] not in ".?!" and first in _QUESTION_WORDS:
        words += "?"
    return words


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
    """The Vicuna v1.1 transcript ("SYSTEM USER: ... ASSISTANT: ...</s>") for tokenizers without a chat
    template: Vicuna v1.1 and v1.5 (the paper preset's LLM) were trained on exactly this format."""
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"])
        elif m["role"] == "user":
            parts.append(f"USER: {m['content']}")
        else:
            parts.append(f"ASSISTANT: {m['content']}{VICUNA_EOS}")
    text = " ".join(parts).replace(f"{VICUNA_EOS} ", VICUNA_EOS)
    return text + " ASSISTANT:" if add_generation_prompt else text


def fold_system_turn(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation without a system turn: its text opens the first user turn (for chat templates
    that refuse a system role, as Mistral-Instruct's and Gemma's do)."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    elif system:
        rest.insert(0, {"role": "user", "content": system})
    return rest


def chat_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, str]],
                add_generation_prompt: bool = True) -> str:
    """The prompt text of a conversation in the tokenizer's own chat format.

    The tokenizer's chat template when it has one (with the system text folded into the first user
    turn when the template refuses a system role); the Vicuna v1.1 transcript when it has none.
    """
    if not getattr(tokenizer, "chat_template", None):
        return plain_transcript(messages, add_generation_prompt)
    try:
        return tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except TemplateError as exc:
        if not any(m["role"] == "system" for m in messages):
            raise WeightsError(f"the chat template of the LLM tokenizer ({tokenizer.name_or_path}) refuses this "
                               f"conversation ({exc}); use a chat model whose template takes user and assistant "
                               f"turns") from exc
    return chat_prompt(tokenizer, fold_system_turn(messages), add_generation_prompt)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a prompt text, starting with BOS exactly when the tokenizer itself would add one.

    Chat templates often write the BOS token into the text (Llama's, Mistral's): it is not added twice.
    No eos or other special tokens are appended (the answer follows the prompt).
    """
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos = tokenizer.bos_token_id
    if bos is None or (ids and ids[0] == bos):
        return ids
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return [bos, *ids] if probe and probe[0] == bos else ids


def verdict_sequences(tokenizer: PreTrainedTokenizerBase, word: str) -> list[tuple[int, ...]]:
    """The token sequences that write `word` as an answer's first word: capitalised or not, with and
    without a leading space; a bare space piece at the start is dropped. Spellings whose tokens do not
    decode back to the word (unknown pieces) are left out."""
    found: list[tuple[int, ...]] = []
    for spelling in (word.capitalize(), word.lower(), " " + word.capitalize(), " " + word.lower()):
        ids = list(tokenizer(spelling, add_special_tokens=False)["input_ids"])
        while ids and not tokenizer.decode(ids[:1]).strip():
            ids = ids[1:]
        if ids and tokenizer.unk_token_id not in ids and tokenizer.decode(ids).strip() == spelling.strip():
            if tuple(ids) not in found:
                found.append(tuple(ids))
    return found


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
        yes, no = verdict_sequences(tokenizer, "yes"), verdict_sequences(tokenizer, "no")
        self.yes_sequences = _shortest([q for q in yes if q not in no])
        self.no_sequences = _shortest([q for q in no if q not in yes])
        if not self.yes_sequences or not self.no_sequences:
            raise WeightsError(f"the tokenizer of the LLM '{name}' cannot write the words 'Yes' and 'No' "
                               f"(found {len(self.yes_sequences)} and {len(self.no_sequences)} spellings), so "
                               f"there is no verdict to read; use a chat LLM whose tokenizer spells English words")
        model.requires_grad_(False)
        model.eval()
        self.small = is_small(model)  # its forward passes run on one CPU thread (decision 0012)

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

    @property
    def yes_ids(self) -> set[int]:
        """The single tokens that are a whole 'Yes' (the first pieces of longer spellings are not)."""
        return {q[0] for q in self.yes_sequences if len(q) == 1}

    @property
    def no_ids(self) -> set[int]:
        return {q[0] for q in self.no_sequences if len(q) == 1}

    def prompt_text(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return chat_prompt(self.tokenizer, messages, add_generation_prompt)

    def prompt_ids(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> list[int]:
        """The conversation's token ids as the model reads them (BOS as the tokenizer expects)."""
        return prompt_ids(self.tokenizer, self.prompt_text(messages, add_generation_prompt))

    def embed_prompt(self, messages: Sequence[dict[str, str]], image_embeds: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """One conversation holding one image placeholder -> (inputs_embeds (1, T', D), mask (1, T'))."""
        input_ids = torch.tensor([self.prompt_ids(messages)], device=self.device)  # (1, T)
        mask = torch.ones_like(input_ids)
        embeds, mask, _ = embed_with_image(self.model, input_ids, image_embeds, self.image_token_id,
                                           self.tokenizer.pad_token_id, mask)
        return embeds, mask

    def _forward(self, **inputs):
        """One forward pass of the LLM; a small one on one CPU thread (decision 0012)."""
        first = inputs.get("inputs_embeds", inputs.get("input_ids"))
        with one_thread_if(self.small, first.device):
            return self.model(**inputs)

    @torch.no_grad()
    def verdict(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> list[Verdict]:
        """Fast path: P(Yes) against P(No) as the answer's first word; no manual threshold.

        A spelling that is one token is read from the first answer token's logits; one that splits
        into pieces is scored as the sequence (one more forward pass per such spelling).
        """
        logits = self._forward(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits  # (B, T, V)
        last = attention_mask.shape[1] - 1 - attention_mask.flip(1).float().argmax(dim=1)  # last real token
        first = logits[torch.arange(logits.shape[0]), last].float().log_softmax(dim=-1)  # (B, V)
        yes = self._log_prob(first, self.yes_sequences, inputs_embeds, attention_mask)
        no = self._log_prob(first, self.no_sequences, inputs_embeds, attention_mask)
        p_yes = torch.sigmoid(yes - no)
        if not bool(torch.isfinite(p_yes).all()):  # NaN > 0.5 is False: that would read as "good"
            raise WeightsError(f"the language model '{self.name}' gave non-finite logits (NaN or infinity), so "
                               f"there is no verdict; its weights or the image embeddings are damaged - run "
                               f"`iadgpt models verify` on the weights folder, re-copy or retrain them")
        return [Verdict(bool(p > 0.5), float(p)) for p in p_yes]

    def _log_prob(self, first: torch.Tensor, sequences: list[tuple[int, ...]], inputs_embeds: torch.Tensor,
                  attention_mask: torch.Tensor) -> torch.Tensor:
        """(B,) log of the probability that the answer starts with any of the token sequences."""
        per_sequence = []
        for seq in sequences:
            score = first[:, seq[0]]  # (B,)
            if len(seq) > 1:
                score = score + self._continuation_log_prob(seq, inputs_embeds, attention_mask)
            per_sequence.append(score)
        return torch.stack(per_sequence, dim=-1).logsumexp(dim=-1)

    def _continuation_log_prob(self, seq: tuple[int, ...], inputs_embeds: torch.Tensor,
                               attention_mask: torch.Tensor) -> torch.Tensor:
        """(B,) log P(seq[1:] | prompt, seq[0]), row by row (each row's real tokens are contiguous)."""
        device = inputs_embeds.device
        pieces = self.model.get_input_embeddings()(torch.tensor(seq[:-1], device=device))  # (S-1, D)
        targets = torch.tensor(seq[1:], device=device)  # (S-1,)
        out = []
        for b in range(inputs_embeds.shape[0]):
            row = inputs_embeds[b, attention_mask[b].bool()]  # (T_b, D)
            extended = torch.cat([row, pieces.to(row.dtype)]).unsqueeze(0)  # (1, T_b+S-1, D)
            logits = self._forward(inputs_embeds=extended).logits[0, -len(targets):].float()  # (S-1, V)
            out.append(logits.log_softmax(dim=-1).gather(1, targets[:, None]).sum())
        return torch.stack(out)

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
        out = self._forward(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=True)
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
            out = self._forward(input_ids=next_ids, attention_mask=attention_mask, use_cache=True,
                                **_cache_kwargs(out))
        # The answer ended (end of sequence or token budget): show what was held back.
        final = self.tokenizer.decode(generated, skip_special_tokens=True).rstrip("\ufffd")
        if len(final) > len(shown):
            yield final[len(shown):]


def _shortest(sequences: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The single-token spellings when there are any (the verdict then needs one forward pass, and a
    model that has the word as a token writes it so), else every multi-piece spelling."""
    single = [q for q in sequences if len(q) == 1]
    return single or sequences


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
