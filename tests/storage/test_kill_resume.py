"""`iadgpt inspect --db` killed with SIGKILL at random moments, then rerun until it finishes.

After every kill the history must be intact: the SQLite file passes `PRAGMA integrity_check`, every
result whose JSON line the user saw has its row (with its image and mask files), and no image is
stored twice for the batch. At the end every image of the folder has exactly one row.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from iadgpt.config import load_preset
from iadgpt.tiny import ensure_tiny_llm

IMAGES = 40
RUN_TIMEOUT_S = 120


def _make_folder(folder: Path, count: int) -> dict[str, str]:
    """`count` tiny PNGs with distinct content; returns {sha256: file path}."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    shas = {}
    for i in range(count):
        path = folder / f"part_{i:03d}.png"
        cv2.imwrite(str(path), (rng.random((16, 16, 3)) * 255).astype(np.uint8))
        shas[hashlib.sha256(path.read_bytes()).hexdigest()] = str(path)
    assert len(shas) == count, "test images must differ, or 'stored twice' could not be told apart"
    return shas


class _Batch:
    """One `iadgpt inspect --db --json` process whose stdout lines are collected as they come."""

    def __init__(self, folder: Path, data: Path, out: Path, log: Path) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
                   IADGPT_CACHE=os.environ["IADGPT_CACHE"])
        self.stderr = open(log, "wb")  # a file, not a pipe: a full stderr pipe would stall the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iadgpt_desktop.cli", "inspect", str(folder), "--db", str(data), "--json",
             "--no-answer", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            with self._changed:
                self.lines.append(raw.decode("utf-8"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_lines(self, n: int, timeout: float = RUN_TIMEOUT_S) -> None:
        """Until `n` lines were read or the process ended."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.lines) < n and self.proc.poll() is None:
                assert time.monotonic() < deadline, "the batch printed nothing for too long"  # hang guard
                self._changed.wait(0.05)

    def kill(self) -> bool:
        """SIGKILL; True if the process was still running (a real kill, not a finished run)."""
        running = self.proc.poll() is None
        self.proc.kill()
        self.finish()
        return running

    def finish(self) -> int:
        code = self.proc.wait(timeout=RUN_TIMEOUT_S)
        self._reader.join(timeout=10)  # lines still in the pipe were printed before the kill: seen
        self.proc.stdout.close()
        self.stderr.close()
        return code

    def shown_images(self) -> list[str]:
        return [json.loads(line)["image"] for line in self.lines if line.strip()]


def _stored(data: Path, source: str) -> list[tuple[str, str, str]]:
    """(image_sha256, image_path, mask_path) of every row of the batch; checks the file's integrity."""
    db_file = data / "iadgpt.sqlite3"
    if not db_file.exists():
        return []  # killed before the database was created
    con = sqlite3.connect(db_file)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "inspections" not in tables:
            return []  # killed while the schema was being created
        return con.execute("SELECT image_sha256, image_path, mask_path FROM inspections WHERE source = ?",
                           (source,)).fetchall()
    finally:
        con.close()


def _check_history(data: Path, source: str, shown: set[str], sha_of: dict[str, str]) -> list[str]:
    rows = _stored(data, source)
    counts = Counter(sha for sha, _, _ in rows)
    duplicated = [sha_of[sha] for sha, n in counts.items() if n > 1]
    assert not duplicated, f"inspected twice: {duplicated}"
    lost = sorted(shown - {sha_of[sha] for sha in counts})
    assert not lost, f"results shown to the user but not stored: {lost}"
    for _, image_rel, mask_rel in rows:  # a row never points at a file the kill left unwritten
        assert (data / image_rel).is_file() and (data / mask_rel).is_file()
    return [sha_of[sha] for sha in counts]


def _kill_and_resume(tmp_path: Path, kills: int, max_lines: int, seed: int) -> tuple[int, int]:
    """Kill a batch `kills` times at random moments, then let one run finish; returns (runs, kills)."""
    ensure_tiny_llm(load_preset("tiny-test").llm.tiny)  # built once here, not by every child process
    folder, data, out = tmp_path / "line 1", tmp_path / "station", tmp_path / "maps"
    by_sha = _make_folder(folder, IMAGES)
    sha_of = dict(by_sha)
    source = f"cli:{folder.resolve()}"
    rng = random.Random(seed)
    shown: set[str] = set()
    killed = runs = 0
    while True:
        runs += 1
        stored_before = set(_check_history(data, source, shown, sha_of))
        batch = _Batch(folder, data, out, tmp_path / f"stderr-{runs}.log")
        if killed < kills:
            remaining = IMAGES - len(stored_before)
            if remaining <= kills - killed or rng.random() < 0.2:
                time.sleep(rng.uniform(0.0, 2.0))  # during start-up: opening, migrating, loading the model
            else:
                batch.wait_for_lines(rng.randint(1, max_lines))
                time.sleep(rng.uniform(0.0, 0.05))  # within the next image: inspecting, storing, printing
            killed += batch.kill()
            shown.update(batch.shown_images())
            _check_history(data, source, shown, sha_of)
            continue
        code = batch.finish()
        log = (tmp_path / f"stderr-{runs}.log").read_text(errors="replace")
        assert code == 0, f"the resumed batch failed with exit status {code}:\n{log}"
        printed = set(batch.shown_images())
        shown.update(printed)
        assert not printed & stored_before, "a resumed batch inspected images stored by an earlier run"
        if stored_before:
            assert f"skipped {len(stored_before)} already inspected" in log
        break
    final = _check_history(data, source, shown, sha_of)
    assert sorted(final) == sorted(by_sha.values()), "every image of the folder has exactly one row"
    return runs, killed


def test_batch_survives_three_kills(tmp_path: Path) -> None:
    runs, killed = _kill_and_resume(tmp_path, kills=3, max_lines=12, seed=1)
    assert killed == 3 and runs >= 4


@pytest.mark.slow
def test_batch_survives_twenty_kills(tmp_path: Path) -> None:
    runs, killed = _kill_and_resume(tmp_path, kills=20, max_lines=2, seed=2)
    assert killed == 20 and runs >= 21
