"""The inference worker: one long-lived QObject on its own QThread that loads and owns the model.

The GUI talks to it only through queued signals/slots and reads plain dataclasses back; nothing heavy
runs on the GUI thread. Cancellation is cooperative: `cancel()` may be called from any thread and is
checked between frames and inside generation.

Nothing polls: the attached source queue announces each frame (a queued signal to this thread, at most
one waiting), one frame is inspected per event so requests in between (pause, chat, settings) are
served between frames, and results that could not be stored are retried by a single-shot timer set
to the earliest back-off.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import torch
from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, QTimer, Signal, Slot

from iadgpt.errors import CancelledError, IADGPTError, ImageLoadError, MemoryBankError
from iadgpt.imageio import load_image, shrink_to_side
from iadgpt.inspector import InspectionResult, Inspector
from iadgpt.memory_bank import MemoryBank
from iadgpt.prompt_bank import PromptBank
from iadgpt.references import NearestReference, ReferenceSet, load_beside, references_path
from iadgpt_desktop.settings import Settings
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.storage.errors import NotFoundError, StorageError, classify
from iadgpt_desktop.storage.journal import Journal
from iadgpt_desktop.storage.records import InspectionRecord
from iadgpt_desktop.workers.contract import (
    BankBuilt,
    BankPhase,
    BankProgress,
    InspectionFailure,
    ModelState,
    ModelStatus,
    ProductMode,
    Verdict,
)
from iadgpt_desktop.workers.saving import PendingSave, SaveQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProductInfo:
    """The product being inspected, as the worker needs it."""

    id: int | None
    name: str
    class_name: str
    mode: ProductMode = ProductMode.TRAINED
    memory_bank_path: str | None = None
    prompt_bank_json: str | None = None


REFERENCE_MAX_SIDE = 1024  # the nearest reference is shown, not inspected: a display-sized copy is enough
REFERENCE_CACHE = 16  # decoded reference images kept by the worker (a line shows the same few again and again)
INTERRUPTED = "[interrupted]"  # marks an answer cut short by Pause or Stop, as stored and shown


@dataclass(frozen=True)
class FromHistory:
    """What an outcome read back from History (not inspected in this run) says beyond the result."""

    inspected_at: datetime  # when it was inspected (UTC)
    decision: str | None = None  # the operator decision stored with it
    problem: str = ""  # what of it cannot be shown (its image or map file is gone), naming the file
    reference_gone: bool = False  # its stored nearest reference's file is no longer there to be shown


@dataclass
class InspectionOutcome:
    """One inspected frame or file, ready to show: the result, the image, and where it was stored.

    Written by the worker only; once emitted the GUI reads it and never re-reads the database row.
    Or read back from History (`from_history`, made by `workers.stored`): a reopened folder's images
    inspected before.
    """

    result: InspectionResult
    image: np.ndarray | None = field(repr=False)  # RGB uint8, as inspected; None: a stored image that is gone
    source: str
    index: int
    inspection_id: int | None  # None when storing failed (the reason went out on `storage_message`)
    product_id: int | None
    not_saved: str | None = None  # why it is not (yet) in the history; None once stored
    file_name: str = ""  # the inspected file's name ("" for a camera frame)
    image_path: str = ""  # the stored image (absolute), for chat and the detail view; "" until stored
    mask_path: str = ""  # the stored anomaly map (absolute), "" until stored
    interrupted: bool = False  # the answer was cut short (Pause/Stop while it was generated)
    reference_image: np.ndarray | None = field(default=None, repr=False)  # the nearest good reference, RGB
    from_history: FromHistory | None = None  # read back from History, not inspected in this run

    @property
    def nearest_reference(self) -> NearestReference | None:
        """Few-shot: the good reference image most like this part (None otherwise, or for an old bank)."""
        return self.result.nearest_reference

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.result.verdict)


def interrupted_answer(partial: str) -> str:
    """What is stored and shown for an answer that Pause or Stop cut short."""
    partial = partial.strip()
    return f"{partial} {INTERRUPTED}" if partial else f"{INTERRUPTED} (stopped before the answer was complete)"


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
    """Owns the model; one typed signal per outcome (the views never compare task names)."""

    model_state = Signal(object)  # ModelStatus: loading, ready (which model), failed (why)
    settings_applied = Signal(object)  # Settings now in force (the new model, if any, is loaded)
    settings_rejected = Signal(object, str)  # the Settings kept, why the new ones were not taken
    result = Signal(object)  # InspectionOutcome
    inspection_failed = Signal(object)  # InspectionFailure
    chat_token = Signal(int, str)  # inspection id, text piece
    chat_finished = Signal(int, str, bool)  # inspection id, whole answer as stored, interrupted
    chat_failed = Signal(int, str)  # inspection id, a sentence that says what to do
    bank_progress = Signal(object)  # BankProgress
    bank_ready = Signal(object)  # BankBuilt
    bank_failed = Signal(int, str)  # product id, a sentence (also when cancelled)
    product_changed = Signal(object)  # ProductInfo now inspected
    product_failed = Signal(str)  # a sentence
    storage_message = Signal(str)  # storage trouble, or that it is back
    saved_later = Signal(object)  # an InspectionOutcome stored after a storage failure
    _frames_waiting = Signal()  # from a source's thread (or this one): the attached queue holds a frame

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.inspector: Inspector | None = None
        self.db: Database | None = db  # shared with the GUI (one engine, one migration run)
        self._owns_db = db is None
        self.product: ProductInfo | None = None
        self._queue = None
        self._source_name = ""
        self._cancel = threading.Event()  # an answer being generated (Pause, Stop, the chat's Stop)
        self._cancel_bank = threading.Event()  # a memory bank being built (its own Cancel button)
        self._wake_posted = threading.Event()  # a `_frames_waiting` is on its way: do not send another
        self._frames_waiting.connect(self._next_frame, Qt.ConnectionType.QueuedConnection)
        self._retry_timer: QTimer | None = None  # made in the worker's thread by `initialise`
        self._saves = SaveQueue()  # shown, not yet stored: retried with back-off or set aside
        self._reference_images: OrderedDict[str, np.ndarray | None] = OrderedDict()  # path -> display copy
        self.inspected = 0

    # -- life cycle (runs in the worker thread) -----------------------------------------------
    @Slot()
    def initialise(self) -> None:
        self._retry_timer = QTimer(self)
        self._retry_timer.setSingleShot(True)
        self._retry_timer.timeout.connect(self._retry_unsaved)
        if self.db is None:
            self._open_storage()
        self._replay_journal()
        self._load_model()

    @Slot()
    def shutdown(self) -> None:
        if self._retry_timer:
            self._retry_timer.stop()
        self.detach_queue()
        if self._saves:
            log.warning("closing with unsaved results: %s", self._saves.summary())
        if self.db and self._owns_db:
            self.db.close()
        self.db = None
        self.inspector = None

    def cancel(self) -> None:
        """Thread-safe: stop the answer being generated (an inspection's or the chat's) at once."""
        self._cancel.set()

    def cancel_bank(self) -> None:
        """Thread-safe: stop a memory bank being built; pausing the stream does not (it calls `cancel`)."""
        self._cancel_bank.set()

    def _should_stop(self) -> bool:
        return self._cancel.is_set()

    # -- settings ----------------------------------------------------------------------------
    @Slot(object)
    def apply_settings(self, settings: Settings) -> None:
        """Take new settings only once they work: a new model is loaded first and replaces the
        old one only if it loaded; otherwise the old model and the old settings stay."""
        old = self.settings
        if settings.model_key() != old.model_key() or self.inspector is None:
            error = self._load_model(settings)
            if error is not None:
                self.settings_rejected.emit(old, error)
                return
        self.settings = settings
        if self._owns_db and settings.storage_key() != old.storage_key():
            self._open_storage()
        self.settings_applied.emit(settings)

    @Slot(object)
    def use_database(self, db: Database | None) -> None:
        """The GUI opened another history database (Settings > Storage): store results there."""
        if self.db is not None and self._owns_db:
            self.db.close()
        self.db, self._owns_db = db, False

    def _open_storage(self) -> None:
        if self.db:
            self.db.close()
            self.db = None
        try:
            self.db = Database.open(self.settings.data_path, self.settings.database_url or None)
        except Exception as exc:  # noqa: BLE001 - the boundary: tell the user, keep running
            log.exception("cannot open the database")
            self.storage_message.emit(f"cannot open the history database: {_user_message(exc)}; results "
                                      f"are shown but not saved until Settings > Storage points at a "
                                      f"writable folder or database")

    def _load_model(self, settings: Settings | None = None) -> str | None:
        """Load the model `settings` name; it replaces the current one only once it loaded.

        Returns None on success, else the sentence that says why (the current model, if any, stays).
        """
        s = settings or self.settings
        self.model_state.emit(ModelStatus(ModelState.LOADING, f"loading model preset '{s.preset}' on {s.device} ..."))
        try:
            inspector = Inspector(s.preset, device=s.device, precision=s.precision,
                                  weights=s.weights_dir or None, llm_path=s.llm_dir or None,
                                  clip_weights=s.clip_weights or None,
                                  max_pixels=s.max_pixels)
            if self.product:
                self._apply_product(self.product, inspector)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("model loading failed")
            message = _user_message(exc)
            if self.inspector is None:
                self.model_state.emit(ModelStatus(ModelState.FAILED, message))
            else:  # the working model stays
                self._report_ready(f"the new model settings were not applied ({message}); still using")
            return message
        self.inspector = inspector
        self._report_ready()
        self._announce_frame()  # frames that came while no model was loaded
        return None

    def _report_ready(self, prefix: str = "") -> None:
        ins = self.inspector
        assert ins is not None
        text = f"{ins.model_id} on {ins.device} ({str(ins.dtype).removeprefix('torch.')}), mode {ins.mode}"
        self.model_state.emit(ModelStatus(ModelState.READY, f"{prefix} {text}".strip(), ins.model_id, ins.mode,
                                          bool(ins.trained), _trained_classes(ins)))

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
            self.product_failed.emit(_user_message(exc))
            return
        self.product_changed.emit(product)
        self._report_ready()  # the mode may have changed

    def _apply_product(self, product: ProductInfo, inspector: Inspector | None = None) -> None:
        inspector = inspector or self.inspector
        assert inspector is not None
        bank = PromptBank.from_json(json.loads(product.prompt_bank_json), origin=f"product '{product.name}'") \
            if product.prompt_bank_json else None
        inspector.set_product(product.class_name, bank)
        memory = references = None
        if product.mode == ProductMode.FEW_SHOT and product.memory_bank_path:
            memory = MemoryBank.load(product.memory_bank_path, expect_meta=inspector.memory_bank_meta())
            references = _references_of(product.memory_bank_path, memory)
        inspector.set_memory_bank(memory, references)
        self._reference_images.clear()

    @Slot(object, object)
    def build_memory_bank(self, product: ProductInfo, references: list) -> None:
        """Few-shot onboarding in one step: a memory bank from good images, saved in the data folder,
        stored with the product, and the product inspected with it from the next image on.

        Progress goes out per phase (reading the images, choosing patches, saving); `cancel()` stops
        it in either long phase and keeps whatever was in use before.
        """
        pid = product.id
        if self.inspector is None or pid is None:
            self.bank_failed.emit(pid or -1, "the model is not loaded yet; wait for it, then try again")
            return
        self._cancel_bank.clear()
        previous = self.inspector.memory_bank, self.inspector.references

        def report(phase: BankPhase):
            return lambda done, total: self.bank_progress.emit(BankProgress(pid, phase, done, total))

        try:
            bank = self.inspector.build_memory_bank(
                references, progress=report(BankPhase.READING), should_stop=self._cancel_bank.is_set,
                select_progress=report(BankPhase.SELECTING))
            self.bank_progress.emit(BankProgress(pid, BankPhase.SAVING, 0, 1))
            folder = self.settings.data_path / "memory_banks"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"product-{pid}.safetensors"
            if self.inspector.references is not None:  # first: a bank is never saved without its own index
                self.inspector.references.save(references_path(target))
            path = bank.save(target)
            self._reference_images.clear()
            if self.db:
                with self.db.Session.begin() as s:
                    repository.update_product(s, pid, memory_bank_path=str(path), mode=ProductMode.FEW_SHOT.value)
            current = self.product
            self.product = ProductInfo(**{**product.__dict__, "mode": ProductMode.FEW_SHOT,
                                          "memory_bank_path": str(path)})
            same_prompts = current is not None and (current.class_name, current.prompt_bank_json) == (
                product.class_name, product.prompt_bank_json)
            if not same_prompts:  # another product: its prompts too (the new bank is already set)
                self._apply_product(self.product)
        except CancelledError as exc:
            self.inspector.set_memory_bank(*previous)
            self.bank_failed.emit(pid, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("building the memory bank failed")
            self.inspector.set_memory_bank(*previous)
            self.bank_failed.emit(pid, _user_message(exc))
            return
        self.bank_progress.emit(BankProgress(pid, BankPhase.SAVING, 1, 1))
        self.bank_ready.emit(BankBuilt(pid, len(bank), str(path), active=True))
        self.product_changed.emit(self.product)
        self._report_ready()

    @Slot(object, object)
    def build_memory_bank_if_untrained(self, product: ProductInfo, references: list) -> None:
        """First run: give the sample product a memory bank only when the loaded model is untrained.

        The worker decides, because only the loaded model knows whether its weights were trained
        (settings name a folder; whether it loaded is known here). With no model loaded there is
        nothing to build for; the failure was already reported on `model_state`.
        """
        if self.inspector is None or self.inspector.trained or not references:
            return
        self.build_memory_bank(product, references)

    # -- streaming inspection ------------------------------------------------------------------
    @Slot(object, str)
    def attach_queue(self, queue, source_name: str) -> None:
        """Inspect frames from a source queue (NewestFrameQueue or OrderedQueue) as they come."""
        self._cancel.clear()
        self.detach_queue()
        self._queue, self._source_name = queue, source_name
        queue.set_listener(self._announce_frame)
        self._announce_frame()  # what it already holds (after a pause, or put before it was attached)

    @Slot()
    def detach_queue(self) -> None:
        if self._queue is not None:
            self._queue.set_listener(None)
        self._queue = None

    def _announce_frame(self) -> None:
        """Any thread: ask this worker's thread to take the next frame (one request in flight at most)."""
        if not self._wake_posted.is_set():
            self._wake_posted.set()
            self._frames_waiting.emit()

    @Slot()
    def _next_frame(self) -> None:
        """Inspect one waiting frame; ask again for the next, so requests queued meanwhile run between."""
        self._wake_posted.clear()  # before reading the queue: a frame put from now on asks again
        queue = self._queue
        if queue is None or self.inspector is None:
            return  # attached again, or the model loaded, asks again
        frame = queue.get(timeout=0)
        if frame is not None:
            self.inspect_frame(frame)
        if self._queue is queue and len(queue):
            self._announce_frame()

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
            self.inspection_failed.emit(InspectionFailure(_frame_name(frame), str(exc), _frame_path(frame)))
            return None
        except Exception as exc:  # noqa: BLE001 - the boundary
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()  # give the memory back so the next, smaller job can run
            log.error("inspecting %s failed:\n%s", name, traceback.format_exc())
            self.inspection_failed.emit(InspectionFailure(_frame_name(frame), f"{name}: {_user_message(exc)}",
                                                          _frame_path(frame)))
            return None
        interrupted = self.settings.generate_answers and self._cancel.is_set()
        if interrupted:  # Pause or Stop cut the answer short: say so instead of storing it as complete
            result.answer = interrupted_answer(result.answer)
        if frame.path is not None:
            result.image = str(frame.path)
        outcome = InspectionOutcome(result, image, frame.source, frame.index, None,
                                    self.product.id if self.product else None, file_name=_frame_name(frame),
                                    interrupted=interrupted, reference_image=self._reference_image(result))
        outcome.inspection_id = self._store(outcome, frame)
        self.inspected += 1
        self.result.emit(outcome)
        return outcome

    def _reference_image(self, result: InspectionResult) -> np.ndarray | None:
        """A display copy of the nearest reference's file (None when there is none or it is unreadable)."""
        nearest = result.nearest_reference
        if nearest is None or nearest.path is None:
            return None
        if nearest.path in self._reference_images:
            self._reference_images.move_to_end(nearest.path)
            return self._reference_images[nearest.path]
        try:
            rgb = load_image(nearest.path, max_pixels=self.settings.max_pixels)
        except ImageLoadError as exc:  # moved or deleted since the bank was built: the name is still shown
            log.warning("the nearest reference %s cannot be shown: %s", nearest.path, exc)
            rgb = None
        if rgb is not None:
            rgb = shrink_to_side(rgb, REFERENCE_MAX_SIDE)
        self._reference_images[nearest.path] = rgb
        while len(self._reference_images) > REFERENCE_CACHE:
            self._reference_images.popitem(last=False)
        return rgb

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
        item.outcome.image_path = str(self.db.files.path(item.record.image_path))
        item.outcome.mask_path = str(self.db.files.path(item.record.mask_path)) if item.record.mask_path else ""
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
        self._schedule_retry()
        if newly_set_aside:
            self.storage_message.emit(f"not saved: {error} (set aside; the other results are still saved)")
        elif first:
            self.storage_message.emit(f"not saved: {error} (shown, kept and retried; {len(self._saves)} "
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
                                            mask_path=mask_rel, product_id=outcome.product_id,
                                            file_name=outcome.file_name or None)

    @Slot()
    def _retry_unsaved(self) -> None:
        """Try every result whose back-off has passed; one that still fails never holds the others back."""
        saved = 0
        for item in self._saves.due():
            if self._save(item, first=False) is not None:
                saved += 1
                self.saved_later.emit(item.outcome)
        if saved:
            self.storage_message.emit(f"storage is back: {saved} delayed result(s) saved")
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        """Set the single-shot retry timer to the earliest back-off (stopped when nothing waits). Without
        a timer (a worker not started on its thread, as in tests) retries run only when asked."""
        if self._retry_timer is None:
            return
        wait = self._saves.seconds_to_next()
        if wait is None:
            self._retry_timer.stop()
        else:
            self._retry_timer.start(math.ceil(wait * 1000))

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
            self.storage_message.emit(f"results kept from the last session could not be saved: {exc}")
            return
        if saved:
            self.storage_message.emit(f"{saved} result(s) kept from the last session were saved")
        if problems:
            self.storage_message.emit(f"{len(problems)} result(s) kept from the last session are still not "
                                        f"saved and stay in {journal.path}: {problems[-1]}")

    # -- conversation --------------------------------------------------------------------------
    @Slot(int, str, object, str)
    def chat(self, inspection_id: int, image_path: str, history: list, question: str) -> None:
        """Answer a question about an inspection, streaming pieces; the turn is stored when done."""
        if self.inspector is None:
            self.chat_failed.emit(inspection_id, "the model is not loaded yet; wait for it, then ask again")
            return
        self._cancel.clear()
        pieces: list[str] = []
        t0 = time.perf_counter()
        shown_map = self._stored_map(inspection_id)
        try:
            for piece in self.inspector.chat(image_path, history, question, should_stop=self._should_stop,
                                             shown_map=shown_map):
                pieces.append(piece)
                self.chat_token.emit(inspection_id, piece)
        except Exception as exc:  # noqa: BLE001 - the boundary
            log.exception("chat failed")
            self.chat_failed.emit(inspection_id, _user_message(exc))
            return
        answer = "".join(pieces).strip()
        cancelled = self._cancel.is_set()
        if cancelled:
            answer = interrupted_answer(answer)
        log.info("chat answer in %.2f s (%d pieces, cancelled=%s)", time.perf_counter() - t0, len(pieces), cancelled)
        if self.db is not None and inspection_id >= 0:
            try:
                with self.db.Session.begin() as s:
                    repository.add_message(s, inspection_id, "user", question)
                    repository.add_message(s, inspection_id, "assistant", answer)
            except Exception as exc:  # noqa: BLE001 - the boundary
                log.exception("storing the conversation failed")
                self.storage_message.emit(f"the answer is shown but was NOT saved: {_user_message(exc)}")
        self.chat_finished.emit(inspection_id, answer, cancelled)


    def _stored_map(self, inspection_id: int) -> np.ndarray | None:
        """The anomaly map History keeps for the inspection (what the screen shows for it), so the chat
        reads the evidence it was shown with, not a map rebuilt with the product active now; None when
        there is none (an unsaved result) or it cannot be read (logged; the map is rebuilt then)."""
        if self.db is None or inspection_id < 0:
            return None
        try:
            with self.db.Session() as s:
                row = repository.get_inspection(s, inspection_id)
            return self.db.files.read_mask(row.mask_path) if row is not None and row.mask_path else None
        except Exception as exc:  # noqa: BLE001 - the chat still answers from a rebuilt map
            log.warning("stored map of inspection %d unavailable, the chat rebuilds it: %s", inspection_id, exc)
            return None


