"""Training benchmark: images/s per stage and peak memory (tiny-test and unified-lite0 presets), on the CPU.

    .venv/bin/python benchmarks/train.py [--data DIR] [--steps 6] [--presets tiny-test unified-lite0] [--run RUN_DIR]

Each preset runs in its own process (so ru_maxrss is that preset's peak): `iadgpt train`'s Trainer with
--stage all and --max-steps N per stage (stage 0 included for presets without pretrained towers), on the
dataset's train/good images. images/s is measured around the optimiser steps only (model building,
checkpoints and the first decoding of each image are not counted, beyond the first batch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def child(preset: str, data: Path, steps: int, batch_size: int) -> dict:
    import torch

    from iadgpt.training.trainer import TrainConfig, Trainer

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(preset=preset, data=data, out_dir=Path(out), stage="all", max_steps=steps,
                          batch_size=batch_size, text_batch_size=8, progress=False)
        trainer = Trainer(cfg)
        trainer.run()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"preset": preset, "threads": torch.get_num_threads(), "peak_mib": round(peak_kb / 1024, 1),
            "stages": {str(r.stage): {"steps": r.steps, "images": r.images, "seconds": round(r.seconds, 2),
                                      "images_per_s": round(r.images_per_s, 2)} for r in trainer.results}}


def run_times(run: Path) -> int:
    """Print each stage's wall time and the total from a run's train.log (timestamps of its stage lines)."""
    from datetime import datetime

    marks: list[tuple[str, datetime]] = []
    for line in (run / "train.log").read_text(encoding="utf-8").splitlines():
        stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        text = line[24:]
        if ": stage " in text and ": training " in text:
            marks.append((text.split(": stage ")[1].split(":")[0], stamp))
        elif "training done" in text:
            marks.append(("done", stamp))
    if not marks or marks[-1][0] != "done":
        print(f"{run}: the run has not finished")
        return 1
    print("stage  minutes")
    for (name, start), (_, end) in zip(marks, marks[1:], strict=False):
        print(f"{name:>5}  {(end - start).total_seconds() / 60:7.1f}")
    print(f"total  {(marks[-1][1] - marks[0][1]).total_seconds() / 60:7.1f}  (from stage 0's start; set-up before it "
          f"is not logged)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "bsdata")
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per stage")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--presets", nargs="+", default=["tiny-test", "unified-lite0"])
    parser.add_argument("--run", type=Path, help="instead: wall time per stage of a finished `iadgpt train` run "
                                                  "(its run folder's train.log)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return run_times(args.run)
    if args.child:
        print(json.dumps(child(args.child, args.data, args.steps, args.batch_size)))
        return 0
    rows = []
    for preset in args.presets:
        cmd = [sys.executable, __file__, "--child", preset, "--data", str(args.data), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    stages = sorted({s for r in rows for s in r["stages"]})
    header = ["preset", "threads"] + [f"stage {s} img/s" for s in stages] + ["peak RSS MiB"]
    table = [header] + [[r["preset"], str(r["threads"])]
                        + [str(r["stages"].get(s, {}).get("images_per_s", "-")) for s in stages]
                        + [str(r["peak_mib"])] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for i, line in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\n{args.steps} steps per stage, batch {args.batch_size}, data {args.data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
