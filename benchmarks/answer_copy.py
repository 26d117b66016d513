"""Does the small LLM copy the place from the evidence line, or read it from the image slots?

Text only, no dataset: 30 evidence lines per class name (one or two random 3 x 3 cells, three
shapes) are put to the LLM with its stage-0 pretext slots saying "anomalous" but lighting OTHER
cells, drawn at random. Printed: the answers whose place is not exactly the evidence line's, and
those not starting with "Yes". The slots are only in stage-0 checkpoints (pretext.safetensors);
decision 0009 chose the stage-0 slot cells with this count. With --follow-ups, after each first answer
the size, count, type and describe questions are asked too, and about a good part (slots "normal")
after its own first answer the where, size, count, describe and ship questions, each checked with
`grounding.consistent` (the product's name included): the share of consistent answers per kind.
"good, slots say a defect": the same good-part follow-ups after the verdict "No, there are no
abnormalities in the image.", with the slots saying "anomalous" (as image tokens of a good part with a
strong map can): the share consistent over all five kinds.
The default class names include two the corpus never has.

    .venv/bin/python benchmarks/answer_copy.py --weights runs/s0/weights \\
        --slots runs/s0/checkpoints/last/pretext.safetensors
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from iadgpt.evidence import Evidence
from iadgpt.grounding import consistent, positions_in
from iadgpt.inspector import Inspector
from iadgpt.llm import inspection_messages
from iadgpt.position import POSITIONS, positions_phrase
from iadgpt.training.pretext import PretextHeads

SHAPES = (("spot", ("hole", "stain")), (None, ()), ("line", ("crack", "scratch")))
FOLLOW_UPS = (("size", "How big is it?"), ("count", "How many defects are there?"),
              ("type", "What kind of defect is it?"), ("describe", "Describe it."))
NO_VERDICT = "No, there are no abnormalities in the image."
GOOD_FOLLOW_UPS = (("where", "Where is the defect?"), ("size", "How big is it?"),
                   ("count", "How many defects are there?"), ("describe", "Describe it."),
                   ("ship", "Is it safe to ship?"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="shipped", help="weights folder; 'shipped' = resources/")
    ap.add_argument("--slots", required=True, help="pretext.safetensors of a stage-0 checkpoint")
    ap.add_argument("--preset", default="unified-lite0")
    ap.add_argument("--classes", nargs="+",
                    default=["bsdata", "ball_screw_drive", "magnetic_tile", "widget", "brake_disc", "fan_blade"])
    ap.add_argument("--follow-ups", action="store_true", help="also ask follow-ups, of a defective and of a good part")
    args = ap.parse_args()
    torch.manual_seed(0)
    inspector = Inspector(args.preset, weights=None if args.weights == "shipped" else args.weights)
    llm, heads_cfg = inspector.llm, inspector.preset.heads
    slots = PretextHeads(inspector.model.towers.embed_dim, llm.hidden_size, heads_cfg.fusion_grid,
                         heads_cfg.base_prompts)
    slots.load_state_dict(load_file(args.slots))
    rng = np.random.default_rng(1)
    kinds = ([k for k, _ in FOLLOW_UPS] + [f"good {k}" for k, _ in GOOD_FOLLOW_UPS] + ["good, slots say a defect"]
             if args.follow_ups else [])
    print("| class name | answers | place not the evidence's | not answered Yes |" + "".join(f" {k} |" for k in kinds))
    print("| --- | --- | --- | --- |" + " --- |" * len(kinds))
    for name in args.classes:
        wrong = not_yes = 0
        hits: dict[str, list[bool]] = {k: [] for k in kinds}
        for i in range(30):
            k = int(rng.integers(1, 3))
            place = positions_phrase([POSITIONS[int(c)] for c in rng.permutation(9)[:k]])
            shape, types = SHAPES[i % 3]
            area = float(np.exp(rng.uniform(np.log(0.001), np.log(0.2))))
            evidence = Evidence(place, k, area, shape, types)
            lit = torch.zeros(1, len(POSITIONS), dtype=torch.bool)
            lit[0, rng.permutation(len(POSITIONS))[:k]] = True  # other cells than the evidence names
            messages = inspection_messages(inspector.preset.llm.system_prompt, name, evidence.text())
            answer = _ask(llm, slots, messages, True, lit)
            wrong += positions_in(answer) != positions_in(place)
            not_yes += not answer.startswith("Yes")
            if args.follow_ups:
                for kind, question in FOLLOW_UPS:
                    reply = _ask(llm, slots, messages + _turn(answer, question), True, lit)
                    hits[kind].append(consistent(kind, reply, True, evidence, name))
                none = torch.zeros_like(lit)
                first = _ask(llm, slots, messages, False, none)
                for kind, question in GOOD_FOLLOW_UPS:
                    reply = _ask(llm, slots, messages + _turn(first, question), False, none)
                    hits[f"good {kind}"].append(consistent(kind, reply, False, evidence, name))
                    said_no = messages + _turn(NO_VERDICT, question)
                    reply = _ask(llm, slots, said_no, True, lit)
                    hits["good, slots say a defect"].append(consistent(kind, reply, False, evidence, name))
        cells = "".join(f" {100 * np.mean(hits[k]):.0f} % |" for k in kinds)
        print(f"| {name} | 30 | {wrong} | {not_yes} |{cells}", flush=True)
    return 0


def _turn(answer: str, question: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": answer}, {"role": "user", "content": question}]


def _ask(llm, slots: PretextHeads, messages: list[dict[str, str]], anomalous: bool, cells: torch.Tensor) -> str:
    """The LLM's answer with the stage-0 slots standing for the image (anomalous or not, `cells` lit)."""
    with torch.no_grad():
        embeds, mask = llm.embed_prompt(messages, slots.slots(torch.tensor([anomalous]), cells))
        return "".join(llm.stream(embeds, mask, max_new_tokens=40)).strip()


if __name__ == "__main__":
    sys.exit(main())
