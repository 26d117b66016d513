"""How defect types read, the same in every view and export: "pitting 99 %, crack 1 %", or "pitting or dent"
where the shares are equal and so say nothing (the built-in tower has no text tower: see
`Inspector._defect_types`). No Qt and no database here, so the Live view, History and the exports share it."""

from __future__ import annotations

from collections.abc import Sequence

from iadgpt_desktop.storage.records import UNDECIDED

# The operator's decisions as every view and export names them.
DECISION_LABELS = {
    UNDECIDED: "Undecided",
    "confirmed": "Confirmed",
    "overridden_good": "Overridden: good",
    "overridden_defective": "Overridden: defective",
}


def describe_decision(decision: str | None) -> str:
    """A stored decision (None: undecided) in words: "Overridden: good"."""
    return DECISION_LABELS.get(decision or UNDECIDED, decision or "")


def shares_are_equal(defect_types: Sequence[tuple[str, float]]) -> bool:
    """Whether the shares say nothing about which type is likelier: each is 1/n of the n types (the built-in
    tower has no text tower and splits evenly among the types the map's shape supports; a lone type's
    share of the types found is 1 whatever the tower)."""
    even = 1.0 / len(defect_types) if defect_types else 0.0
    return bool(defect_types) and all(abs(p - even) < 0.005 for _, p in defect_types)


def format_defect_types(defect_types: Sequence[tuple[str, float]]) -> str:
    """Machine-readable, for the CSV: "pitting:0.9933; crack:0.0012"; names only ("pitting; dent") where
    the shares are equal (`shares_are_equal`), so a spreadsheet does not read 0.5 as a probability."""
    if shares_are_equal(defect_types):
        return "; ".join(name for name, _ in defect_types)
    return "; ".join(f"{name}:{prob:.4f}" for name, prob in defect_types)


def describe_defect_types(defect_types: Sequence[tuple[str, float]], limit: int | None = None) -> str:
    """For people, wherever types are shown: "pitting 99 %, crack 1 %"; where the shares are equal
    (`shares_are_equal`) the names alone, "pitting or dent", as the chat's evidence words it. At most
    `limit` types; empty for none."""
    shown = [(name.replace("_", " "), prob) for name, prob in list(defect_types)[:limit]]
    if shares_are_equal(defect_types):
        return " or ".join(name for name, _ in shown)
    return ", ".join(f"{name} {prob:.0%}".replace("%", " %") for name, prob in shown)


def describe_nearest_reference(name: str, similarity: float | None) -> str:
    """The nearest good reference, wherever it is shown: "good_030.png (similarity 0.982)"."""
    return name if similarity is None else f"{name} (similarity {similarity:.3f})"


REFERENCE_GONE = "(file no longer there)"  # after a stored reference's name when its file is gone


def counted(n: int, noun: str) -> str:
    """"1 inspection", "2,048 inspections": a count with its noun in the right number."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
