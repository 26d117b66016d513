"""The inference worker: one long-lived QObject on its own QThread that loads and owns the model.

The GUI talks to it only through queued signals/slots and reads plain dataclasses back; nothing heavy
runs on the GUI thread. Cancellation is cooperative: `cancel()` may be called from any thread and is
checked between frames and inside generation.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch
from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, QTimer, Signal, Slot

from iadgpt.errors import CancelledError, IADGPTError, ImageLoadError
from iadgpt.imageio import load_image
from iadgpt.inspector import InspectionResult, Inspector
from iadgpt.memory_bank import MemoryBank
from iadgpt.prompt_bank import PromptBank
from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.storage.errors import NotFoundError, StorageError, classify
from iadgpt_desktop.storage.journal import Journal
from iadgpt_desktop.storage.records import InspectionRecord
from iadgpt_desktop.workers.saving import PendingSave, SaveQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProductInfo:
    """The product being inspected, as the worker needs it."""

    id: int | None
    name: str
    class_name: str
    mode: str = "trained"  # "trained" or "few-shot"
    memory_bank_path: str | None = None
    prompt_bank_json: str | None = None


@dataclass
class InspectionOutcome:
    """One inspected frame or file, ready to show: the result, the image, and where it was stored."""

    result: InspectionResult
    image: np.ndarray = field(repr=False)  # RGB uint8, as inspected
    source: str
    index: int
    inspection_id: int | None  # None when storing failed (the reason went out on `failed`)
    product_id: int | None
    not_saved: str | None = None  # why it is not (yet) in the history; None once stored


def _user_message(exc: BaseException) -> str:
    if isinstance(exc, IADGPTError | StorageError):
        return str(exc)
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return ("the GPU ran out of memory; choose a smaller preset, precision fp16, or device cpu in "
                "Settings > Model")
    if isinstance(exc, MemoryError):
        return "the computer ran out of memory; close other programs or use a smaller model preset"
    return (f"unexpected error ({type(exc).__name__}: {exc}); the details are in the log. "
            f"Try again, or restart the application if it persists")


class InferenceWorker(QObject):
    model_state = Signal(str, str)  # "loading" | "ready" | "failed", a sentence
    started = Signal(str)  # task name
    progress = Signal(str, int, int)  # task, done, total
    result = Signal(object)  # InspectionOutcome
    failed = Signal(str, str)  # task, a sentence that says what to do
    chat_token = Signal(int, str)  # inspection id, text piece
    chat_finished = Signal(int, str, bool)  # inspection id, whole answer, cancelled
    bank_ready = Signal(int, int)  # product id, stored patches
    saved_later = Signal(object)  # an InspectionOutcome stored after a storage failure

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.inspector: Inspector | None = None
        self.db: Database | None = None
        self.product: ProductInfo | None = None
        self._queue = None
        self._source_name = ""
        self._cancel = threading.Event()
        self._timer: QTimer | None = None
        self._saves = SaveQueue()  # shown, not yet stored: retried with back-off or set aside
        self.inspected = 0

    # -- life cycle (runs in the worker thread) -----------------------------------------------
    @Slot()
    def initialise(self) -> None:
        self._timer = QTimer(self)
        self._timer.setInterval(5)
        self._timer.timeout.connect(self._tick)
        self._open_storage()
        self._replay_journal()
        self._load_model()
        self._timer.start()

    @Slot()
    def shutdown(self) -> None:
        if self._timer:
            self._timer.stop()
        if self._saves:
            log.warning("closing with unsaved results: %s", self._saves.summary())
        if self.db:
            self.db.close()
            self.db = None
        self.inspector = None

    def cancel(self) -> None:
        """Thread-safe: stop the current generation, bank build, or stream as soon as possible."""
        self._cancel.set()

    def _should_stop(self) -> bool:
        return self._cancel.is_set()

    # -- settings ----------------------------------------------------------------------------
    @Slot(object)
    def apply_settings(self, settings: Settings) -> None:
        old, self.settings = self.settings, settings
        if settings.storage_key() != old.storage_key():
            self._open_storage()
        if settings.model_key() != old.model_key() or self.inspector is None:
            self._load_model()

    def _open_storage(self) -> None:
        if self.db:
            self.db.close()
            self.db = None
        try:
            self.db = Database.open(self.settings.data_path, self.settings.database_url or None)
        except Exception as exc:  # noqa: BLE001 - the boundary: tell the user, keep running
            log.exception("cannot open the database")
            self.failed.emit("storage", f"cannot open the history database: {_user_message(exc)}; results "
                                        f"are shown but not saved until Settings > Storage points at a "
                                        f"writable folder or database")

    def _load_model(self) -> None:
        s = self.settings
        self.model_state.emit("loading", f"loading model preset '{s.preset}' on {s.device} ...")
        self.inspector = None
        try:
            self.inspector = Inspector(s.preset, device=s.device, precision=s.precision,
                                       weights=s.weights_dir or None, llm_path=s.llm_dir or None,
                                       max_pixels=s.max_pixels)
            if self.product:
                self._apply_product(self.product)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("model loading failed")
            self.model_state.emit("failed", _user_message(exc))
            return
        ins = self.inspector
        self.model_state.emit("ready", f"{ins.model_id} on {ins.device} ({str(ins.dtype).removeprefix('torch.')}),"
                                       f" mode {ins.mode}")

    # -- product -----------------------------------------------------------------------------
    @Slot(object)
    def set_product(self, product: ProductInfo) -> None:
        self.product = product
        if self.inspector is None:
            return
        try:
            self._apply_product(product)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("switching product failed")
            self.failed.emit("product", _user_message(exc))

    def _apply_product(self, product: ProductInfo) -> None:
        assert self.inspector is not None
        bank = PromptBank.from_json(json.loads(product.prompt_bank_json), origin=f"product '{product.name}'") \
            if product.prompt_bank_json else None
        self.inspector.set_product(product.class_name, bank)
        memory = None
        if product.mode == "few-shot" and product.memory_bank_path:
            memory = MemoryBank.load(product.memory_bank_path, expect_meta=self.inspector.memory_bank_meta())
        self.inspector.set_memory_bank(memory)

    @Slot(int, object)
    def build_memory_bank(self, product_id: int, references: list) -> None:
        """Few-shot onboarding: a memory bank from good images, saved in the data folder."""
        if self.inspector is None:
            self.failed.emit("memory bank", "the model is not loaded yet; wait for it, then try again")
            return
        self._cancel.clear()
        self.started.emit("memory bank")
        previous = self.inspector.memory_bank
        try:
            bank = self.inspector.build_memory_bank(
                references, progress=lambda d, t: self.progress.emit("memory bank", d, t),
                should_stop=self._should_stop)
            folder = self.settings.data_path / "memory_banks"
            folder.mkdir(parents=True, exist_ok=True)
            path = bank.save(folder / f"product-{product_id}.safetensors")
            if self.db:
                with self.db.Session.begin() as s:
                    repository.update_product(s, product_id, memory_bank_path=str(path), mode="few-shot")
            if self.product and self.product.id == product_id:
                self.product = ProductInfo(**{**self.product.__dict__, "mode": "few-shot",
                                              "memory_bank_path": str(path)})
            else:  # built for a product that is not being inspected: keep inspecting as before
                self.inspector.set_memory_bank(previous)
            self.bank_ready.emit(product_id, len(bank))
        except CancelledError as exc:
            self.inspector.set_memory_bank(previous)
            self.failed.emit("memory bank", str(exc))
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("building the memory bank failed")
            self.inspector.set_memory_bank(previous)
            self.failed.emit("memory bank", _user_message(exc))

    @Slot(int, object)
    def build_memory_bank_if_untrained(self, product_id: int, references: list) -> None:
        """First run: give the sample product a memory bank only when the loaded model is untrained.

        The worker decides, because only the loaded model knows whether its weights were trained
        (settings name a folder; whether it loaded is known here). With no model loaded there is
        nothing to build for; the failure was already reported on `model_state`.
        """
        if self.inspector is None or self.inspector.trained or not references:
            return
        self.build_memory_bank(product_id, references)

    # -- streaming inspection ------------------------------------------------------------------
    @Slot(object, str)
    def attach_queue(self, queue, source_name: str) -> None:
        """Inspect frames from a source queue (NewestFrameQueue or OrderedQueue) as they come."""
        self._cancel.clear()
        self._queue, self._source_name = queue, source_name
        self.started.emit(f"inspect {source_name}")

    @Slot()
    def detach_queue(self) -> None:
        self._queue = None

    def _tick(self) -> None:
        self._retry_unsaved()
        if self._queue is None or self.inspector is None:
            return
        frame = self._queue.get(timeout=0)
        if frame is not None:
            self.inspect_frame(frame)

    def inspect_frame(self, frame) -> InspectionOutcome | None:
        """Inspect one Frame, store it, and emit the outcome (or a failure sentence)."""
        assert self.inspector is not None
        self._cancel.clear()
        name = str(frame.path) if frame.path is not None else f"{frame.source} frame {frame.index}"
        try:
            image = load_image(frame.path if frame.path is not None else frame.image,
                               max_pixels=self.settings.max_pixels)
            result = self.inspector.inspect(image, generate_answer=self.settings.generate_answers,
                                            should_stop=self._should_stop)
        except ImageLoadError as exc:
            self.failed.emit("inspect", str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - the boundary
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()  # give the memory back so the next, smaller job can run
            log.error("inspecting %s failed:\n%s", name, traceback.format_exc())
            self.failed.emit("inspect", f"{name}: {_user_message(exc)}")
            return None
        if frame.path is not None:
            result.image = str(frame.path)
        outcome = InspectionOutcome(result, image, frame.source, frame.index, None,
                                    self.product.id if self.product else None)
        outcome.inspection_id = self._store(outcome, frame)
        self.inspected += 1
        self.result.emit(outcome)
        return outcome

    def _store(self, outcome: InspectionOutcome, frame) -> int | None:
        """Save a shown result; any storage failure is caught here, so nothing shown is lost."""
        return self._save(PendingSave(outcome, frame), first=True)

    def _save(self, item: PendingSave, *, first: bool) -> int | None:
        try:
            if self.db is None:
                raise StorageError("the history database is not open (see the earlier message); the result "
                                   "is kept and saved once Settings > Storage points at a usable database",
                                   transient=True)
            if item.record is None:
                item.record = self._record(item.outcome, item.frame)
            with self.db.Session.begin() as s:
                inspection_id, _ = repository.add_batch_inspection(s, item.record)
        except Exception as exc:  # noqa: BLE001 - the boundary: every storage failure, of any kind
            self._not_saved(item, classify(exc), first=first, cause=exc)
            return None
        if item.journal is not None and item.journal_id is not None:
            try:
                item.journal.mark_saved(item.journal_id)
            except OSError as exc:  # the next start stores it once more only if it is not there yet
                log.warning("could not mark %s saved in %s: %s", item.journal_id, item.journal.path, exc)
        item.outcome.inspection_id, item.outcome.not_saved = inspection_id, None
        self._saves.saved(item)
        return inspection_id

    def _not_saved(self, item: PendingSave, error: StorageError, *, first: bool, cause: BaseException) -> None:
        log.error("storing %s failed: %s", item.outcome.result.image or "a frame", error, exc_info=cause)
        item.outcome.not_saved = str(error)
        if item.record is not None and item.journal_id is None:
            journal = Journal(self.settings.data_path)
            try:
                item.journal_id, item.journal = journal.append(item.record), journal
            except OSError as exc:
                log.error("cannot keep the unsaved result in %s either: %s", journal.path, exc)
        newly_set_aside = self._saves.failed(item, error)
        if newly_set_aside:
            self.failed.emit("storage", f"not saved: {error} (set aside; the other results are still saved)")
        elif first:
            self.failed.emit("storage", f"not saved: {error} (shown, kept and retried; {len(self._saves)} "
                                        f"waiting)")

    def _record(self, outcome: InspectionOutcome, frame) -> InspectionRecord:
        """Store the image and mask files; the record that points at them."""
        assert self.db is not None
        r = outcome.result
        try:
            image_rel, sha = self.db.files.store_image(frame.path if frame.path is not None else outcome.image)
        except NotFoundError:
            if frame.path is None:
                raise
            image_rel, sha = self.db.files.store_image(outcome.image)  # the file is gone: keep its pixels
        mask_rel = self.db.files.store_mask(r.anomaly_map)
        return InspectionRecord.from_result(r, source=frame.source, image_path=image_rel, image_sha256=sha,
                                            mask_path=mask_rel, product_id=outcome.product_id)

    def _retry_unsaved(self) -> None:
        """Try every result whose back-off has passed; one that still fails never holds the others back."""
        saved = 0
        for item in self._saves.due():
            if self._save(item, first=False) is not None:
                saved += 1
                self.saved_later.emit(item.outcome)
        if saved:
            self.failed.emit("storage", f"storage is back: {saved} delayed result(s) saved")

    def unsaved_summary(self) -> str | None:
        """A sentence about results that are shown but not saved (for closing the window), or None."""
        return self._saves.summary()

    def _replay_journal(self) -> None:
        """Results kept on disk by an earlier run (closed or crashed while storage failed) are stored now."""
        if self.db is None:
            return
        journal = Journal(self.settings.data_path)
        db = self.db

        def store(record: InspectionRecord) -> None:
            with db.Session.begin() as s:
                if not repository.has_inspection(s, record):
                    repository.add_batch_inspection(s, record)
        try:
            saved, problems = journal.replay(store)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("replaying the journal failed")
            self.failed.emit("storage", f"results kept from the last session could not be saved: {exc}")
            return
        if saved:
            self.failed.emit("storage", f"{saved} result(s) kept from the last session were saved")
        if problems:
            self.failed.emit("storage", f"{len(problems)} result(s) kept from the last session are still not "
                                        f"saved and stay in {journal.path}: {problems[-1]}")

    # -- conversation --------------------------------------------------------------------------
    @Slot(int, str, object, str)
    def chat(self, inspection_id: int, image_path: str, history: list, question: str) -> None:
        """Answer a question about an inspection, streaming pieces; the turn is stored when done."""
        if self.inspector is None:
            self.failed.emit("chat", "the model is not loaded yet; wait for it, then ask again")
            return
        self._cancel.clear()
        self.started.emit("chat")
        pieces: list[str] = []
        t0 = time.perf_counter()
        try:
            for piece in self.inspector.chat(image_path, history, question, should_stop=self._should_stop):
                pieces.append(piece)
                self.chat_token.emit(inspection_id, piece)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("chat failed")
            self.failed.emit("chat", _user_message(exc))
            return
        answer = "".join(pieces).strip()
        cancelled = self._cancel.is_set()
        log.info("chat answer in %.2f s (%d pieces, cancelled=%s)", time.perf_counter() - t0, len(pieces), cancelled)
        if self.db is not None and inspection_id >= 0:
            try:
                with self.db.Session.begin() as s:
                    repository.add_message(s, inspection_id, "user", question)
                    repository.add_message(s, inspection_id, "assistant", answer)
            except Exception as exc:  # noqa: BLE001 - the boundary
                log.exception("storing the conversation failed")
                self.failed.emit("storage", f"the answer is shown but was NOT saved: {_user_message(exc)}")
        self.chat_finished.emit(inspection_id, answer, cancelled)


def start_worker(settings: Settings) -> tuple[QThread, InferenceWorker]:
    """Create the worker on its own thread, started; it loads the model in that thread."""
    thread = QThread()
    thread.setObjectName("inference")
    worker = InferenceWorker(settings)
    worker.moveToThread(thread)
    thread.started.connect(worker.initialise)
    thread.finished.connect(worker.deleteLater)
    thread.start()
    return thread, worker


def stop_worker(thread: QThread, worker: InferenceWorker, timeout_ms: int = 10000) -> None:
    worker.cancel()
    if thread.isRunning():
        # Run shutdown in the worker's own thread (its timer and database live there), and wait for it.
        QMetaObject.invokeMethod(worker, "shutdown", Qt.ConnectionType.BlockingQueuedConnection)
    thread.quit()
    if not thread.wait(timeout_ms):
        log.warning("the inference thread did not stop within %d ms", timeout_ms)

