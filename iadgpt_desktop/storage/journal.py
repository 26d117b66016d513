"""The unsaved-results journal: results that are shown but could not be stored yet, kept on disk.

When the database refuses a result (locked, server down, damaged, a value the schema refuses), the
worker appends the complete record (its image and mask files are already in the data folder) to an
append-only JSON-lines file in the data folder and fsyncs it, so neither closing the application
nor a crash loses it. When the record is stored later, a "saved" line is appended. At the next start
the journal is replayed into the database: every record without a "saved" line is stored (once: the
record carries an id, and a record already stored is recognised) and the file is rewritten with
whatever is still unsaved (nothing, normally, and then it is removed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from iadgpt.atomic import atomic_open
from iadgpt_desktop.storage.errors import StorageError
from iadgpt_desktop.storage.records import InspectionRecord

log = logging.getLogger(__name__)

JOURNAL_FILENAME = "unsaved-results.jsonl"
_DATETIME_FIELDS = ("created_at", "decided_at")


def record_to_json(record: InspectionRecord) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    for key in _DATETIME_FIELDS:
        if data.get(key) is not None:
            data[key] = data[key].isoformat()
    data["defect_types"] = [[n, p] for n, p in record.defect_types]
    return data


def record_from_json(data: dict[str, Any]) -> InspectionRecord:
    data = dict(data)
    for key in _DATETIME_FIELDS:
        if data.get(key) is not None:
            data[key] = datetime.fromisoformat(data[key])
    data["defect_types"] = [(str(n), float(p)) for n, p in data.get("defect_types", [])]
    names = {f.name for f in dataclasses.fields(InspectionRecord)}
    return InspectionRecord(**{k: v for k, v in data.items() if k in names})


class Journal:
    """Append-only, fsynced JSON lines: {"op": "unsaved", "id", "record"} and {"op": "saved", "id"}."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / JOURNAL_FILENAME

    def append(self, record: InspectionRecord) -> str:
        """Keep a record that is not in the database yet; returns its journal id."""
        entry_id = uuid.uuid4().hex
        self._write({"op": "unsaved", "id": entry_id, "record": record_to_json(record)})
        return entry_id

    def mark_saved(self, entry_id: str) -> None:
        self._write({"op": "saved", "id": entry_id})

    def pending(self) -> dict[str, InspectionRecord]:
        """Every record without a "saved" line, in the order they were kept (a torn last line is skipped)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageError(f"cannot read the unsaved-results journal {self.path}: {exc}; make it readable, "
                               f"then restart, so the results kept in it are saved") from exc
        unsaved: dict[str, InspectionRecord] = {}
        for number, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                if entry["op"] == "unsaved":
                    unsaved[entry["id"]] = record_from_json(entry["record"])
                elif entry["op"] == "saved":
                    unsaved.pop(entry["id"], None)
            except (ValueError, KeyError, TypeError) as exc:  # a line torn by a crash mid-write
                log.warning("%s line %d is unreadable (%s); skipped", self.path, number, exc)
        return unsaved

    def replay(self, store: Callable[[InspectionRecord], object]) -> tuple[int, list[str]]:
        """Store every pending record with `store`; returns (saved, [sentences for those still unsaved]).

        Whatever fails stays in the journal for the next start; the file is rewritten to hold only
        those (atomically), or removed when everything is saved.
        """
        pending = self.pending()
        if not pending and not self.path.exists():
            return 0, []
        saved, problems, left = 0, [], {}
        for entry_id, record in pending.items():
            try:
                store(record)
            except Exception as exc:  # noqa: BLE001 - kept for the next start, reported as a sentence
                left[entry_id] = record
                problems.append(str(exc))
                continue
            self.mark_saved(entry_id)
            saved += 1
        self._rewrite(left)
        return saved, problems

    # -- internals ---------------------------------------------------------------------------
    def _write(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, ensure_ascii=False, allow_nan=True) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rewrite(self, left: dict[str, InspectionRecord]) -> None:
        if not left:
            self.path.unlink(missing_ok=True)
            return
        # Replaced whole: a failure (full disk, crash) keeps the old journal, whose "saved" lines were
        # appended before, so it still says what is pending.
        with atomic_open(self.path, "w", encoding="utf-8") as f:
            for entry_id, record in left.items():
                f.write(json.dumps({"op": "unsaved", "id": entry_id, "record": record_to_json(record)}) + "\n")
