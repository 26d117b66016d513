"""Reference images checked before they are added or a memory bank is built from them.

Each file is read the way the model will read it (`iadgpt.imageio.load_image`, with the station's
pixel limit), so a text file named .png, a truncated or empty file, or an image over the limit is
refused with the same sentence the worker would give, but for every bad file at once. Decoding a
folder of large images takes seconds, so `ReferenceChecker` does it on a thread of its own and reports
back to the GUI thread with a signal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from iadgpt.errors import IADGPTError
from iadgpt.imageio import iter_image_files, load_image

log = logging.getLogger(__name__)

SHOWN_REFUSALS = 8  # lines of reasons in the message; the rest are counted (and all are logged)


@dataclass(frozen=True)
class ReferenceCheck:
    """What a check found: the usable image files, in order, and each refused one with its reason."""

    readable: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, the loader's sentence)

    @property
    def found(self) -> int:
        return len(self.readable) + len(self.refused)


def check_references(paths: Iterable[str | Path], max_pixels: int) -> ReferenceCheck:
    """Expand folders (`iter_image_files`) and decode every file as the model would; never raises."""
    readable: list[str] = []
    refused: list[tuple[str, str]] = []
    seen: set[str] = set()  # a file given twice (itself and in its folder) is checked and listed once
    for given in paths:
        try:
            files = iter_image_files([given])
        except (OSError, IADGPTError) as exc:
            refused.append((str(given), str(exc)))
            seen.add(str(given))
            continue
        for file in files:
            path = str(file)
            if path in seen:
                continue
            seen.add(path)
            try:
                load_image(file, max_pixels=max_pixels)
            except (OSError, IADGPTError) as exc:
                refused.append((path, str(exc)))
            except MemoryError:
                refused.append((path, f"cannot read image {path}: there is not enough memory to decode it; "
                                      f"close other programs or save it smaller"))
            else:
                readable.append(path)
    for _path, reason in refused:
        log.warning("reference image refused: %s", reason)
    return ReferenceCheck(readable, refused)


def describe_refused(refused: list[tuple[str, str]]) -> str:
    """One line per refused file (the loader's sentence, which names it), at most SHOWN_REFUSALS."""
    lines = [f"• {reason}" for _, reason in refused[:SHOWN_REFUSALS]]
    if len(refused) > SHOWN_REFUSALS:
        lines.append(f"• … and {len(refused) - SHOWN_REFUSALS} more (all are listed in the log)")
    return "\n".join(lines)


class ReferenceChecker(QObject):
    """Runs `check_references` off the GUI thread; `checked(token, ReferenceCheck)` comes back on it."""

    checked = Signal(object, object)  # the caller's token, ReferenceCheck

    def start(self, token: object, paths: list[str], max_pixels: int) -> None:
        def run() -> None:
            result = check_references(paths, max_pixels)
            try:
                self.checked.emit(token, result)  # queued to the GUI thread, where this object lives
            except RuntimeError:  # the view was closed meanwhile: nobody to tell
                log.debug("reference check finished after its view was closed")

        threading.Thread(target=run, name="reference-check", daemon=True).start()
