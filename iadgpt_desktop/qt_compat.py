"""A start-up check for a PySide6 defect that made the station crash after a few minutes.

PySide6-Essentials 6.12.0 returns ``True`` from ``SignalInstance.emit()`` without taking a
reference to it, so every ``emit()`` made from Python takes one reference away from ``True``.
Python 3.11's ``True`` is an ordinary object with a reference count of a few thousand; a station
that polls a watched folder emits about 70 signals a second, so after a few minutes the count
reaches zero and the interpreter aborts with "Fatal Python error: bool_dealloc: deallocating True
or False", in whichever thread happens to touch ``True`` next (issue 12: the worker in
`greedy_coreset` and the GUI in the session's poll). pyproject.toml pins a release without the
defect; this check finds it should another PySide6 be installed, logs it, and keeps the station
running by giving ``True`` and ``False`` a reference count that no run can use up (what Python
3.12 does for them anyway: they are immortal there).
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_PROBE_EMITS = 64
# Far more than a station emits in years (70 signals a second is ~2.2e9 a year), far below 2**62.
_SAFETY_REFS = 1 << 48
_checked: bool | None = None  # the answer of the one check a process makes


def emit_drops_true_references(emits: int = _PROBE_EMITS) -> bool:
    """Whether a Python-side ``Signal.emit()`` takes a reference away from ``True`` (PySide6 6.12.0)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal(int)

    probe = _Probe()
    before = sys.getrefcount(True)
    for i in range(emits):
        probe.ping.emit(i)
    lost = before - sys.getrefcount(True)
    probe.deleteLater()
    return lost >= emits // 2


def _add_references(obj: object, count: int) -> None:
    """Raise an object's reference count by ``count`` (CPython: ob_refcnt is the first field)."""
    refcnt = ctypes.c_ssize_t.from_address(id(obj))
    refcnt.value += count


def guard_signal_refcounts() -> bool:
    """Check the installed PySide6 once; with the defect, log it and protect ``True``/``False``.

    Returns True when the defect was found (and the guard applied). Checks once per process.
    """
    global _checked
    if _checked is None:
        _checked = _check_and_guard()
    return _checked


def _check_and_guard() -> bool:
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False  # True and False are immortal from 3.12 on: the lost references do no harm
    if not emit_drops_true_references():
        return False
    import PySide6

    log.error("PySide6 %s drops a reference to True on every Signal.emit() and would crash the "
              "station after a few minutes; install the pinned version (bash installer/dev-setup.sh, "
              "or pip install -e .). Guarding True/False so this run keeps going.", PySide6.__version__)
    _add_references(True, _SAFETY_REFS)
    _add_references(False, _SAFETY_REFS)
    return True
