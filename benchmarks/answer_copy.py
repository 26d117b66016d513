"""Does the small LLM copy the place from the evidence line, or read it from the image slots?

Text only, no dataset: 30 evidence lines per class name (one or two random 3 x 3 cells, three
shapes) are put to the LLM with its stage-0 pretext slots saying "anomalous" but lighting OTHER
cells, drawn at random. Printed: the answers whose place is not exactly the evidence line's, and
those not starting with "Yes". The slots are only in stage-0 checkpoints (pretext.safetensors);
decision 0009 chose the stage-0 slot cells with this count.

    .venv/bin/python benchmarks/answer_copy.py --weights runs/s0/weights \\
        --slots runs/s0/checkpoints/last/pretext.safetensors
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from iadgpt.grounding import positions_in
from iadgpt.inspector import Inspector
from iadgpt.llm import inspection_messages
from iadgpt.position import POSITIONS, positions_phrase
from iadgpt.training.pretext import PretextHeads

SHAPES = (("compact spot", "hole or stain"), ("unclear", "unclear"), ("thin line", "crack or scratch"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="shipped", help="weights folder; 'shipped' = resources/")
    ap.add_argument("--slots", required=True, help="pretext.safetensors of a stage-0 checkpoint")
    ap.add_argument("--preset", default="unified-lite0")
    ap.add_argument("--classes", nargs="+", default=["bsdata", "ball_screw_drive", "magnetic_tile", "widget"])
    args = ap.parse_args()
    torch.manual_seed(0)
    inspector = Inspector(args.preset)
    if args.weights != "shipped":
        inspector.load_weights(args.weights)
    llm, heads_cfg = inspector.llm, inspector.preset.heads
    slots = PretextHeads(inspector.model.towers.embed_dim, llm.hidden_size, heads_cfg.fusion_grid,
                         heads_cfg.base_prompts)
    slots.load_state_dict(load_file(args.slots))
    rng = np.random.default_rng(1)
    print("| class name | answers | place not the evidence's | not answered Yes |")
    print("| --- | --- | --- | --- |")
    for name in args.classes:
        wrong = not_yes = 0
        for i in range(30):
            k = int(rng.integers(1, 3))
            place = positions_phrase([POSITIONS[int(c)] for c in rng.permutation(9)[:k]])
            shape, kind = SHAPES[i % 3]
            evidence = (f"Map evidence: strongest response at the {place}; {k} region{'s' * (k > 1)}; small "
                        f"(1.0 % of the image); shape: {shape}; likely type: {kind}.")
            lit = torch.zeros(1, len(POSITIONS), dtype=torch.bool)
            lit[0, rng.permutation(len(POSITIONS))[:k]] = True  # other cells than the evidence names
            messages = inspection_messages(inspector.preset.llm.system_prompt, name, evidence)
            with torch.no_grad():
                embeds, mask = llm.embed_prompt(messages, slots.slots(torch.tensor([True]), lit))
                answer = "".join(llm.stream(embeds, mask, max_new_tokens=40)).strip()
            wrong += positions_in(answer) != positions_in(place)
            not_yes += not answer.startswith("Yes")
        print(f"| {name} | 30 | {wrong} | {not_yes} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
