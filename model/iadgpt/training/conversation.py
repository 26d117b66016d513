"""Training conversations: the inspection prompt plus the answer, with labels on the answer only."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from iadgpt.llm import IGNORE_INDEX, LanguageModel


def build_training_batch(llm: LanguageModel, messages_per_sample: Sequence[Sequence[dict[str, str]]],
                         answers: Sequence[str], *, history: bool = False,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids (B, T), attention mask (B, T) and labels (B, T) of prompt + answer + end of sequence.

    The prompt is `llm.prompt_ids(messages, add_generation_prompt=True)`; the answer follows it
    directly (inference generates from the same prompt, so its first token is "Yes"/"No"), then the
    tokenizer's eos token. Prompt and answer are tokenized separately, so the label boundary is exact.
    Labels are IGNORE_INDEX on the prompt and on the right padding (pad id, attention mask 0).

    With `history`, the earlier assistant turns inside the prompt are labelled too (`history_spans`),
    except each turn's first token: in the transcript it follows "Assistant: " with a space (" Yes"),
    while inference writes the first word right after the colon ("Yes"), as the last answer is trained.
    """
    assert len(messages_per_sample) == len(answers), "one answer per conversation"
    tok = llm.tokenizer
    eos = tok.eos_token_id
    assert eos is not None, "the tokenizer has no eos token to end the answer with"
    rows: list[tuple[list[int], list[int]]] = []
    for messages, answer in zip(messages_per_sample, answers, strict=True):
        prompt = llm.prompt_ids(messages, add_generation_prompt=True)  # BOS as at inference
        reply = tok(answer, add_special_tokens=False)["input_ids"] + [eos]
        rows.append((list(prompt), reply))
    length = max(len(p) + len(r) for p, r in rows)
    pad = tok.pad_token_id
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    for b, (prompt, reply) in enumerate(rows):
        n_p, n = len(prompt), len(prompt) + len(reply)
        input_ids[b, :n] = torch.tensor(prompt + reply)
        attention_mask[b, :n] = 1
        labels[b, n_p:n] = torch.tensor(reply)
        if history:
            for start, stop in history_spans(llm, messages_per_sample[b], prompt):
                labels[b, start:stop] = input_ids[b, start:stop]
    return input_ids, attention_mask, labels


def history_spans(llm: LanguageModel, messages: Sequence[dict[str, str]], prompt: Sequence[int],
                  ) -> list[tuple[int, int]]:
    """[start, stop) token spans of `prompt` (the whole conversation's ids) holding the earlier assistant
    turns, each from its second token through its end-of-turn token. A turn whose tokens are not where
    the transcripts of the conversation's prefixes put them (the tokenizer merged across a turn's edge)
    is left out, so a span never covers anything but an answer."""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = llm.prompt_ids(messages[:i], add_generation_prompt=True)  # ends with "Assistant:"
        after = llm.prompt_ids(messages[:i + 1], add_generation_prompt=False)  # ends after the turn
        if list(prompt[:len(after)]) != list(after) or list(after[:len(before)]) != list(before):
            continue
        stop = len(after)
        while stop > len(before) and not llm.tokenizer.decode(after[stop - 1:stop]).strip():
            stop -= 1  # the newline after the end-of-turn token is the transcript's, not the answer's
        if stop - len(before) > 1:
            spans.append((len(before) + 1, stop))
    return spans


# The fields of the evidence line (evidence.Evidence.text) that answers copy, each after a space.
_FIELDS = re.compile(r"strongest response at the (?P<place>[^;]*); size: (?P<size>[a-z]+), (?P<share>[\d.]+) %[^;]*; "
                     r"regions: (?P<count>\d+);[^;]*; likely type: (?P<types>[^\n]*)\.")
_CONNECTORS = {"and", "or", "unclear"}


def copy_vocabulary(llm: LanguageModel, prompts: Sequence[str]) -> torch.Tensor:
    """(B, V) bool: per conversation, the token ids its evidence line writes the place, the size word, the
    share of the image, the region count and the type names with ("top", "left", "small", "1", "2" of
    "1.2 %", "blowhole").

    An answer copies these from the line; with --copy-weight, `losses.lm_loss` weights its tokens that
    are among them. The verdict words ("Yes", "No") are in every row's too: weighting the copied fields
    alone left the verdict a smaller share of the first answer's loss, and the verdict on validation
    lost one or two parts of 24. Punctuation and the connectors "and"/"or" are left out: every answer
    has them. A prompt without an evidence line gets the verdict words only."""
    tok = llm.tokenizer
    vocab = torch.zeros(len(prompts), llm.model.get_input_embeddings().num_embeddings, dtype=torch.bool)
    vocab[:, sorted(llm.yes_ids | llm.no_ids)] = True
    for b, text in enumerate(prompts):
        found = _FIELDS.search(text)
        if found is None:
            continue
        for field in found.groupdict().values():
            for i in tok(" " + field, add_special_tokens=False)["input_ids"]:
                word = tok.decode([i]).strip().lower()
                if any(c.isalnum() for c in word) and word not in _CONNECTORS:
                    vocab[b, i] = True
    return vocab
