"""Stored inspections read back to be shown again: a reopened folder shows its earlier results in Live.

A folder opened again skips the images inspected from it before (`AlreadyInspected`, the folder
source's `skip`, remembers which). Their most recent inspections are then read from History on a
thread of their own (`EarlierResultsReader`), so a large folder never blocks the GUI, and come back
as `InspectionOutcome`s marked `from_history`, with the stored image and anomaly map: nothing here
needs the model. A few-shot inspection brings back the good reference it was compared with (name and
similarity as stored), drawn beside the part when its file is still there. A stored image that is
gone, or a row that cannot be read, is said for that item, naming its file; the others still show.
`read_picture` is the one reading of a stored inspection's image and map, for the History detail too.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal

from iadgpt.errors import ImageLoadError
from iadgpt.imageio import load_image, shrink_to_side
from iadgpt.inspector import InspectionResult
from iadgpt.references import NearestReference
from iadgpt.weights import sha256_file
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.storage.files import FileStore
from iadgpt_desktop.storage.records import InspectionRow
from iadgpt_desktop.storage.wording import REFERENCE_GONE, describe_nearest_reference
from iadgpt_desktop.workers.inference import REFERENCE_MAX_SIDE, FromHistory, InspectionOutcome

log = logging.getLogger(__name__)

MASK_MISSING = "mask file missing"


class AlreadyInspected:
    """A folder source's `skip`: is this file's content already stored from the source? Thread-safe.

    It remembers the files it said yes to (path -> sha256), so that their earlier results can be shown.
    """

    def __init__(self, source: str, done: frozenset[str]) -> None:
        self.source = source
        self.done = done
        self._lock = threading.Lock()
        self._skipped: dict[Path, str] = {}

    def __call__(self, path: Path) -> bool:
        try:
            sha = sha256_file(path)
        except OSError:
            return False  # unreadable now: the inspection will say why
        if sha not in self.done:
            return False
        with self._lock:
            self._skipped[Path(path)] = sha
        return True

    def skipped(self) -> dict[Path, str]:
        """The files skipped so far, path -> sha256 of their content."""
        with self._lock:
            return dict(self._skipped)


def read_picture(files: FileStore, row: InspectionRow) -> tuple[np.ndarray, np.ndarray | None, str]:
    """A stored inspection's image (RGB uint8) and anomaly map ((H, W) float, None when its file is
    missing, with MASK_MISSING as the note). An image that is missing or unreadable raises."""
    image = load_image(files.path(row.image_path))
    anomaly_map, note = None, ""
    if row.mask_path:
        try:
            anomaly_map = files.read_mask(row.mask_path)
        except Exception as exc:  # noqa: BLE001 - the image alone is still worth showing
            log.warning("mask of inspection %d unavailable: %s", row.id, exc)
            note = MASK_MISSING
    return image, anomaly_map, note


def stored_reference(row: InspectionRow) -> NearestReference | None:
    """The nearest good reference stored with `row` (None when none was recorded). Its index in the bank
    is not kept (a rebuilt bank renumbers its references): -1."""
    if row.reference_name is None:
        return None
    similarity = row.reference_similarity if row.reference_similarity is not None else float("nan")
    return NearestReference(index=-1, name=row.reference_name, path=row.reference_path, similarity=similarity)


def describe_stored_reference(row: InspectionRow) -> str:
    """History's "Reference" field: "good_030.png (similarity 0.982)", with "(file no longer there)"
    when the reference's file has gone from where the product's reference set had it."""
    if row.reference_name is None:
        return "— (none recorded with this inspection)" if row.mode == "few-shot" else "—"
    text = describe_nearest_reference(row.reference_name, row.reference_similarity)
    if row.reference_path and not Path(row.reference_path).is_file():
        return f"{text} {REFERENCE_GONE}"
    return text


def read_reference(path: str | None) -> np.ndarray | None:
    """A display copy (RGB uint8) of a stored reference's file; None when it is gone or unreadable."""
    if not path:
        return None
    try:
        return shrink_to_side(load_image(path), REFERENCE_MAX_SIDE)
    except ImageLoadError as exc:
        log.info("the stored nearest reference %s cannot be shown: %s", path, exc)
        return None


