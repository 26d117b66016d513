"""Does the small LLM copy the type names and the share of the image from the evidence line?

No stage-0 slots are needed (unlike answer_copy.py): the image tokens are those of one real image
(`--image`, read through the decoder's map) or zeros (`--image none`), and the evidence line is
written by hand. For every distinct prompt bank of the stage-0 corpus (its first class name) and
every region shape that names some of its types, the type question is asked after the verdict
"Yes, ... at the right."; for 11 shares from 0.2 % to 12 % the size question is. Printed per bank:
type answers consistent with the line (`grounding.consistent`), size answers giving the line's share
exactly, and a wrong answer of each kind; then the share said for each share given, for one bank.

    .venv/bin/python benchmarks/evidence_copy.py --image ../shared/datasets/bsdata/test/pitting/000.png
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from iadgpt.evidence import Evidence
from iadgpt.grounding import consistent, share_agrees
from iadgpt.imageio import load_image
from iadgpt.inspector import Inspector
from iadgpt.llm import question_text, user_text
from iadgpt.training.corpus import bank_types, corpus_banks, distinct_banks

SHAPES = ("spot", "line", "patch", "missing")
SHARES = (0.002, 0.004, 0.006, 0.009, 0.012, 0.015, 0.021, 0.034, 0.055, 0.081, 0.12)
PLACE = "right"
VERDICT = f"Yes, the image contains an abnormality at the {PLACE}."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="shipped", help="weights folder; 'shipped' = resources/")
    ap.add_argument("--preset", default="unified-lite0")
    ap.add_argument("--image", required=True, help="an image whose tokens stand for the part, or 'none' (zeros)")
    ap.add_argument("--product", default="ball_screw_drive", help="the class the image is read as (its map)")
    args = ap.parse_args()
    inspector = Inspector(args.preset, class_name=args.product,
                          weights=None if args.weights == "shipped" else args.weights)
    tokens = image_tokens(inspector, args.image)
    groups = distinct_banks(corpus_banks([args.product]))
    print(f"image tokens: {args.image}; weights: {args.weights}\n")
    print("| bank of | types copied | share copied | a wrong type answer | a wrong size answer |")
    print("| --- | --- | --- | --- | --- |")
    typed = shared = typed_n = shared_n = 0
    said_by_share: list[str] = []
    for names, classes in groups.items():
        inspector.class_name = classes[0]
        type_hits, type_wrong = [], ""
        for shape in SHAPES:
            types = bank_types(shape, list(names))
            if types:
                evidence = Evidence(PLACE, 1, 0.01, shape, types)
                reply = ask(inspector, tokens, evidence, "What kind of defect is it?")
                type_hits.append(consistent("type", reply, True, evidence, classes[0]))
                type_wrong = type_wrong or ("" if type_hits[-1] else f"{evidence.type_phrase} -> {reply}")
        share_hits, share_wrong = [], ""
        for share in SHARES:
            evidence = Evidence(PLACE, 1, share, "spot", bank_types("spot", list(names)))
            reply = ask(inspector, tokens, evidence, "How big is it?")
            share_hits.append(share_agrees(reply, evidence) and "%" in reply)
            share_wrong = share_wrong or ("" if share_hits[-1] else f"{evidence.size_phrase} -> {reply}")
            if len(said_by_share) < len(SHARES):  # the first bank's
                said_by_share.append(f"{100 * share:.1f} -> {reply.split('size:')[-1].split(' of')[0].strip()}")
        typed, typed_n = typed + sum(type_hits), typed_n + len(type_hits)
        shared, shared_n = shared + sum(share_hits), shared_n + len(share_hits)
        print(f"| {classes[0]} | {sum(type_hits)} of {len(type_hits)} | {sum(share_hits)} of {len(share_hits)} | "
              f"{cell(type_wrong)} | {cell(share_wrong)} |", flush=True)
    print(f"| all {len(groups)} banks | {typed} of {typed_n} | {shared} of {shared_n} | | |")
    print(f"\nshare given -> said ({next(iter(groups.values()))[0]}): " + "; ".join(said_by_share))
    return 0


def image_tokens(inspector: Inspector, image: str) -> torch.Tensor:
    """The LLM's image tokens of `image` read through the decoder's map; zeros of that shape for 'none'."""
    rgb = np.full((64, 64, 3), 128, np.uint8) if image == "none" else load_image(image)
    with torch.no_grad():
        features = inspector._encode(rgb)
        maps = inspector.model.layer_maps(features, inspector.prompts, None, use_decoder=True)
        tokens = inspector.model.image_embeddings(features, inspector.prompts, maps)
    return torch.zeros_like(tokens) if image == "none" else tokens


def ask(inspector: Inspector, tokens: torch.Tensor, evidence: Evidence, question: str) -> str:
    messages = inspector._conversation(evidence.text()) + [
        {"role": "assistant", "content": user_text(VERDICT)}, {"role": "user", "content": question_text(question)}]
    with torch.no_grad():
        embeds, mask = inspector.llm.embed_prompt(messages, tokens)
        return "".join(inspector.llm.stream(embeds, mask, max_new_tokens=40)).strip()


def cell(text: str) -> str:
    return text.replace("|", "/")[:90]


if __name__ == "__main__":
    sys.exit(main())
