"""The product's conversation corpus, for training a language model from scratch (stage 0).

A conversation is the inspection prompt (exactly what `Inspector` asks), the first answer ("No, ..."
or "Yes, ... at the {position}" from the answer templates) and, half of the time, one follow-up
turn: "Where is the defect?" -> a position answer, or "What kind of defect is it?" -> defect names
from the class's prompt bank.

No image is needed: the image placeholder is later replaced by *pretext slots*, learned
embeddings that carry the conversation's state (normal or anomalous, and as many lit 3x3 cells as
the defect covers) in the same token layout as [E_img; E_fusion; E_base]. The LLM learns to read the
verdict from the image slots, which the TGE and MMF learn to write in stages 1-3. Which cells are
lit is drawn apart from the evidence line (`Conversation.slot_cells`), so the place an answer names
can only be copied from the evidence line: at inspection that line and the Position row come from
the same map regions (decision 0009).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from iadgpt.data.answers import AnswerTemplates
from iadgpt.evidence import SHAPE_WORDS, Evidence, bank_types
from iadgpt.llm import inspection_messages
from iadgpt.position import POSITIONS, positions_phrase
from iadgpt.prompt_bank import PromptBank, available_banks, load_bank

WHERE_QUESTIONS = ("Where is the defect?", "Where is the anomaly?", "Where is it?",
                   "Where exactly is the defect located?")
WHERE_ANSWERS = ("The defect is at the {position} of the image.", "It is at the {position} of the image.",
                 "The anomaly is located at the {position} of the image.")
KIND_QUESTIONS = ("What kind of defect is it?", "What type of anomaly is it?", "What kind of defect is this?")
# Answers repeat the evidence line's own words before each value ("at the ", "size: ", "likely type: ",
# "regions: "): the small LLM copies what follows matching words. The size comes right after the
# place, as in the evidence line, so that it is copied as the rest of a span ("at the top left; size:
# small, 1.0 % of the image"): after "size: " alone the LLM said "tiny, 0.2 %" whatever the line said.
# Each defect answer starts with its own first word ("Measured", not "It is" as a where answer does):
# a size answer that began like a where answer was finished as another template, and a good part's
# "There is no defect ..." came out as "It is no defect ..." (decision 0009, "Sizes").
KIND_ANSWERS = ("The likely type: {kinds}.",)
# A good part is "the part": the LLM never names the product (it said "the ball screw drive looks
# normal" of a magnetic tile, the one name it had been trained on).
NO_DEFECT_WHERE = "There is no defect in the image; the part looks normal."
NO_DEFECT_KIND = "There is no defect to name; the part looks normal."

# Product names the corpus's prompts speak of besides the trained classes and the shipped prompt
# banks, so that the answers do not depend on the one name trained on, and types are copied from
# many banks' names. Parts, and the same with a material in front; a few names are kept out of every
# list to check on.
PARTS = ("bolt", "nut", "washer", "gear", "bearing", "spring", "valve", "bracket", "hinge", "shaft", "pulley",
         "piston", "housing", "cover", "cap", "lid", "flange", "gasket", "seal", "bushing", "clip", "rivet",
         "connector", "socket", "plug", "terminal", "circuit board", "chip", "wafer", "lens", "mirror", "panel",
         "sheet", "plate", "foil", "film", "fabric", "textile", "yarn", "rope", "belt", "hose", "tube", "rod",
         "wire", "profile", "casting", "forging", "weld seam", "label", "bottle cap", "can", "jar", "tray",
         "tablet", "battery", "motor", "rotor", "impeller", "nozzle", "die", "insert", "spindle", "wheel")
MATERIALS = ("steel", "aluminium", "brass", "copper", "plastic", "rubber", "glass", "ceramic", "wooden", "leather")
HELD_OUT_NAMES = ("brake disc", "fan blade", "coffee bean", "solar cell")  # never in the corpus


def corpus_classes(trained: Sequence[str]) -> list[str]:
    """The class names stage 0 draws its conversations from: the trained classes, every shipped prompt
    bank's class and generic product names (each of PARTS bare and with one of MATERIALS), sorted."""
    generic = [p for i, part in enumerate(PARTS) for p in (part, f"{MATERIALS[i % len(MATERIALS)]} {part}")]
    return sorted(set(trained) | set(available_banks()) | {g.replace(" ", "_") for g in generic})


