"""GPU check: the worker's inspection path and a training step, in fp16 and bf16, per preset shape.

One command, no downloads, a few minutes on one GPU. The towers and the LLM are random, built in the
shapes of the real presets (open_clip ViT-L-14 + a Qwen2.5-1.5B-shaped LLM for `workstation`; ViT-H-14
+ a Llama-7B-shaped LLM (Vicuna v1.5) for `paper`, when the GPU has the memory), so latency and peak
GPU memory are those of the real weights (the numbers do not depend on the values). For each shape
and precision it prints the median of several inspections (verdict only, and with a 16-token answer)
and of two training steps (stage 1), with the peak GPU memory of each.

    .venv/bin/python benchmarks/gpu_check.py              # on a CUDA machine
    .venv/bin/python benchmarks/gpu_check.py --smoke      # tiny shapes on the CPU (checks the script)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import iadgpt.builder  # noqa: E402
from iadgpt.config import load_preset  # noqa: E402
from iadgpt.inspector import Inspector  # noqa: E402
from iadgpt.llm import LanguageModel  # noqa: E402
from iadgpt.tiny import ensure_tiny_llm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples" / "ball_screw_drive"

# The LLMs' shapes, from their config.json (Qwen/Qwen2.5-1.5B-Instruct, lmsys/vicuna-7b-v1.5).
LLM_SHAPES = {
    "qwen2.5-1.5b": {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True, "max_position_embeddings": 32768},
    "vicuna-7b": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
                  "tie_word_embeddings": False, "max_position_embeddings": 4096},
    "tiny": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1024,
             "tie_word_embeddings": True, "max_position_embeddings": 1024},
}
# (preset whose towers and heads are used, LLM shape, GPU memory it needs at least, in GiB)
SHAPES = {"workstation": ("workstation", "qwen2.5-1.5b", 8), "paper": ("paper", "vicuna-7b", 24),
          "tiny-test": ("tiny-test", "tiny", 0)}


def random_llm(shape: str, device: torch.device, dtype: torch.dtype) -> LanguageModel:
    """A random causal LM of `shape`, built on the device (no weights file), with the tiny LLM's tokenizer
    (its ids all lie inside every shape's vocabulary)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = dict(LLM_SHAPES[shape])
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_llm(load_preset("tiny-test").llm.tiny),
                                              local_files_only=True)
    return LanguageModel(model, tokenizer, f"random-{shape}")


def random_preset(name: str, folder: Path) -> Path:
    """The preset's JSON with random towers (no clip.weights) and a placeholder LLM path, as a file."""
    data = json.loads((ROOT / "model" / "iadgpt" / "configs" / f"{name}.json").read_text(encoding="utf-8"))
    data["name"] = f"{name}-random"
    data["clip"].pop("weights", None)
    data["llm"] = {"path": "random-llm", "max_new_tokens": 16}
    path = folder / f"{name}-random.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


class Meter:
    """Median wall time of a callable and the peak GPU memory while it ran."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self, fn, runs: int) -> tuple[float, float]:
        fn()  # warm-up: kernels, caches
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1000)
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else float("nan")
        return statistics.median(times), peak


def _dataset(folder: Path) -> Path:
    good = folder / "data" / "ball_screw_drive" / "train" / "good"
    good.mkdir(parents=True)
    for p in sorted((SAMPLES / "reference").glob("*.png"))[:4]:
        shutil.copy(p, good / p.name)
    return folder / "data"


def check(shape: str, precision: str, device: torch.device, runs: int, work: Path) -> list[tuple]:
    from iadgpt.training.config import TrainConfig
    from iadgpt.training.trainer import Trainer

    preset_name, llm_shape, _ = SHAPES[shape]
    # The one hook: the preset's LLM is a random model of the real shape instead of a folder on disk.
    iadgpt.builder.load_llm = lambda _preset, dev, dt: random_llm(llm_shape, torch.device(dev), dt)
    preset = random_preset(preset_name, work)
    image = sorted((SAMPLES / "inspect").glob("pitting_*.png"))[0]
    meter = Meter(device)
    rows = []
    inspector = Inspector(str(preset), device=str(device), precision=precision)
    ms, peak = meter(lambda: inspector.inspect(image, generate_answer=False), runs)
    rows.append((shape, precision, "inspect (verdict)", ms, peak))
    ms, peak = meter(lambda: inspector.inspect(image, generate_answer=True), max(1, runs // 2))
    rows.append((shape, precision, "inspect + 16-token answer", ms, peak))
    inspector = None  # frees the model before the training row
    _free(device)
    cfg = TrainConfig(preset=str(preset), data=_dataset(work / f"{shape}-{precision}"), stage=1, batch_size=2,
                      max_steps=1, out_dir=work / f"run-{shape}-{precision}", device=device.type,
                      precision=precision, progress=False)
    trainer = Trainer(cfg)
    parameters = trainer.set_stage(1)
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    batch = trainer.batch([0, 1])

    def step() -> None:
        with trainer.accelerator.autocast():
            loss = sum(trainer.forward(batch).values())
        trainer.accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    ms, peak = meter(step, 2)
    rows.append((shape, precision, "training step (stage 1, batch 2)", ms, peak))
    trainer = optimizer = None
    _free(device)
    return rows


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU in fp32 and bf16 (no GPU)")
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), help="default: workstation, paper")
    parser.add_argument("--runs", type=int, default=5, help="timed inspections per row (median)")
    args = parser.parse_args(argv)
    if args.smoke:
        device, shapes, precisions = torch.device("cpu"), args.shapes or ["tiny-test"], ["fp32", "bf16"]
    else:
        if not torch.cuda.is_available():
            print("gpu_check needs a CUDA GPU and this machine has none (torch.cuda.is_available() is False); "
                  "run it on the GPU workstation, or with --smoke to check the script on the CPU", file=sys.stderr)
            return 2
        device, shapes, precisions = torch.device("cuda"), args.shapes or ["workstation", "paper"], ["fp16", "bf16"]
        if not torch.cuda.is_bf16_supported():
            precisions = ["fp16"]
            print(f"note: {torch.cuda.get_device_name()} has no bf16; fp16 only", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="iadgpt-gpu-check-") as tmp:
        for shape in shapes:
            need = SHAPES[shape][2]
            if device.type == "cuda" and torch.cuda.mem_get_info()[1] / 2**30 < need:
                print(f"skipping {shape}: needs about {need} GiB of GPU memory", file=sys.stderr)
                continue
            for precision in precisions:
                rows += check(shape, precision, device, args.runs, Path(tmp))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}, median of {args.runs} runs (training: of 2 steps)\n")
    print(f"| {'shape':12s} | {'precision':9s} | {'what':34s} | {'median ms':>10s} | {'peak GPU GiB':>12s} |")
    print(f"|{'-' * 14}|{'-' * 11}|{'-' * 36}|{'-' * 12}|{'-' * 14}|")
    for shape, precision, what, ms, peak in rows:
        print(f"| {shape:12s} | {precision:9s} | {what:34s} | {ms:10.1f} | {peak:12.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