def outcome_from_row(row: InspectionRow, files: FileStore, original: Path | None = None,
                     references: dict[str, np.ndarray | None] | None = None) -> InspectionOutcome:
    """A stored inspection as the Live view shows it (`original`: the file it was read from, when known;
    `references`: display copies of reference files already read, path -> image, filled in here).

    A missing image leaves `image` None and `from_history.problem` says so; the verdict, position and
    types stored with the row still show. A stored reference whose file is gone is named, not drawn.
    """
    name = row.file_name or (original.name if original is not None else f"inspection #{row.id}")
    problem = ""
    try:
        image, anomaly_map, note = read_picture(files, row)
    except Exception as exc:  # noqa: BLE001 - a moved or deleted file must not hide the stored verdict
        log.warning("image of inspection %d unavailable: %s", row.id, exc)
        image, anomaly_map = None, None
        stored = _absolute(files, row.image_path)
        why = "cannot be read" if stored and Path(stored).exists() else "is gone from the data folder"
        problem = f"{name}: its stored image {why}; only the stored verdict is shown"
    else:
        if note:
            problem = f"{name}: its stored anomaly map is gone; the image is shown without it"
        if anomaly_map is not None and anomaly_map.shape != image.shape[:2]:
            anomaly_map = cv2.resize(anomaly_map, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    result = InspectionResult(
        image=str(original) if original is not None else None, image_size=(row.height, row.width),
        class_name="", score=row.score, score_top1=row.score_top1, verdict=row.verdict, p_yes=row.p_yes,
        answer=row.answer, position=row.position, regions=[], defect_types=list(row.defect_types),
        anomaly_map=anomaly_map,  # None: the stored map is gone (the Live view draws no overlay then)
        mode=row.mode, model_id=row.model_id, timings_ms={"stored": row.latency_ms},
        nearest_reference=stored_reference(row))
    reference_image = None
    if result.nearest_reference is not None and row.reference_path:
        references = {} if references is None else references
        if row.reference_path not in references:
            references[row.reference_path] = read_reference(row.reference_path)
        reference_image = references[row.reference_path]
    return InspectionOutcome(
        result, image, row.source, -1, row.id, row.product_id, file_name=name,
        image_path=_absolute(files, row.image_path), mask_path=_absolute(files, row.mask_path),
        reference_image=reference_image,
        from_history=FromHistory(row.created_at, row.operator_decision, problem,
                                 reference_gone=result.nearest_reference is not None and reference_image is None))


def _absolute(files: FileStore, relative: str | None) -> str:
    if not relative:
        return ""
    try:
        return str(files.path(relative))
    except ValueError:
        return ""


@dataclass(frozen=True)
class EarlierResults:
    """The earlier results of one read: oldest first, and a sentence for each that cannot be shown in full."""

    request: int
    outcomes: list[InspectionOutcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_earlier_results(db: Database, skipped: dict[Path, str], limit: int) -> tuple[list[InspectionOutcome],
                                                                                     list[str]]:
    """The most recent inspection of each skipped file (newest `limit` of them), oldest first, and the
    problems met, one sentence each naming the file. Reading the history at all may raise."""
    names: dict[str, Path] = {}
    for path, sha in sorted(skipped.items()):
        names.setdefault(sha, path)  # the same content twice in the folder: one result, named by the first
    outcomes: list[InspectionOutcome] = []
    problems: list[str] = []
    references: dict[str, np.ndarray | None] = {}  # a line's parts share a few references: read each once
    with db.Session() as s:
        found = repository.latest_inspections_of(s, names, limit)
        for inspection_id, sha in found:
            original = names.get(sha)
            try:
                row = repository.get_inspection(s, inspection_id)
            except Exception as exc:  # noqa: BLE001 - a damaged row spoils only itself
                log.warning("inspection %d cannot be read: %s", inspection_id, exc)
                name = original.name if original is not None else "a file"
                problems.append(f"{name}: its stored inspection #{inspection_id} is damaged and cannot be read "
                                f"(see the log)")
                continue
            if row is None:  # deleted meanwhile
                continue
            outcome = outcome_from_row(row, db.files, original, references)
            outcomes.append(outcome)
            if outcome.from_history is not None and outcome.from_history.problem:
                problems.append(outcome.from_history.problem)
    outcomes.reverse()
    return outcomes, problems


class EarlierResultsReader(QObject):
    """Reads earlier results on a thread of its own; `ready` carries each read's EarlierResults.

    `read` returns the request number that its answer carries, so an answer to a source that has been
    replaced since can be told apart. `wait` joins the reading threads (before the database closes).
    """

    ready = Signal(object)  # EarlierResults

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._request = 0
        self._threads: list[threading.Thread] = []

    def read(self, db: Database, skipped: dict[Path, str], limit: int) -> int:
        self._request += 1
        request = self._request
        thread = threading.Thread(target=self._run, args=(request, db, dict(skipped), limit),
                                  name=f"history-read-{request}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return request

    def _run(self, request: int, db: Database, skipped: dict[Path, str], limit: int) -> None:
        try:
            outcomes, problems = read_earlier_results(db, skipped, limit)
        except Exception as exc:  # noqa: BLE001 - the boundary of this thread
            log.exception("reading the earlier results failed")
            outcomes, problems = [], [f"the earlier results could not be read from History: {exc}"]
        self.ready.emit(EarlierResults(request, outcomes, problems))

    def wait(self, timeout: float | None = 10.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]
