"""The worker never loses a shown result: storage failures are retried until the row is written."""

from __future__ import annotations

import time

import numpy as np
import pytest

from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.errors import StorageError
from iadgpt_desktop.storage.records import InspectionFilter
from iadgpt_desktop.workers.inference import InferenceWorker
from iadgpt_desktop.workers.sources import Frame


@pytest.fixture
def worker(tmp_path, qtbot):
    w = InferenceWorker(Settings(preset="tiny-test", device="cpu", data_dir=str(tmp_path / "data"),
                                 generate_answers=False))
    w._open_storage()
    w._load_model()
    yield w
    w.shutdown()


def _frame(i: int) -> Frame:
    image = (np.random.default_rng(i).random((64, 80, 3)) * 255).astype(np.uint8)
    return Frame(source="camera:test", index=i, timestamp=time.time(), image=image)


def test_locked_database_result_is_shown_then_saved(worker, monkeypatch) -> None:
    real_add = repository.add_inspection
    failures = {"left": 2}

    def flaky(s, record):
        if failures["left"]:
            failures["left"] -= 1
            raise StorageError("the history database is locked: another program kept it busy")
        return real_add(s, record)

    monkeypatch.setattr(repository, "add_inspection", flaky)
    shown, messages, later = [], [], []
    worker.result.connect(shown.append)
    worker.storage_message.connect(messages.append)
    worker.saved_later.connect(later.append)
    outcome = worker.inspect_frame(_frame(0))
    assert outcome is not None and outcome.inspection_id is None and shown == [outcome]
    assert messages and "locked" in messages[0]
    worker._saves.waiting[0].next_at = 0.0
    worker._retry_unsaved()  # still locked: kept for later
    assert later == [] and worker._saves.waiting
    for item in worker._saves.waiting:
        item.next_at = 0.0  # the back-off has passed
    worker._retry_unsaved()
    assert later == [outcome] and outcome.inspection_id is not None
    with worker.db.Session() as s:
        assert repository.count_inspections(s, InspectionFilter()) == 1


def test_bad_frame_is_a_sentence_and_the_worker_keeps_going(worker) -> None:
    messages = []
    worker.inspection_failed.connect(lambda failure: messages.append(failure.message))
    bad = Frame(source="camera:test", index=1, timestamp=time.time(), image=np.zeros((0, 5, 3), np.uint8))
    assert worker.inspect_frame(bad) is None
    assert messages and "shape" in messages[0]
    assert worker.inspect_frame(_frame(2)) is not None


def test_gpu_out_of_memory_is_a_sentence_with_the_fix(worker, monkeypatch) -> None:
    import torch

    def boom(*_a, **_k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(worker.inspector, "inspect", boom)
    messages = []
    worker.inspection_failed.connect(lambda failure: messages.append(failure.message))
    assert worker.inspect_frame(_frame(3)) is None
    assert "GPU ran out of memory" in messages[0] and "Settings > Model" in messages[0]
