"""Results that are shown but not stored yet: retried with back-off, or set aside (no Qt here).

A transient failure (locked or busy database, full disk, server down) is tried again after 1, 2, 4 ...
up to 60 s, each result on its own clock, so one result never holds the others back. A permanent one
(damaged or read-only database, a value the schema refuses, an image whose mask cannot be encoded) is
reported once and set aside; it stays in the on-disk journal, so it is tried again at the next start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iadgpt_desktop.storage.errors import StorageError
from iadgpt_desktop.storage.journal import Journal
from iadgpt_desktop.storage.records import InspectionRecord

BASE_DELAY_S = 1.0
MAX_DELAY_S = 60.0


@dataclass(eq=False)
class PendingSave:
    """One shown result on its way to the database."""

    outcome: Any  # InspectionOutcome
    frame: Any  # the Frame it came from (its image file is read again when the files were not stored)
    record: InspectionRecord | None = None  # once its image and mask files are stored
    journal: Journal | None = None  # where it is kept on disk, once it is
    journal_id: str | None = None
    attempts: int = 0
    next_at: float = 0.0
    error: StorageError | None = None


@dataclass
class SaveQueue:
    """The pending results of one worker: `waiting` are retried, `set_aside` are not (until restart)."""

    clock: Callable[[], float] = time.monotonic
    waiting: list[PendingSave] = field(default_factory=list)
    set_aside: list[PendingSave] = field(default_factory=list)

    def failed(self, item: PendingSave, error: StorageError) -> bool:
        """Record a failed attempt; returns True when the item is newly set aside (report it once)."""
        item.error = error
        item.attempts += 1
        if item in self.waiting:
            self.waiting.remove(item)
        if not error.transient:
            self.set_aside.append(item)
            return True
        item.next_at = self.clock() + min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (item.attempts - 1))
        self.waiting.append(item)
        return False

    def due(self) -> list[PendingSave]:
        now = self.clock()
        return [item for item in self.waiting if item.next_at <= now]

    def seconds_to_next(self) -> float | None:
        """How long until the next retry is due (0 when one is due now); None when nothing waits."""
        if not self.waiting:
            return None
        return max(0.0, min(item.next_at for item in self.waiting) - self.clock())

    def saved(self, item: PendingSave) -> None:
        if item in self.waiting:
            self.waiting.remove(item)

    def __len__(self) -> int:
        return len(self.waiting) + len(self.set_aside)

    def summary(self) -> str | None:
        """A sentence about what is not saved, for closing the application; None when everything is."""
        items = self.waiting + self.set_aside
        if not items:
            return None
        kept = [i for i in items if i.journal_id is not None]
        lost = len(items) - len(kept)
        parts = [f"{len(items)} shown result(s) are not saved in the history"]
        if kept:
            parts.append(f"{len(kept)} of them are kept in {kept[0].journal.path if kept[0].journal else 'the journal'}"
                         f" and will be saved at the next start")
        if lost:
            parts.append(f"{lost} could not be kept on disk either (their image or mask could not be written) "
                         f"and are lost when the application closes")
        reason = items[-1].error
        return "; ".join(parts) + (f". Last reason: {reason}" if reason else ".")
