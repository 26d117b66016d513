"""The unsaved-results journal: appended line by line, replayed at the next start, rewritten whole."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from iadgpt_desktop.storage import InspectionRecord
from iadgpt_desktop.storage.journal import JOURNAL_FILENAME, Journal
from tests.storage.conftest import make_record


def _refuse(kind: str):
    def store(record: InspectionRecord) -> None:
        if record.source == kind:
            raise RuntimeError(f"the database refused {record.source}")
    return store


def test_replay_stores_what_it_can_and_rewrites_the_journal_with_the_rest(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(make_record(source="camera:0"))
    kept = journal.append(make_record(source="folder:/bad"))
    assert journal.replay(_refuse("folder:/bad")) == (1, ["the database refused folder:/bad"])
    assert list(journal.pending()) == [kept]
    assert [p.name for p in tmp_path.iterdir()] == [JOURNAL_FILENAME]  # no .tmp beside it
    assert journal.path.read_text(encoding="utf-8").count("\n") == 1  # only what is still unsaved
    assert journal.replay(_refuse("nothing")) == (1, []) and not journal.path.exists()


def test_a_rewrite_that_fills_the_disk_keeps_the_journal_and_nothing_is_stored_twice(
        tmp_path: Path, disk_fills_midway) -> None:
    """The replay fails (the worker says so at start) but the old journal, with the "saved" lines it
    got, still tells the next start exactly what is left."""
    journal = Journal(tmp_path)
    journal.append(make_record(source="camera:0"))
    kept = journal.append(make_record(source="folder:/bad"))
    stored: list[str] = []

    def store(record: InspectionRecord) -> None:
        _refuse("folder:/bad")(record)
        stored.append(record.source)

    with pytest.raises(OSError) as caught:
        journal.replay(store)
    assert caught.value.errno == errno.ENOSPC
    assert stored == ["camera:0"] and list(journal.pending()) == [kept]
    assert [p.name for p in tmp_path.iterdir()] == [JOURNAL_FILENAME]
