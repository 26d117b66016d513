"""Inspection latency when other programs keep the CPU busy, per OpenMP wait policy.

A station's PC also runs a camera driver, a second app, a virus scan. torch's OpenMP threads spin
while they wait for work (libgomp's default); when another process holds the cores, the spinning
threads and it take turns and small operations (the heads, the LLM's steps) wait for whole
scheduler slices. Each configuration runs in a fresh process (the policy is read when torch loads
OpenMP), inspecting the shipped samples with the built-in model (verdict and answer, as the app
does), first on an idle CPU, then beside --busy processes that spin for as long as it runs.
Printed: median and 90th percentile latency per image (ms), and each policy's ratio against the
default measured in the same run.

    .venv/bin/python benchmarks/cpu_contention.py [--busy 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples" / "ball_screw_drive" / "inspect"
POLICIES = {"default (spin)": {}, "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            "OMP_WAIT_POLICY=ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"}}

CHILD = """
import json, sys, time
from pathlib import Path
from iadgpt.inspector import Inspector
inspector = Inspector("unified-lite0", device="cpu", class_name="ball_screw_drive")
images = sorted(Path(sys.argv[1]).glob("*.png"))
inspector.inspect(images[0])  # warm-up
times = []
for _ in range(int(sys.argv[2])):
    for image in images:
        t0 = time.perf_counter()
        inspector.inspect(image)
        times.append((time.perf_counter() - t0) * 1000)
print(json.dumps(times))
"""


def _spin() -> None:
    while True:
        pass


def _latencies(policy: dict[str, str], rounds: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | policy | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(SAMPLES), str(rounds)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", type=int, default=2, help="processes spinning beside the inspection")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the 12 samples per configuration")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs; {args.rounds} x {len(list(SAMPLES.glob('*.png')))} inspections per cell "
          "(verdict and answer), ms per image\n")
    print("| CPU | policy | median | p90 | median vs default |")
    print("| --- | --- | ---: | ---: | ---: |")
    for busy in (0, args.busy):
        hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
        for hog in hogs:
            hog.start()
        try:
            base = None
            for name, policy in POLICIES.items():
                times = sorted(_latencies(policy, args.rounds))
                median = statistics.median(times)
                base = base or median
                p90 = times[int(0.9 * (len(times) - 1))]
                where = "idle" if busy == 0 else f"{busy} busy processes"
                print(f"| {where} | {name} | {median:.1f} | {p90:.1f} | {median / base:.2f} |", flush=True)
        finally:
            for hog in hogs:
                hog.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
