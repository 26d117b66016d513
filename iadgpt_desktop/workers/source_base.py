"""The thread plumbing shared by every source: start/stop, the state and its `on_state` callback.

Counters and states are read from other threads without locks; each is a single attribute written
by one thread, which is safe in CPython.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from iadgpt_desktop.workers.frames import SourceState

log = logging.getLogger(__name__)

_JOIN_TIMEOUT = 5.0  # seconds stop() waits for a thread (a stream's read can block for a while)


TERMINAL_STATES = frozenset({SourceState.FINISHED, SourceState.STOPPED, SourceState.FAILED})

StateCallback = Callable[[SourceState, str], Any]


class ThreadedSource:
    """Thread start/stop, the state and its callback; subclasses implement `_run`."""

    _thread_prefix = "source"
    # How the operator starts this kind of source again, named by the Live view's own button (the app
    # has no "Start" button: opening a source starts it).
    _open_again = "open it again"

    def __init__(self, source_id: str, on_state: StateCallback | None) -> None:
        self.source_id = source_id
        self._on_state = on_state
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = SourceState.CONNECTING
        self.last_error: str | None = None

    # -- public ------------------------------------------------------------------------------

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def running(self) -> bool:
        """True while the source thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the source thread. A source that ended (finished, stopped, failed) may be
        started again; starting a running source raises RuntimeError."""
        with self._lock:
            if self.running:
                raise RuntimeError(f"{self.source_id} is already running; stop it first")
            self._stop_event = threading.Event()
            self.last_error = None
            self._reset()
            self._state = SourceState.CONNECTING
            self._thread = threading.Thread(
                target=self._thread_main, name=f"{self._thread_prefix} {self.source_id}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Stop the thread and wait for it (at most `timeout` seconds). State STOPPED unless the
        source had already finished or failed."""
        self._stop_event.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.1f s; leaving its thread behind", self.source_id, timeout)
        if self._state not in (SourceState.FINISHED, SourceState.FAILED):
            self._set_state(SourceState.STOPPED, f"{self._label()} stopped")

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end on its own; True if it has ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- for subclasses ----------------------------------------------------------------------

    def _reset(self) -> None:
        """Reset per-run counters before a (re)start."""

    def _wake(self) -> None:
        """Wake the thread from any wait so that it sees the stop request."""

    def _label(self) -> str:
        return self.source_id

    def _run(self) -> None:
        raise NotImplementedError

    def _stopping(self) -> bool:
        return self._stop_event.is_set()

    def _set_state(self, state: SourceState, message: str = "", *, announce: bool = False) -> None:
        """Change the state and call on_state; `announce` calls it even if the state is unchanged."""
        with self._lock:
            if state == self._state and not announce:
                return
            if self._state in TERMINAL_STATES:
                # Only start() leaves an ended state: a late transition must not undo stop(),
                # the end of a file or a failure.
                return
            self._state = state
        log.debug("%s: %s (%s)", self.source_id, state.value, message)
        if self._on_state is not None:
            try:
                self._on_state(state, message)
            except Exception:
                log.exception("on_state callback of %s failed", self.source_id)

    def _fail(self, message: str) -> None:
        self.last_error = message
        log.warning("%s", message)
        self._set_state(SourceState.FAILED, message)

    def _thread_main(self) -> None:
        try:
            self._set_state(SourceState.CONNECTING, f"opening {self._label()}", announce=True)
            self._run()
        except Exception as exc:  # a bug or an unexpected OS error must not die silently
            log.exception("%s failed", self.source_id)
            self._fail(f"{self._label()} failed unexpectedly ({type(exc).__name__}: {exc}); "
                       f"{self._open_again} to retry")
        finally:
            if self._state not in TERMINAL_STATES:
                self._set_state(SourceState.STOPPED, f"{self._label()} stopped")
