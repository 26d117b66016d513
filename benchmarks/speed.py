"""Speed of the pieces whose tests only check results: memory-bank coreset, pixel metrics, history pages.

Timings belong here, not in tests (a test that asserts a duration fails on a busy or slow machine).

    .venv/bin/python benchmarks/speed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from iadgpt.memory_bank import MemoryBank
from iadgpt.metrics import aupro, pixel_auroc


def _best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def coreset(runs: int) -> float:
    gen = torch.Generator().manual_seed(0)
    layers = [torch.randn(20, 1000, 1024, generator=gen), torch.randn(20, 1000, 768, generator=gen)]

    def once() -> None:
        bank = MemoryBank((1024, 768))
        bank.add(layers)
        bank.subsample(2000, seed=0)
    return _best(once, runs)


def metrics(runs: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    masks = [np.zeros((256, 256), bool) for _ in range(100)]
    for m in masks:
        y, x = rng.integers(20, 200, 2)
        m[y:y + 30, x:x + 30] = True
    maps = [(rng.random((256, 256)) + 0.5 * m).astype(np.float32) for m in masks]
    return _best(lambda: pixel_auroc(masks, maps), runs), _best(lambda: aupro(masks, maps), runs)


def history_pages(runs: int) -> dict[str, float]:
    from iadgpt_desktop.storage import Database, InspectionFilter
    from tests.storage.test_performance import fill, timed_page  # the test's own data and queries

    with tempfile.TemporaryDirectory() as tmp, Database.open(Path(tmp)) as db:
        fill(db, 10_000)
        out = {}
        for name, flt, kw in (("verdict, by score", InspectionFilter(verdict="defective"), {"order_by": "score"}),
                              ("all, newest first, page 50", InspectionFilter(), {"offset": 5000})):
            out[name] = statistics.median(timed_page(db, flt, **kw)[0] for _ in range(runs))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = [("memory bank 20k -> 2k coreset (target < 2 s)", coreset(args.runs))]
    pix, pro = metrics(args.runs)
    rows += [("pixel_auroc, 100 x 256x256 (target < 3 s)", pix), ("aupro, 100 x 256x256 (target < 3 s)", pro)]
    rows += [(f"history page on 10k rows: {k} (target < 0.5 s)", v) for k, v in history_pages(args.runs).items()]
    width = max(len(name) for name, _ in rows)
    print(f"{'what':{width}s}  seconds")
    for name, seconds in rows:
        print(f"{name:{width}s}  {seconds:7.3f}")


if __name__ == "__main__":
    main()
