"""How often the LLM's verdict is right in few-shot mode, on VALIDATION data only.

The split is tower_choice.py's: train/good cut into references (the rest) and 24 held-out images,
each scored as it is (good) and with a synthetic anomaly. The references are drawn at random (seeded)
from the rest, as `iadgpt eval` draws them. Printed per weights folder, dataset and K: good parts
answered "No", defective ones answered "Yes", their mean (balanced accuracy) and the AUROC of
p(Yes), and the map's own I-AUROC (its maximum) and P-AUROC. The memory-bank
level and the training banks (decision 0005) were chosen with this table.
K = 0 inspects without a memory bank (the decoder's map). With --answers, the answers are generated
too, and of the parts answered "Yes" it prints how many name exactly the Position row's place and
how many contradict their own verdict ("Yes, there are no abnormalities"); the image-token scale
(decision 0009) was chosen with these columns. With --chat N, the scripted chat questions of `iadgpt
eval --chat-images N` are asked about held-out images too (consistency per question kind). With
--name, the product is called by that name instead of the dataset's (the chat must call a good part
by it: `--name brake_disc`, one of the names stage 0's corpus never has, training/corpus.py).

    .venv/bin/python benchmarks/verdict_calibration.py --data ../shared/datasets/bsdata \\
        --weights shipped runs/unified-s3/weights --shots 4 16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import iadgpt.inspector
from iadgpt.evaluation import scripted_chat
from iadgpt.grounding import position_agrees, says_negative
from iadgpt.imageio import resize_map
from iadgpt.inspector import Inspector
from iadgpt.metrics import auroc, pixel_auroc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tower_choice import validation_set  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", type=Path, required=True)
    ap.add_argument("--weights", nargs="+", default=["shipped"], help="weights folders; 'shipped' = resources/")
    ap.add_argument("--shots", nargs="+", type=int, default=[4, 16])
    ap.add_argument("--preset", default="unified-lite0")
    ap.add_argument("--level", default="upper",
                    help="the bank's normal level: 'upper' (the product's, inspector.upper_level), or for "
                         "comparison 'median' (the median of the leave-one-out maxima, before 2026-12-01) or "
                         "'xF' (F times that median, e.g. x2)")
    ap.add_argument("--answers", action="store_true",
                    help="generate the answers and report position agreement and self-contradictions")
    ap.add_argument("--chat", type=int, default=0, metavar="N",
                    help="also ask the scripted chat questions (as `iadgpt eval --chat-images N`) about the "
                         "first N defective and N // 2 good held-out images; a second table per question kind")
    ap.add_argument("--name", help="the product's class name the inspector is given (default: the dataset's)")
    args = ap.parse_args()
    if args.level != "upper":
        factor = 1.0 if args.level == "median" else float(args.level.lstrip("x"))
        iadgpt.inspector.upper_level = lambda maxima: max(factor * float(np.median(maxima)), 1e-6)
    print(f"level: {args.level}")
    extra = " position agrees | contradicts verdict |" if args.answers else ""
    print("| weights | dataset | K | good answered No | defective answered Yes | balanced | AUROC p(Yes) | "
          "map I-AUROC / P-AUROC |" + extra)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |" + " --- | --- |" * args.answers)
    chats: list[tuple[str, str, int, dict[str, float]]] = []
    for data in args.data:
        refs, val = validation_set(data)
        order = np.random.default_rng(0).permutation(len(refs))
        labels = np.array([int(mask.any()) for _, mask in val])
        masks = [mask for _, mask in val]
        for weights in args.weights:
            inspector = Inspector(args.preset, class_name=args.name or data.name,
                                  weights=None if weights == "shipped" else weights)
            for k in args.shots:
                if k:
                    inspector.build_memory_bank([refs[i] for i in order[:k]])
                else:
                    inspector.set_memory_bank(None)
                with torch.no_grad():
                    results = [inspector.inspect(rgb, generate_answer=args.answers) for rgb, _ in val]
                p_yes = np.array([r.p_yes for r in results])
                good_no, bad_yes = (p_yes[labels == 0] < 0.5).mean(), (p_yes[labels == 1] >= 0.5).mean()
                row = (f"| {weights} | {data.name} | {k} | {100 * good_no:.0f} % | {100 * bad_yes:.0f} % | "
                       f"{50 * (good_no + bad_yes):.0f} % | {100 * auroc(labels, p_yes):.1f} | "
                       f"{100 * auroc(labels, [r.score for r in results]):.1f} / "
                       f"{100 * map_auroc(masks, results):.1f} |")
                if args.answers:
                    said = [r for r in results if r.verdict == "defective" and r.evidence is not None]
                    agree = sum(position_agrees(r.answer, r.evidence) for r in said)
                    contra = sum(says_negative(r.answer) for r in said)
                    row += f" {agree} of {len(said)} | {contra} of {len(said)} |"
                print(row, flush=True)
                if args.chat:
                    inspected = list(zip([rgb for rgb, _ in val], results, strict=True))
                    bad = [pair for pair, label in zip(inspected, labels, strict=True) if label][:args.chat]
                    good = [pair for pair, label in zip(inspected, labels, strict=True) if not label]
                    chats.append((str(weights), data.name, k, scripted_chat(inspector, bad + good[:args.chat // 2])))
    if chats:
        kinds = list(chats[0][3])
        print("\nScripted chat, answers consistent with verdict and evidence, percent:\n")
        print("| weights | dataset | K | " + " | ".join(kinds) + " |")
        print("| --- | --- | --- |" + " --- |" * len(kinds))
        for weights, name, k, hits in chats:
            print(f"| {weights} | {name} | {k} | " + " | ".join(f"{100 * hits[kind]:.0f}" for kind in kinds) + " |")
    return 0


def map_auroc(masks: list[np.ndarray], results: list) -> float:
    """P-AUROC of the results' anomaly maps, each at its mask's size."""
    return pixel_auroc(masks, [resize_map(r.anomaly_map, *mask.shape) for mask, r in zip(masks, results, strict=True)])


if __name__ == "__main__":
    sys.exit(main())
