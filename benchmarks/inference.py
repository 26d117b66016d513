"""Inference benchmark: median time of each stage of an inspection, on the CPU (or --device).

For each preset, the whole inspection without LLM generation is compared with the image encoder
alone, measured in the same run on the same input (the encoder is the floor; target ratio <= 1.15).
The LLM verdict (one prefill of the prompt, no generation) is reported beside it. Few-shot mode
builds a memory bank of --bank-size references (timed: target <= 10 s for 16) from the shipped
samples' good images (or ../shared/datasets/bsdata train/good when present). Peak RSS of the process
after each preset is printed too.

    .venv/bin/python benchmarks/inference.py [--presets unified-lite0 tiny-test bench-b16] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# iadgpt before torch, as the app and the CLI import them: it sets torch's OpenMP wait policy
# (decision 0011), which libgomp reads once, when torch loads it.
import iadgpt  # noqa: E402, F401, I001
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from iadgpt.inspector import Inspector  # noqa: E402

STAGES = ("load", "encoder", "anomaly_map", "heads", "postprocess", "llm_verdict")
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples" / "ball_screw_drive"
BSDATA_GOOD = ROOT.parent / "shared" / "datasets" / "bsdata" / "train" / "good"


def _references(n: int) -> list[Path]:
    """n good images of one product: bsdata's train/good when present, else the shipped samples, repeated."""
    pool = sorted(BSDATA_GOOD.glob("*.png")) or sorted(SAMPLES.glob("*/good_*.png")) + sorted(
        (SAMPLES / "reference").glob("*.png"))
    return [pool[i % len(pool)] for i in range(n)]


def _image(seed: int, size=(512, 512)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gray = cv2.GaussianBlur((rng.random(size) * 255).astype(np.uint8), (0, 0), 3)
    return np.dstack([gray, gray, gray])


def bench(preset: str, mode: str, runs: int, device: str, bank_size: int) -> dict[str, float]:
    inspector = Inspector(preset, device=device, class_name="ball_screw_drive")
    bank_s = float("nan")
    if mode == "few-shot":
        t0 = time.perf_counter()
        inspector.build_memory_bank(_references(bank_size))
        bank_s = time.perf_counter() - t0
    sample = next(iter(sorted((SAMPLES / "inspect").glob("pitting_*.png"))), None)
    image = cv2.cvtColor(cv2.imread(str(sample)), cv2.COLOR_BGR2RGB) if sample else _image(99)
    x = inspector._preprocess(image)
    for _ in range(3):  # warm-up
        inspector.inspect(image, generate_answer=False)
        inspector.model.towers.encode_image(x)
    small = (inspector._small_heads, inspector.llm.small)
    tower = inspector.model.towers
    layout = getattr(tower, "memory_format", None)  # the EfficientNet tower's (decision 0015)
    encoder_alone: list[float] = []
    contiguous_encoder: list[float] = []
    contiguous: list[float] = []
    stage_runs: dict[str, list[float]] = {s: [] for s in STAGES}
    without_llm, with_verdict, baseline = [], [], []
    # Interleaved, so that a slower spell of the machine slows each column alike.
    for _ in range(runs):
        t0 = time.perf_counter()
        inspector.model.towers.encode_image(x)
        encoder_alone.append((time.perf_counter() - t0) * 1000)
        result = inspector.inspect(image, generate_answer=False)
        for s in STAGES:
            stage_runs[s].append(result.timings_ms[s])
        vision = sum(result.timings_ms[s] for s in STAGES if s != "llm_verdict")
        without_llm.append(vision)
        with_verdict.append(vision + result.timings_ms["llm_verdict"])
        # the same inspection with every part on all threads (before decision 0012)
        inspector._small_heads = inspector.llm.small = False
        baseline.append(sum(inspector.inspect(image, generate_answer=False).timings_ms[s] for s in STAGES))
        inspector._small_heads, inspector.llm.small = small
        if layout is not None:  # the same inspection with the tower in the contiguous layout (before 0015)
            tower.use_memory_format(torch.contiguous_format)
            t0 = time.perf_counter()
            tower.encode_image(x)
            contiguous_encoder.append((time.perf_counter() - t0) * 1000)
            contiguous.append(sum(inspector.inspect(image, generate_answer=False).timings_ms[s] for s in STAGES))
            tower.use_memory_format(layout)
    row = {s: statistics.median(v) for s, v in stage_runs.items()}
    row["encoder_alone"] = statistics.median(encoder_alone)
    row["inspection"] = statistics.median(without_llm)
    row["ratio"] = row["inspection"] / row["encoder_alone"]
    row["with_verdict"] = statistics.median(with_verdict)
    row["ratio_with_verdict"] = row["with_verdict"] / row["encoder_alone"]
    row["all_threads"] = statistics.median(baseline)
    row["ratio_all_threads"] = row["all_threads"] / row["encoder_alone"]
    nan = float("nan")
    row["contiguous_encoder"] = statistics.median(contiguous_encoder) if contiguous_encoder else nan
    row["contiguous"] = statistics.median(contiguous) if contiguous else nan
    row["speedup"] = row["contiguous"] / row["with_verdict"] if contiguous else nan
    row["bank_build_s"] = bank_s
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["unified-lite0", "tiny-test", "bench-b16"])
    parser.add_argument("--bank-size", type=int, default=16, help="references in the few-shot memory bank")
    parser.add_argument("--modes", nargs="+", default=["zero-shot", "few-shot"])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"a shipped pitting sample, median of {args.runs} runs (ms)\n")
    cols = ("encoder_alone",) + STAGES + ("inspection", "ratio", "with_verdict", "ratio_with_verdict",
                                          "all_threads", "ratio_all_threads", "contiguous_encoder", "contiguous",
                                          "speedup", "bank_build_s", "peak_rss_mb")
    print("| preset | mode | " + " | ".join(cols) + " |")
    print("|---|---|" + "---:|" * len(cols))
    for preset in args.presets:
        for mode in args.modes:
            row = bench(preset, mode, args.runs, args.device, args.bank_size)
            cells = [f"{row[c]:.2f}" if not c.startswith("ratio") else f"**{row[c]:.3f}**" for c in cols]
            print(f"| {preset} | {mode} | " + " | ".join(cells) + " |", flush=True)
    print("\ninspection = load + encoder + anomaly_map + heads + postprocess (no LLM); "
          "ratio = inspection / encoder_alone (target <= 1.15); "
          "with_verdict adds the LLM's one-pass Yes/No read-out (the whole inspection the app shows before "
          "the answer streams; target <= 150 ms for unified-lite0); all_threads: the same with verdict, every part "
          "on all CPU threads (before decision 0012: small models on one thread), interleaved with the "
          "others in the same run; contiguous_encoder, contiguous: the encoder alone and the inspection with "
          "verdict with the EfficientNet tower in the contiguous layout (before decision 0015: channels-last), "
          "speedup = contiguous / with_verdict; bank_build_s: few-shot memory bank of "
          f"{args.bank_size} references (target <= 10 s); peak_rss_mb: the process so far.")


if __name__ == "__main__":
    main()