def corpus_banks(trained: Sequence[str]) -> dict[str, PromptBank]:
    """corpus_classes with their prompt banks (the generic bank's names for a class that has none)."""
    return {name: load_bank(name) for name in corpus_classes(trained)}


@dataclass(frozen=True)
class Conversation:
    """One training conversation: messages up to the last question, the answer, the image state."""

    messages: list[dict[str, str]]  # system, user (image placeholder + evidence), maybe more turns
    answer: str
    anomalous: bool
    cells: tuple[int, ...]  # indices into position.POSITIONS (row-major 3x3) of the defect, may be empty
    slot_cells: tuple[int, ...] = ()  # the cells the pretext slots light: as many, at random places
    slots_anomalous: bool | None = None  # the state the pretext slots say; None: `anomalous`

    @property
    def slot_state(self) -> bool:
        return self.anomalous if self.slots_anomalous is None else self.slots_anomalous


# Every kind of question users ask, with the answer for a defective and for a good part. The
# answers take position, size, count, shape and type from the prompt's evidence line (evidence.py).
QUESTIONS: dict[str, tuple[str, ...]] = {
    "where": WHERE_QUESTIONS,
    "type": KIND_QUESTIONS,
    "size": ("How big is it?", "How large is the defect?", "What size is the anomaly?"),
    "count": ("How many defects are there?", "How many anomalies do you see?"),
    "ship": ("Is it safe to ship?", "Can this part be shipped?", "Is the part OK?"),
    "action": ("What should I do?", "What should I do with this part?"),
    "describe": ("Describe it.", "Describe the defect.", "What do you see?"),
    "compare": ("Compare it with the reference.", "How does it differ from a good part?"),
}
QUESTION_KINDS = tuple(QUESTIONS)


def answer(kind: str, anomalous: bool, evidence: Evidence, rng: np.random.Generator) -> str:
    """The answer to a question of `kind` about a part, from the verdict and the evidence line."""
    e = evidence
    shape = SHAPE_WORDS[e.shape] if e.shape else "defect"
    if not anomalous:
        return {
            "where": NO_DEFECT_WHERE,
            "type": NO_DEFECT_KIND,
            "size": "There is no defect to measure; the part looks normal.",
            "count": "There are no defects; the part looks normal.",
            "ship": "Yes, no anomaly was found; it can be shipped.",
            "action": "No action is needed; the part looks normal.",
            "describe": "The part looks normal; no anomaly stands out.",
            "compare": "It looks like the good references; nothing differs.",
        }[kind]
    if kind == "where":
        return WHERE_ANSWERS[int(rng.integers(len(WHERE_ANSWERS)))].format(position=e.position)
    if kind == "type":
        if e.types:
            return KIND_ANSWERS[int(rng.integers(len(KIND_ANSWERS)))].format(kinds=e.type_phrase)
        return f"The type is unclear from the image; it is a {shape} at the {e.position}."
    return {
        "size": f"Measured at the {e.position}; size: {e.size_phrase}.",
        "count": f"Defect regions: {e.count}.",
        "ship": f"No, it should not be shipped: there is a defect at the {e.position}. Set it aside for review.",
        "action": f"Reject the part or send it for review: a {e.size} defect is at the {e.position}.",
        "describe": f"A {shape} at the {e.position}; size: {e.size_phrase}; likely type: {e.type_phrase}.",
        "compare": f"Compared with the good references, it differs at the {e.position}.",
    }[kind]


def sample_evidence(rng: np.random.Generator, bank: PromptBank) -> tuple[Evidence, tuple[int, ...]]:
    """An evidence line as the map could give it, for a good or a defective part alike."""
    n = int(rng.integers(1, 4))
    cells = tuple(int(c) for c in rng.permutation(len(POSITIONS))[:n])
    count = n + int(rng.integers(0, 2))
    area = float(np.exp(rng.uniform(np.log(0.001), np.log(0.2))))
    shape = (None, "line", "spot", "patch", "missing")[int(rng.integers(5))]
    evidence = Evidence(positions_phrase([POSITIONS[c] for c in cells]), count, area, shape,
                        bank_types(shape, bank.names))
    return evidence, cells


