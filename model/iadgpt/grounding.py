"""Does what the LLM says agree with what the screen shows? Checks used by evaluation.

Every check compares an answer with the inspection's own evidence (evidence.Evidence: the
Position row, size, count and type derived from the anomaly map) and verdict, never with ground
truth: these measure grounding and consistency, the map metrics measure correctness.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from iadgpt.evidence import SIZE_WORDS, Evidence
from iadgpt.position import POSITIONS
from iadgpt.prompts import class_words
from iadgpt.training.corpus import QUESTIONS

# Longest first, so "top left" is found before "top" and "left".
_BY_LENGTH = sorted(POSITIONS, key=len, reverse=True)
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NEGATIVE = ("no defect", "no anomal", "looks normal", "no action", "nothing differs", "can be shipped",
             "no abnormalit", "there are no defects")


def positions_in(text: str) -> set[str]:
    """The 3x3-grid positions a sentence names ("top left and center" -> {"top left", "center"})."""
    found: set[str] = set()
    rest = text.lower()
    for name in _BY_LENGTH:
        pattern = rf"\b{re.escape(name)}\b"
        if re.search(pattern, rest):
            found.add(name)
            rest = re.sub(pattern, " ", rest)
    return found


def position_agrees(answer: str, evidence: Evidence) -> bool:
    """The answer names exactly the positions of the Position row."""
    return positions_in(answer) == positions_in(evidence.position)


def says_negative(text: str) -> bool:
    low = text.lower()
    return any(p in low for p in _NEGATIVE)


def names_product(answer: str, class_name: str) -> bool:
    """False when the answer calls the part something else: "the ball screw drive looks normal" said of
    a magnetic tile. "The part" and an answer that names no part pass."""
    words = class_words(class_name).lower()
    named = re.findall(r"\bthe ([a-z0-9][a-z0-9 ]*?) looks normal", answer.lower())
    return all(n in (words, "part") for n in named)


def types_agree(answer: str, evidence: Evidence) -> bool:
    """The answer's types are the evidence line's: after "type:" the names it lists ("blowhole or
    stain") are some of the evidence's and no others ("hole or stain" for "blowhole or stain" is not);
    an answer without "type:" must name one of them as a whole word. No types in the evidence: the
    answer says the type is unclear."""
    low = answer.lower()
    if not evidence.types:
        return "unclear" in low
    wanted = {t.lower() for t in evidence.types}
    listed = re.search(r"type:\s*([^.;]*)", low)
    if listed is None:
        return any(re.search(rf"\b{re.escape(t)}\b", low) for t in wanted)
    named = {n.strip() for n in listed.group(1).split(" or ") if n.strip()}
    return bool(named) and named <= wanted


def share_agrees(answer: str, evidence: Evidence) -> bool:
    """The share of the image an answer gives ("1.7 % of the image") is the evidence line's, as the
    line writes it (one decimal): "small, 1.7 %" said of a 1.2 % region is the size word right and the
    number wrong, which a user comparing the chat with the screen sees. An answer giving no share passes."""
    said = re.findall(r"(\d+(?:\.\d+)?)\s*%", answer)
    return all(s == f"{100 * evidence.area_fraction:.1f}" for s in said)


def consistent(kind: str, answer: str, defective: bool, evidence: Evidence, product: str | None = None) -> bool:
    """Whether a chat answer to a question of `kind` agrees with the verdict and the evidence (and, given
    the product's class name, calls the part by it)."""
    low = answer.lower().strip()
    if not defective:
        if kind == "ship":
            return low.startswith("yes")
        named = product is None or names_product(low, product)
        return says_negative(low) and not positions_in(low) and named
    if says_negative(low) and kind != "ship":
        return False
    if kind == "ship":
        return low.startswith("no") and position_agrees(low, evidence)
    if kind in ("where", "action", "compare"):
        return position_agrees(low, evidence)
    if kind == "type":
        return types_agree(low, evidence)
    if kind == "size":
        sizes = [w for w in SIZE_WORDS if re.search(rf"\b{w}\b", low)]
        return sizes == [evidence.size] and share_agrees(low, evidence)
    if kind == "count":
        numbers = [int(n) for n in re.findall(r"\b(\d+)\b", low)]
        numbers += [v for w, v in _NUMBER_WORDS.items() if re.search(rf"\b{w}\b", low)]
        return numbers == [evidence.count]
    if kind == "describe":
        typed = "type:" not in low or types_agree(low, evidence)  # "... likely type: blowhole or stain."
        return position_agrees(low, evidence) and evidence.size in low and share_agrees(low, evidence) and typed
    raise ValueError(f"unknown question kind {kind!r}; one of {', '.join(QUESTIONS)}")


def scripted_questions() -> list[tuple[str, str]]:
    """(kind, question) of the scripted chat set: the first phrasing of every kind users ask."""
    return [(kind, phrasings[0]) for kind, phrasings in QUESTIONS.items()]


def type_label(defect: str, names: Sequence[str]) -> str | None:
    """The prompt-bank name a test folder's defect name stands for, None when no name matches."""
    d = defect.lower().replace("_", " ")
    for n in names:
        if n.lower() == d:
            return n
    for n in names:
        low = n.lower()
        if d in low or low in d:
            return n
    return None
