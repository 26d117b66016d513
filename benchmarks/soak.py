"""Soak benchmark: does resident memory stay flat over thousands of inspections stored like the app does?

Inspects `--n` in-memory images (sizes 64..512 px, a few with a synthetic defect) with the tiny-test
preset on the CPU, switching between zero-shot and few-shot (a fresh memory bank each time), and
stores every result in an SQLite history in a temporary folder the way the desktop worker does
(FileStore.store_image / store_mask, then repository.add_inspection in its own transaction).
Resident memory (VmRSS) is sampled every `--every` inspections after a warm-up of `--warmup`.

Target: RSS growth after warm-up < 50 MB.

    nice -n 10 .venv/bin/python benchmarks/soak.py [--n 10000] [--every 500] [--warmup 500]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from iadgpt.inspector import Inspector  # noqa: E402
from iadgpt_desktop.storage import repository  # noqa: E402
from iadgpt_desktop.storage.db import Database  # noqa: E402
from iadgpt_desktop.storage.records import InspectionFilter, InspectionRecord  # noqa: E402

TARGET_GROWTH_MB = 50.0
FEW_SHOT_SPAN = 250  # inspections per mode before switching between zero-shot and few-shot
REFERENCES = 3  # good images per few-shot memory bank


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; psutil elsewhere if it is installed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        sys.exit("cannot read resident memory: no /proc/self/status and psutil is not installed")
    return psutil.Process().memory_info().rss / (1024 * 1024)


def make_image(rng: np.random.Generator, defect: bool) -> np.ndarray:
    """A smooth textured part of random size (H, W, 3) uint8, optionally with a dark scratch."""
    h, w = (int(v) for v in rng.integers(64, 513, size=2))
    coarse = rng.random((8, 8, 3)).astype(np.float32)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)  # (H, W, 3)
    image = (np.clip(image, 0.0, 1.0) * 160 + 48).astype(np.uint8)
    if defect:
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        cv2.line(image, (x, y), (min(w - 1, x + w // 6), min(h - 1, y + h // 8)), (10, 10, 10), 3)
    return image


def store(db: Database, image: np.ndarray, result) -> None:
    image_rel, sha = db.files.store_image(image)
    mask_rel = db.files.store_mask(result.anomaly_map)
    record = InspectionRecord.from_result(result, source="soak", image_path=image_rel, image_sha256=sha,
                                          mask_path=mask_rel)
    with db.Session.begin() as s:
        repository.add_inspection(s, record)


def soak(n: int, every: int, warmup: int, preset: str, seed: int) -> bool:
    rng = np.random.default_rng(seed)
    inspector = Inspector(preset, device="cpu", class_name="generic")
    rows: list[tuple[int, float, float | None, float]] = []
    baseline: float | None = None
    with tempfile.TemporaryDirectory(prefix="iadgpt-soak-") as tmp, Database.open(Path(tmp)) as db:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; preset {preset}; "
              f"{n} inspections; history in {tmp}; RSS at start {rss_mb():.1f} MB\n", flush=True)
        print("| inspections | RSS MB | growth since warm-up MB | inspections/s |")
        print("|---:|---:|---:|---:|", flush=True)
        interval_start = time.perf_counter()
        interval_count = 0
        for i in range(1, n + 1):
            if (i - 1) % FEW_SHOT_SPAN == 0:
                if ((i - 1) // FEW_SHOT_SPAN) % 2 == 1:
                    inspector.build_memory_bank([make_image(rng, False) for _ in range(REFERENCES)])
                else:
                    inspector.set_memory_bank(None)
            image = make_image(rng, defect=rng.random() < 0.3)
            result = inspector.inspect(image, generate_answer=False)
            store(db, image, result)
            interval_count += 1
            if i == warmup or (i > warmup and (i - warmup) % every == 0) or i == n:
                gc.collect()
                now = time.perf_counter()
                rate = interval_count / (now - interval_start)
                rss = rss_mb()
                if i == warmup:
                    baseline = rss
                growth = None if baseline is None else rss - baseline
                rows.append((i, rss, growth, rate))
                growth_text = "warm-up" if i == warmup else ("-" if growth is None else f"{growth:+.1f}")
                print(f"| {i} | {rss:.1f} | {growth_text} | {rate:.1f} |", flush=True)
                interval_start, interval_count = time.perf_counter(), 0
        with db.Session() as s:
            stored = repository.count_inspections(s, InspectionFilter())
    if stored != n:
        print(f"\nFAIL: {stored} rows stored for {n} inspections")
        return False
    if baseline is None:
        print(f"\nno verdict: --n {n} does not pass the warm-up of {warmup} inspections")
        return False
    final_growth = rows[-1][1] - baseline
    peak_growth = max(r[2] for r in rows if r[2] is not None)
    ok = peak_growth < TARGET_GROWTH_MB
    print(f"\nRSS growth after warm-up: final {final_growth:+.1f} MB, peak {peak_growth:+.1f} MB; "
          f"target < {TARGET_GROWTH_MB:.0f} MB: {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="number of inspections (default 10000)")
    parser.add_argument("--every", type=int, default=500, help="sample RSS every this many inspections")
    parser.add_argument("--warmup", type=int, default=500, help="inspections before the baseline sample")
    parser.add_argument("--preset", default="tiny-test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.exit(0 if soak(args.n, args.every, args.warmup, args.preset, args.seed) else 1)


if __name__ == "__main__":
    main()