def sample_conversation(rng: np.random.Generator, class_name: str, bank: PromptBank,
                        templates: AnswerTemplates, system_prompt: str,
                        anomaly_ratio: float = 0.5) -> Conversation:
    """A conversation drawn from rng alone (a pure function of the generator's state).

    Half are the first turn only (the verdict answer); the rest ask one to three follow-up
    questions, the earlier ones answered in the history, the last one labelled.
    """
    anomalous = bool(rng.random() < anomaly_ratio)
    evidence, cells = sample_evidence(rng, bank)
    first = templates.normal if not anomalous else \
        templates.abnormal[int(rng.integers(len(templates.abnormal)))].format(position=evidence.position)
    messages = inspection_messages(system_prompt, class_name, evidence.text())
    if rng.random() < 0.5:
        return Conversation(messages, first, anomalous, cells if anomalous else ())
    turns, reply = follow_ups(rng, first, anomalous, evidence)
    return Conversation(messages + turns, reply, anomalous, cells if anomalous else ())


def follow_ups(rng: np.random.Generator, first: str, anomalous: bool, evidence: Evidence,
               ) -> tuple[list[dict[str, str]], str]:
    """After the inspection prompt: the first answer and one to three follow-up questions of any kind,
    the earlier ones answered, each answer from the verdict and the evidence line. Returns the turns up
    to the last question and that question's answer (the one labelled)."""
    turns = [{"role": "assistant", "content": first}]
    count = int(rng.integers(1, 4))
    for t in range(count):
        kind = QUESTION_KINDS[int(rng.integers(len(QUESTION_KINDS)))]
        question = QUESTIONS[kind][int(rng.integers(len(QUESTIONS[kind])))]
        reply = answer(kind, anomalous, evidence, rng)
        turns.append({"role": "user", "content": question})
        if t == count - 1:
            return turns, reply
        turns.append({"role": "assistant", "content": reply})
    raise AssertionError("unreachable")


def distinct_banks(banks: dict[str, PromptBank]) -> dict[tuple[str, ...], list[str]]:
    """The class names of each distinct list of defect names (most generic part names share one bank)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in sorted(banks):
        groups.setdefault(tuple(banks[name].names), []).append(name)
    return groups


def conversation_batch(seed: int, step: int, size: int, banks: dict[str, PromptBank],
                       templates: AnswerTemplates, system_prompt: str, flip_slots: float = 0.0,
                       by_bank: float = 0.0) -> list[Conversation]:
    """`size` conversations, a pure function of (seed, step): resumed runs see the same text. Their
    slot cells come from a generator of their own, so they never change the text drawn.

    flip_slots: the share of conversations with follow-up questions whose slots say the other state
    than their verdict (no cells lit). Their answers still follow the verdict the history's first
    answer gives: the follow-ups of a part with a map as strong as a defect's, answered "No" by the
    verdict, must stay those of a good part (decision 0009, "The verdict in the history").

    by_bank: the share of conversations whose class is drawn bank first (a distinct bank, then one of its
    class names), so that the defect names of a bank only one product has (a magnetic tile's "blowhole")
    are said as often as the generic bank's, which some 130 of the 158 class names share."""
    rng = np.random.default_rng([seed, 7919, step])
    slot_rng = np.random.default_rng([seed, 104729, step])
    names: Sequence[str] = sorted(banks)
    groups = list(distinct_banks(banks).values()) if by_bank else []
    out = []
    for _ in range(size):
        if by_bank and rng.random() < by_bank:
            group = groups[int(rng.integers(len(groups)))]
            name = group[int(rng.integers(len(group)))]
        else:
            name = names[int(rng.integers(len(names)))]
        talk = sample_conversation(rng, name, banks[name], templates, system_prompt)
        lit = slot_rng.permutation(len(POSITIONS))[:len(talk.cells)]
        if flip_slots and len(talk.messages) > 2 and slot_rng.random() < flip_slots:
            out.append(replace(talk, slots_anomalous=not talk.anomalous))
            continue
        out.append(replace(talk, slot_cells=tuple(int(c) for c in lit)))
    return out
