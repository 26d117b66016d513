"""Plain data that crosses threads: no ORM objects ever leave a Session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

VERDICTS = ("defective", "good")
DECISIONS = ("confirmed", "overridden_good", "overridden_defective")
UNDECIDED = "undecided"  # InspectionFilter.decision value that selects rows without an operator decision
ROLES = ("user", "assistant")
PRODUCT_MODES = ("trained", "few-shot")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class InspectionRecord:
    """One inspection to store (every column of `Inspection` but the id)."""

    source: str  # "folder:/x", "camera:0", "file", "cli"
    image_path: str  # relative to the FileStore root
    image_sha256: str
    width: int
    height: int
    score: float
    score_top1: float
    p_yes: float
    verdict: str  # "defective" | "good"
    answer: str
    model_id: str
    mode: str
    latency_ms: float
    created_at: datetime = field(default_factory=utc_now)
    product_id: int | None = None
    position: str | None = None
    defect_types: list[tuple[str, float]] = field(default_factory=list)
    mask_path: str | None = None  # relative to the FileStore root
    operator_decision: str | None = None
    operator: str | None = None
    decided_at: datetime | None = None
    note: str | None = None
    file_name: str | None = None  # the inspected file's name, as the operator knows the part
    reference_name: str | None = None  # few-shot: the nearest good reference's file name ("good_030.png")
    reference_path: str | None = None  # the file that reference was read from (None: given as an array)
    reference_similarity: float | None = None  # how similar it was (cosine of the global embeddings)

    @classmethod
    def from_result(cls, result: Any, *, source: str, image_path: str, image_sha256: str,
                    mask_path: str | None, product_id: int | None = None,
                    file_name: str | None = None) -> InspectionRecord:
        """A record from an `iadgpt.inspector.InspectionResult` (read by attribute, so torch is not imported)."""
        height, width = result.image_size
        nearest = getattr(result, "nearest_reference", None)
        return cls(
            source=source, image_path=image_path, image_sha256=image_sha256, width=int(width),
            height=int(height), score=float(result.score), score_top1=float(result.score_top1),
            p_yes=float(result.p_yes), verdict=result.verdict, answer=result.answer, model_id=result.model_id,
            mode=result.mode, latency_ms=float(result.latency_ms), product_id=product_id,
            position=result.position, defect_types=[(str(n), float(p)) for n, p in result.defect_types],
            mask_path=mask_path, file_name=file_name,
            reference_name=nearest.name if nearest is not None else None,
            reference_path=nearest.path if nearest is not None else None,
            reference_similarity=float(nearest.similarity) if nearest is not None else None,
        )


@dataclass(kw_only=True)
class InspectionRow(InspectionRecord):
    """A stored inspection, as read back for the views."""

    id: int
    product_name: str | None = None


@dataclass(frozen=True)
class MessageRow:
    role: str  # "user" | "assistant"
    content: str
    created_at: datetime


@dataclass(frozen=True)
class InspectionFilter:
    """Which inspections a history query selects; every field left None selects everything."""

    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    product_id: int | None = None
    verdict: str | None = None  # "defective" | "good"
    decision: str | None = None  # one of DECISIONS, or "undecided" for rows without a decision
    text: str | None = None  # case-insensitive substring of file name, answer, image path, position, defect types, note
