"""The built-in model's training recipe as one command: `python -m iadgpt.training.recipe --data DIR --out DIR`.

The shipped `unified-lite0` weights are this recipe's, run once from scratch: steps 1-6 with the code
of commit cbac4c8 (whose size answer began "It is at the ..."), steps 7-9 with later code
(MODEL_CARD.md says which). Run today, every step uses today's code, so the weights are not the same bit for bit.
The steps, with their epochs and seeds:

1. stage 0 (the LLM alone on the conversation corpus), kept apart because step 6 continues from its
   checkpoint (the stage-0 slots, which final weights leave out);
2. stages 1-3 from it;
3. the decoder alone for 120 more steps (stage 2 had barely learned to segment; stage 3 never
   changes the decoder, so this continues from the end of step 2);
4. stage 3 three times (8, 12 and 20 epochs; the last with other products' textures as bank maps);
5. stage 3 again (24 epochs);
6. stage 0 continued with step 1's slots (100 and 200 epochs), then stage 3 once more (24 epochs);
7. stage 0 continued from there (150 epochs), then 100 epochs in which half of the conversations with
   follow-up questions have image slots that say the other state than their verdict (`--flip-slots`,
   with every answer of the conversation labelled, `--lm-loss turns`), then stage 3 twice (24 epochs
   each, the second at half the learning rate);
8. stage 3 with the LLM trained too (`--tune-llm`, 12 epochs): its layers at a fifth of the heads' rate,
   its word embeddings and output head kept, on follow-up answers with real image tokens, each step
   beside a batch of the stage-0 corpus read through step 7's slots (`--replay`);
9. stage 0 from there with new slots, the answer tokens copied from the evidence line (place, size,
   share, count, types) and the verdict word weighted (`--copy-weight`, 5 for 60 epochs, then 20 for
   90), then step 8 again from its checkpoint with `--copy-weight 20` (decision 0013).

(The model card numbers the same work as its steps; it says which code each step ran with.)

Each step runs `iadgpt train` in its own process (its log goes to OUT/<step>.log) and the minutes
each took are printed as a table. `--dry-run` prints the commands without running them.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PRESET = "unified-lite0"
PRODUCT = "ball_screw_drive"
SYNTHESIS = ("--synthesis", "all", "--patch-frac", "0.03", "0.2")


@dataclass(frozen=True)
class Step:
    name: str  # the step's run folder under OUT
    args: tuple[str, ...]  # `iadgpt train` arguments besides preset, data, product and out
    init: str | None = None  # the weights folder it starts from, relative to OUT
    slots_from: str | None = None  # copy the stage-0 slots of this checkpoint (relative to OUT) into init


def steps(textures: Path) -> list[Step]:
    """The recipe, in order; `textures` is a folder from `python -m iadgpt.data.textures`."""
    stage0 = ("--stage", "0", "--text-batch-size", "16")

    def stage3(lr: str = "2e-3") -> tuple[str, ...]:
        return ("--stage", "3", "--lr", lr, "--batch-size", "16", *SYNTHESIS, "--bank-maps")

    tex = ("--bank-only", str(textures))
    turns = ("--flip-slots", "0.5", "--lm-loss", "turns")
    tuned = (*stage3("5e-4"), *tex, "--tune-llm", "--llm-lr", "1e-4", "--replay", "1.0", "--follow-ups", "0.5",
             *turns, "--text-batch-size", "16", "--epochs", "12")
    return [
        Step("s0", (*stage0, "--stage0-epochs", "188", "--stage0-lr", "1e-3", "--seed", "0",
                    "--checkpoint-every", "25")),
        Step("s123", ("--stage", "all", "--epochs", "8", "--lr", "2e-3", "--batch-size", "16", "--seed", "0",
                      *SYNTHESIS, "--bank-maps", "--checkpoint-every", "25"), init="s0/weights"),
        Step("decoder", ("--stage", "2", "--decoder-only", "--epochs", "15", "--lr", "3e-3", "--batch-size", "16",
                         "--seed", "1", *SYNTHESIS, "--anomaly-ratio", "0.8"), init="s123/weights"),
        Step("s3a", (*stage3(), "--epochs", "8", "--seed", "2"), init="decoder/weights"),
        Step("s3b", (*stage3(), "--epochs", "12", "--seed", "3"), init="s3a/weights"),
        Step("s3c", (*stage3(), *tex, "--epochs", "20", "--seed", "4"), init="s3b/weights"),
        Step("s3d", (*stage3(), *tex, "--epochs", "24", "--seed", "5"), init="s3c/weights"),
        Step("s0b", (*stage0, "--stage0-epochs", "100", "--stage0-lr", "5e-4", "--seed", "6"), init="s3d/weights",
             slots_from="s0/checkpoints/last"),
        Step("s0c", (*stage0, "--stage0-epochs", "200", "--stage0-lr", "5e-4", "--seed", "7"),
             init="s0b/checkpoints/last"),
        Step("s3e", (*stage3(), *tex, "--epochs", "24", "--seed", "8"), init="s0c/weights"),
        Step("s0d", (*stage0, "--stage0-epochs", "150", "--stage0-lr", "5e-4", "--seed", "17",
                     "--checkpoint-every", "25"), init="s3e/weights", slots_from="s0c/checkpoints/last"),
        Step("s0e", (*stage0, "--stage0-epochs", "100", "--stage0-lr", "5e-4", "--seed", "27", "--flip-slots", "0.5",
                     "--lm-loss", "turns", "--checkpoint-every", "25"), init="s0d/checkpoints/last"),
        Step("s3f", (*stage3(), *tex, "--epochs", "24", "--seed", "18"), init="s0e/weights"),
        Step("s3g", (*stage3("1e-3"), *tex, "--epochs", "24", "--seed", "19"), init="s3f/weights"),
        Step("s3h", (*tuned, "--seed", "29"), init="s3g/weights", slots_from="s0e/checkpoints/last"),
        Step("s0f", (*stage0, *turns, "--stage0-epochs", "60", "--stage0-lr", "5e-4", "--seed", "37",
                     "--copy-weight", "5", "--checkpoint-every", "20"), init="s3h/weights"),
        Step("s0g", (*stage0, *turns, "--stage0-epochs", "90", "--stage0-lr", "5e-4", "--seed", "38",
                     "--copy-weight", "20", "--checkpoint-every", "30"), init="s0f/checkpoints/last"),
        Step("final", (*tuned, "--seed", "39", "--copy-weight", "20"), init="s0g/checkpoints/last"),
    ]


def command(step: Step, data: Path, out: Path) -> list[str]:
    init = [] if step.init is None else ["--init", str(out / (f"{step.name}-init" if step.slots_from else step.init))]
    return [sys.executable, "-m", "iadgpt.cli", "train", "--preset", PRESET, "--data", str(data), "--product", PRODUCT,
            *init, *step.args, "--no-progress", "--out", str(out / step.name)]


def with_slots(weights: Path, checkpoint: Path, target: Path) -> Path:
    """`weights` with the stage-0 slots (pretext part) of `checkpoint`: where stage 0 continues from."""
    from iadgpt.training.pretext import PRETEXT_PART
    from iadgpt.weights import load_trainable, save_trainable

    manifest, parts = load_trainable(weights, expect_preset=PRESET)
    _, saved = load_trainable(checkpoint, expect_preset=PRESET)
    if PRETEXT_PART not in saved:
        raise SystemExit(f"{checkpoint} holds no stage-0 slots ({PRETEXT_PART}.safetensors)")
    return save_trainable(target, {**parts, PRETEXT_PART: saved[PRETEXT_PART]}, preset=PRESET,
                          base_models=manifest["base_models"], extra=manifest.get("extra"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="bsdata in MVTec-AD layout (train/good is read)")
    ap.add_argument("--out", type=Path, required=True, help="folder of the steps' runs; OUT/final/weights at the end")
    ap.add_argument("--textures", type=Path, help="texture classes (default: OUT/textures, made first)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    textures = args.textures or args.out / "textures"
    plan = steps(textures)
    if args.dry_run:
        if args.textures is None:
            print(shlex.join([sys.executable, "-m", "iadgpt.data.textures", str(textures)]))
        for step in plan:
            if step.slots_from:
                print(f"# {step.init} + the stage-0 slots of {step.slots_from} -> {step.name}-init")
            print(shlex.join(command(step, args.data, args.out)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.textures is None:
        subprocess.run([sys.executable, "-m", "iadgpt.data.textures", str(textures)], check=True)
    minutes: list[tuple[str, float]] = []
    for step in plan:
        started = time.perf_counter()
        if step.slots_from:
            with_slots(args.out / step.init, args.out / step.slots_from, args.out / f"{step.name}-init")
        with open(args.out / f"{step.name}.log", "w", encoding="utf-8") as log:
            done = subprocess.run(command(step, args.data, args.out), stdout=log, stderr=subprocess.STDOUT)
        minutes.append((step.name, (time.perf_counter() - started) / 60))
        print(f"{step.name}: {minutes[-1][1]:.1f} min", flush=True)
        if done.returncode:
            print(f"step {step.name} failed (exit {done.returncode}); its log: {args.out / f'{step.name}.log'}",
                  file=sys.stderr)
            return done.returncode
    print("\n| step | minutes |\n| --- | ---: |")
    for name, m in minutes:
        print(f"| {name} | {m:.1f} |")
    print(f"| all | {sum(m for _, m in minutes):.1f} |\nweights: {args.out / 'final' / 'weights'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
