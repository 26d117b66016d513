"""What the inference worker and the views say to each other: enums and small frozen payloads.

One signal per outcome carries one of these; nothing is routed by comparing strings. The values of
the string enums are the words stored in the database (`storage.records`), so a row and a payload
compare equal without translation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.StrEnum):
    DEFECTIVE = "defective"
    GOOD = "good"


class ProductMode(enum.StrEnum):
    TRAINED = "trained"  # the model's own heads (zero-shot for a class it was trained on)
    FEW_SHOT = "few-shot"  # a memory bank of the product's good reference images


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class BankPhase(enum.Enum):
    """The phases of building a memory bank, in order, as the operator reads them."""

    READING = "reading the reference images"
    SELECTING = "choosing representative patches"
    SAVING = "saving the memory bank"


@dataclass(frozen=True)
class ModelStatus:
    state: ModelState
    message: str  # a sentence for the status bar (the cause and the fix when FAILED)
    model_id: str = ""
    mode: str = ""  # the inspector's mode: "zero-shot", "few-shot" or "untrained"
    trained: bool = False
    trained_classes: tuple[str, ...] = ()  # the product classes its weights were trained on


@dataclass(frozen=True)
class BankProgress:
    product_id: int
    phase: BankPhase
    done: int
    total: int


@dataclass(frozen=True)
class BankBuilt:
    product_id: int
    patches: int
    path: str
    active: bool  # the product being inspected now uses the new bank


@dataclass(frozen=True)
class InspectionFailure:
    name: str  # the file name, or "camera:0 frame 12"
    message: str  # a sentence that says what to do
    path: str = ""  # the file's full path ("" for a camera frame)
