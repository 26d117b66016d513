"""`iadgpt eval`: benchmark a preset on an MVTec-AD style or VisA dataset and write a report.

Wire it into the main parser with ``add_eval_parser(sub)`` in `iadgpt.cli.build_parser`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from iadgpt.config import DEFAULT_PRESET

log = logging.getLogger("iadgpt")


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `eval` sub-command to ``subparsers`` (from `ArgumentParser.add_subparsers`)."""
    from iadgpt.cli import add_precision_arg, add_weights_args

    p = subparsers.add_parser("eval", help="evaluate on a dataset's test split (I-AUROC, P-AUROC, AUPRO, ...)")
    p.add_argument("--data", required=True, help="dataset root (MVTec-AD layout, or VisA with split_csv/) "
                                                 "or one MVTec-layout class folder")
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"built-in preset name or preset .json (default: {DEFAULT_PRESET}, the built-in model)")
    p.add_argument("--weights", help="folder of trained decoder/TGE/MMF weights (safetensors + manifest.json)")
    p.add_argument("--format", dest="dataset_format", default="auto", choices=["auto", "mvtec", "visa"],
                   help="dataset layout (default: auto, VisA when split_csv/ exists)")
    p.add_argument("--reference-shots", type=int, default=0, metavar="K",
                   help="0: zero-shot; K > 0: memory bank from K seeded-chosen train/good images per class")
    p.add_argument("--limit", type=int, metavar="N", help="at most N test images per class (stratified, seeded)")
    p.add_argument("--classes", nargs="+", help="evaluate only these classes")
    p.add_argument("--product", help="inspect a one-class dataset as this product class (default: what the "
                                     "weights were trained as, else the folder name)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_precision_arg(p)
    add_weights_args(p)
    p.add_argument("--map-size", type=int, default=256,
                   help="pixel metrics on maps and masks resized to this square size (default 256)")
    p.add_argument("--out", default="iadgpt-eval", help="folder for metrics.json, report.md and the PNGs")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument("--seed", type=int, default=0, help="seed for the reference and --limit choices")
    p.add_argument("--answers", action="store_true",
                   help="generate every answer (slower) and report whether it names the Position row's place")
    p.add_argument("--chat-images", type=int, default=0, metavar="N",
                   help="ask the scripted chat questions about N defective and N/2 good images per class and "
                        "report the share of answers consistent with verdict, position, size and type")
    p.set_defaults(func=cmd_eval)
    return p


def cmd_eval(args: argparse.Namespace) -> int:
    from iadgpt.evaluation import EvalConfig, evaluate, format_table, json_summary, write_report

    cfg = EvalConfig(
        data=Path(args.data), preset=args.preset, weights=Path(args.weights) if args.weights else None,
        dataset_format=getattr(args, "dataset_format", "auto"), classes=args.classes,
        product=getattr(args, "product", None),
        reference_shots=args.reference_shots, limit=args.limit, device=args.device, precision=args.precision,
        llm_path=getattr(args, "llm", None), clip_weights=getattr(args, "clip_weights", None),
        out_dir=Path(args.out), seed=args.seed, map_size=getattr(args, "map_size", 256) or None,
        generate_answer=getattr(args, "answers", False), chat_images=getattr(args, "chat_images", 0),
    )

    def progress(done: int, total: int, message: str) -> None:
        if done == total or done % 25 == 0:
            log.info("eval %d/%d %s", done, total, message)

    result = evaluate(cfg, progress)
    files = write_report(result, cfg.out_dir)
    if args.json:
        print(json.dumps(json_summary(result)))
    else:
        print(format_table(result))
        timing = result["timing"]
        print(f"\n{result['n_images']} images in {timing['seconds']:.1f} s "
              f"({timing['images_per_second']} images/s inspecting); report: {files['report.md']}")
        for note in result["notes"][1:]:
            print(f"note: {note}")
    sys.stdout.flush()
    return 0
