"""`iadgpt train`: the argparse pieces, to be wired into iadgpt.cli with `add_train_parser(sub)`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iadgpt.data.synthesis import METHODS


def _stage(value: str) -> int | str:
    if value == "all":
        return value
    if value in ("0", "1", "2", "3"):
        return int(value)
    raise argparse.ArgumentTypeError(f"stage must be 0, 1, 2, 3 or all, not {value!r}")


def _stage_epochs(value: str) -> tuple[int, int]:
    stage, _, epochs = value.partition("=")
    if stage not in ("0", "1", "2", "3") or not epochs.isdigit() or int(epochs) < 1:
        raise argparse.ArgumentTypeError(f"stage epochs must read STAGE=EPOCHS, e.g. 2=23, not {value!r}")
    return int(stage), int(epochs)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `train` sub-command to an argparse sub-parsers object; returns its parser."""
    from iadgpt.cli import add_precision_arg, add_weights_args

    p = subparsers.add_parser("train", help="train the decoder/TGE/MMF heads on normal images (three stages)")
    p.add_argument("--preset", default="tiny-test", help="built-in preset name or preset .json")
    p.add_argument("--data", required=True, type=Path,
                   help="dataset in MVTec-AD layout (a root of class folders or one class folder)")
    p.add_argument("--classes", nargs="+", help="train on these classes only (default: all)")
    p.add_argument("--product", help="train a one-class dataset as this product class, e.g. bsdata as "
                                     "ball_screw_drive (its prompt bank and name; recorded in the weights)")
    p.add_argument("--stage", type=_stage, default="all",
                   help="0, 1, 2, 3 or all (default: all; all includes stage 0, training the image tower and "
                        "LLM from scratch, for presets without pretrained towers such as demo)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per stage (default: 1)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--stage0-epochs", type=int, help="epochs of stage 0 (default: --epochs)")
    p.add_argument("--stage-epochs", type=_stage_epochs, nargs="+", metavar="S=N",
                   help="epochs of single stages instead, e.g. 2=23 3=24 (one command for every stage)")
    p.add_argument("--stage0-lr", type=float, default=1e-3, help="learning rate of stage 0 (default: 1e-3)")
    p.add_argument("--text-batch-size", type=int, default=16, help="conversations per stage-0 step")
    p.add_argument("--lm-loss", choices=["answers", "turns", "all"], default="answers",
                   help="stage-0 LM loss on the last answer's tokens (default), on every answer of the "
                        "conversation (turns), or on every text token")
    p.add_argument("--flip-slots", type=float, default=0.0, metavar="P",
                   help="share of stage-0 conversations with follow-ups whose image slots say the other state "
                        "than the verdict, so follow-up answers follow the verdict in the history (default 0)")
    p.add_argument("--copy-weight", type=float, default=1.0, metavar="W",
                   help="the answer tokens copied from the evidence line (place, share of the image, region count, "
                        "type names) count W times in the LLM's loss, stages 0 and 3 (default 1: a plain mean)")
    p.add_argument("--init", dest="init_weights", type=Path,
                   help="start from this weights folder (e.g. towers and LLM of an earlier stage-0 run)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthesis", choices=list(METHODS), default="nsa",
                   help="anomaly synthesis: nsa (the paper's), cutpaste, draw (dark or bright strokes, spots "
                        "and stains), mix (nsa or cutpaste at random), all (nsa, cutpaste or draw)")
    p.add_argument("--patch-frac", type=float, nargs=2, default=(0.05, 0.3), metavar=("MIN", "MAX"),
                   help="synthetic patch side as a fraction of the image side (default 0.05 0.3; "
                        "smaller for small defects)")
    p.add_argument("--anomaly-ratio", type=float, default=0.5, help="share of items given a synthetic anomaly")
    p.add_argument("--follow-ups", type=float, default=0.0, metavar="SHARE",
                   help="stages 1-3: this share of the items (0-1, default 0) asks one to three follow-up questions "
                        "(where, type, size, ship, ...) after the first answer and trains on the last answer, so "
                        "the image tokens TGE and MMF write keep the chat consistent with the evidence line")
    p.add_argument("--tune-llm", action="store_true",
                   help="stage 3 trains the LLM too (with TGE and MMF), so it answers with real image tokens, "
                        "which stage 0 never showed it; use with --follow-ups")
    p.add_argument("--llm-lr", type=float, default=None, metavar="LR",
                   help="with --tune-llm: the LLM's learning rate (default: --lr, as TGE's and MMF's)")
    p.add_argument("--tune-embeddings", action="store_true",
                   help="with --tune-llm: train the LLM's word embeddings and output head too (by default they "
                        "stay as stage 0 made them, so the words of other products' types keep their place)")
    p.add_argument("--replay", type=float, default=0.0, metavar="WEIGHT",
                   help="with --tune-llm: every stage-3 step also trains the LLM on a batch of the stage-0 corpus "
                        "(--text-batch-size conversations of many products, the stage-0 slots for the image), its "
                        "loss weighted WEIGHT, so it keeps copying types and sizes from the evidence line; --init "
                        "must hold the stage-0 slots (a stage-0 checkpoint, or recipe.with_slots)")
    p.add_argument("--decoder-only", action="store_true",
                   help="stage 2 trains the decoder alone on focal + dice, without the LLM (fast; MMF kept)")
    p.add_argument("--bank-only", type=Path, default=None, metavar="DIR",
                   help="more good images (MVTec layout, e.g. from `python -m iadgpt.data.textures DIR`) that "
                        "stages 1 and 3 show as memory-bank maps only: other products' normal variation for the "
                        "verdict; never shown to the decoder, not recorded as products (needs --bank-maps)")
    p.add_argument("--bank-maps", action="store_true",
                   help="stages 1 and 3 also feed the LLM memory-bank maps (and their mean with the decoder's), "
                        "so it answers alike for trained products and for new ones served by their references")
    p.add_argument("--out", type=Path, default=Path("runs/iadgpt"), help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
    p.add_argument("--checkpoint-every", type=int, default=1,
                   help="epochs between checkpoints (default 1; the last epoch of each stage is always saved)")
    p.add_argument("--max-steps", type=int, help="cap on optimiser steps per stage")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_precision_arg(p)
    add_weights_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
    return p


def config_from_args(args: argparse.Namespace):
    from iadgpt.training.config import TrainConfig

    return TrainConfig(preset=args.preset, data=args.data, classes=args.classes, product=getattr(args, "product", None),
                       stage=args.stage,
                       epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                       synthesis=args.synthesis, anomaly_ratio=args.anomaly_ratio, out_dir=args.out,
                       resume=args.resume, max_steps=args.max_steps, num_workers=args.num_workers,
                       device=args.device, progress=not args.no_progress,
                       precision=getattr(args, "precision", "auto"), llm_path=getattr(args, "llm", None),
                       clip_weights=getattr(args, "clip_weights", None),
                       stage0_epochs=getattr(args, "stage0_epochs", None),
                       epochs_by_stage=dict(getattr(args, "stage_epochs", None) or []) or None,
                       stage0_lr=getattr(args, "stage0_lr", 1e-3),
                       text_batch_size=getattr(args, "text_batch_size", 16),
                       lm_loss=getattr(args, "lm_loss", "answers"),
                       flip_slots=getattr(args, "flip_slots", 0.0),
                       copy_weight=getattr(args, "copy_weight", 1.0),
                       init_weights=getattr(args, "init_weights", None),
                       checkpoint_every=getattr(args, "checkpoint_every", 1),
                       patch_frac=tuple(getattr(args, "patch_frac", (0.05, 0.3))),
                       bank_maps=getattr(args, "bank_maps", False), bank_only=getattr(args, "bank_only", None),
                       decoder_only=getattr(args, "decoder_only", False),
                       follow_ups=getattr(args, "follow_ups", 0.0),
                       tune_llm=getattr(args, "tune_llm", False),
                       tune_embeddings=getattr(args, "tune_embeddings", False),
                       llm_lr=getattr(args, "llm_lr", None), replay=getattr(args, "replay", 0.0))


def cmd_train(args: argparse.Namespace) -> int:
    """Run training; prints the weights folder. IADGPTError propagates to iadgpt.cli.main (exit 2)."""
    from iadgpt.training.trainer import train

    weights = train(config_from_args(args))
    print(weights)
    print(f"weights written to {weights}; use them with --weights {weights}", file=sys.stderr)
    return 0