def _references_of(bank_path: str, bank: MemoryBank) -> ReferenceSet | None:
    """The reference index saved with a bank; None (logged) for a bank from before them or a damaged one:
    the bank still inspects, only the nearest reference is not shown."""
    try:
        return load_beside(bank_path, bank.meta)
    except MemoryBankError as exc:
        log.warning("%s", exc)
        return None


def _trained_classes(inspector: Inspector) -> tuple[str, ...]:
    """The product classes a trained model's manifest names (`extra.products`: dataset -> class)."""
    if not inspector.trained:
        return ()
    manifest = getattr(inspector, "weights_manifest", None) or {}
    products = (manifest.get("extra") or {}).get("products") or {}
    return tuple(str(c) for c in (products.values() if isinstance(products, dict) else products))


def _frame_name(frame) -> str:
    """The name the operator knows an image by: its file name, or the camera frame's number."""
    return os.path.basename(str(frame.path)) if frame.path is not None else f"{frame.source} frame {frame.index}"


def _frame_path(frame) -> str:
    return str(frame.path) if frame.path is not None else ""


def start_worker(settings: Settings, db: Database | None = None) -> tuple[QThread, InferenceWorker]:
    """Create the worker on its own thread, started; it loads the model in that thread. With `db`
    the worker stores into the GUI's database instead of opening its own."""
    thread = QThread()
    thread.setObjectName("inference")
    worker = InferenceWorker(settings, db)
    worker.moveToThread(thread)
    thread.started.connect(worker.initialise)
    thread.finished.connect(worker.deleteLater)
    thread.start()
    return thread, worker


def stop_worker(thread: QThread, worker: InferenceWorker, timeout_ms: int = 10000) -> None:
    worker.cancel()
    worker.cancel_bank()
    if thread.isRunning():
        # Run shutdown in the worker's own thread (its timer and database live there), and wait for it.
        QMetaObject.invokeMethod(worker, "shutdown", Qt.ConnectionType.BlockingQueuedConnection)
    thread.quit()
    if not thread.wait(timeout_ms):
        log.warning("the inference thread did not stop within %d ms", timeout_ms)

