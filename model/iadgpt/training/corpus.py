"""The product's conversation corpus, for training a language model from scratch (stage 0).

A conversation is the inspection prompt (exactly what `Inspector` asks), the first answer ("No, ..."
or "Yes, ... at the {position}" from the answer templates) and, half of the time, one follow-up
turn: "Where is the defect?" -> a position answer, or "What kind of defect is it?" -> defect names
from the class's prompt bank.

No image is needed: the image placeholder is later replaced by *pretext slots*, learned
embeddings that carry the conversation's state (normal or anomalous, and which 3x3 cells hold the
defect) in the same token layout as [E_img; E_fusion; E_base]. The LLM thus learns to read the
verdict and the position from the image slots, which the TGE and MMF learn to write in stages 1-3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iadgpt.data.answers import AnswerTemplates
from iadgpt.llm import inspection_messages
from iadgpt.position import POSITIONS, positions_phrase
from iadgpt.prompt_bank import PromptBank
from iadgpt.prompts import class_words

WHERE_QUESTIONS = ("Where is the defect?", "Where is the anomaly?", "Where is it?",
                   "Where exactly is the defect located?")
WHERE_ANSWERS = ("The defect is at the {position} of the image.", "It is at the {position} of the image.",
                 "The anomaly is located at the {position} of the image.")
KIND_QUESTIONS = ("What kind of defect is it?", "What type of anomaly is it?", "What kind of defect is this?")
KIND_ANSWERS = ("It looks like {kinds}.", "This is most likely {kinds}.", "The defect looks like {kinds}.")
NO_DEFECT_WHERE = "There is no defect in the image; the {words} looks normal."
NO_DEFECT_KIND = "There is no defect to name; the {words} looks normal."


@dataclass(frozen=True)
class Conversation:
    """One training conversation: messages up to the last question, the answer, the image state."""

    messages: list[dict[str, str]]  # system, user (with the image placeholder), maybe assistant + user
    answer: str
    anomalous: bool
    cells: tuple[int, ...]  # indices into position.POSITIONS (row-major 3x3) of the defect, may be empty


def _kinds(bank: PromptBank, rng: np.random.Generator) -> str:
    names = bank.names or ["an anomaly"]
    k = int(rng.integers(1, min(2, len(names)) + 1))
    chosen = [names[i] for i in rng.permutation(len(names))[:k]]
    return " or ".join(chosen)


def sample_conversation(rng: np.random.Generator, class_name: str, bank: PromptBank,
                        templates: AnswerTemplates, system_prompt: str,
                        anomaly_ratio: float = 0.5) -> Conversation:
    """A conversation drawn from rng alone (a pure function of the generator's state)."""
    anomalous = bool(rng.random() < anomaly_ratio)
    cells: tuple[int, ...] = ()
    if anomalous:
        n = int(rng.integers(1, 4))
        cells = tuple(int(c) for c in rng.permutation(len(POSITIONS))[:n])
    phrase = positions_phrase([POSITIONS[c] for c in cells])
    first = templates.normal if not anomalous else \
        templates.abnormal[int(rng.integers(len(templates.abnormal)))].format(position=phrase)
    messages = inspection_messages(system_prompt, class_name)
    if rng.random() < 0.5:
        return Conversation(messages, first, anomalous, cells)
    words = class_words(class_name)
    messages = messages + [{"role": "assistant", "content": first}]
    if rng.random() < 0.5:
        question = WHERE_QUESTIONS[int(rng.integers(len(WHERE_QUESTIONS)))]
        answer = (WHERE_ANSWERS[int(rng.integers(len(WHERE_ANSWERS)))].format(position=phrase) if anomalous
                  else NO_DEFECT_WHERE.format(words=words))
    else:
        question = KIND_QUESTIONS[int(rng.integers(len(KIND_QUESTIONS)))]
        answer = (KIND_ANSWERS[int(rng.integers(len(KIND_ANSWERS)))].format(kinds=_kinds(bank, rng)) if anomalous
                  else NO_DEFECT_KIND.format(words=words))
    return Conversation(messages + [{"role": "user", "content": question}], answer, anomalous, cells)


def conversation_batch(seed: int, step: int, size: int, banks: dict[str, PromptBank],
                       templates: AnswerTemplates, system_prompt: str) -> list[Conversation]:
    """`size` conversations, a pure function of (seed, step): resumed runs see the same text."""
    rng = np.random.default_rng([seed, 7919, step])
    names: Sequence[str] = sorted(banks)
    out = []
    for _ in range(size):
        name = names[int(rng.integers(len(names)))]
        out.append(sample_conversation(rng, name, banks[name], templates, system_prompt))
    return out
