"""Choose the built-in image tower (variant, taps, input size, aspect) on VALIDATION data only.

Nothing here reads a test split. For each dataset, train/good is cut in two: the first K images
are the memory bank's references (Eq. 2, the product's own code path: per-layer cosine, layers
averaged), the last 24 are held out. Each held-out image is scored once as it is (good) and once
with a synthetic anomaly (NSA, CutPaste or drawn marks, drawn at the image's own resolution, so
their size relative to the part is the same whatever the input size). Printed: validation I-AUROC,
P-AUROC per configuration, and the tower's median encode time. The table is in docs/decisions/0005.

    .venv/bin/python benchmarks/tower_choice.py --data ../shared/datasets/bsdata ../shared/datasets/magnetic_tile
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from iadgpt.config import TF_MEAN, TF_STD, ImageInput
from iadgpt.data.datasets import load_sample, mvtec_samples
from iadgpt.data.synthesis import synthesize
from iadgpt.efficientnet import build_efficientnet
from iadgpt.memory_bank import MemoryBank
from iadgpt.metrics import auroc, pixel_auroc
from iadgpt.preprocess import preprocess as prep

HELD_OUT = 24


def preprocess(rgb: np.ndarray, side: int, keep_aspect: bool) -> torch.Tensor:
    return prep(rgb, ImageInput(side, TF_MEAN, TF_STD, keep_aspect=keep_aspect))  # (1, 3, h, w)


def validation_set(data: Path, seed: int = 0, methods: tuple[str, ...] = ("nsa", "cutpaste", "draw"),
                   ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    goods = [load_sample(s)[0] for s in mvtec_samples(data, "train")]
    refs, held = goods[:-HELD_OUT], goods[-HELD_OUT:]
    rng = np.random.default_rng(seed)
    val = []
    for i, image in enumerate(held):
        val.append((image, np.zeros(image.shape[:2], bool)))
        source = held[(i + 1) % len(held)]
        method = methods[i % len(methods)]
        bad, mask = synthesize(image, source, rng, method, patch_frac=(0.04, 0.15))
        if mask.any():
            val.append((bad, mask))
    return refs, val


AUGMENTS = {"none": (), "flips": ("hflip", "vflip"), "flips+rot": ("hflip", "vflip", "rot180")}


def augmented(rgb: np.ndarray, names: tuple[str, ...]) -> list[np.ndarray]:
    ops = {"hflip": lambda a: a[:, ::-1], "vflip": lambda a: a[::-1], "rot180": lambda a: a[::-1, ::-1]}
    return [rgb] + [np.ascontiguousarray(ops[n](rgb)) for n in names]


SCORINGS = ("eq2", "joint-cos", "joint-l2")


class JointBank:
    """The PatchCore-style alternative to Eq. 2 (for comparison only): one nearest neighbour over the
    concatenated taps, by cosine of the per-tap normalised tokens or by L2 of the raw tokens."""

    def __init__(self, taps: list[int], metric: str) -> None:
        self.taps, self.metric, self.rows = taps, metric, []

    def _joint(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        picked = [tokens[i][0] for i in self.taps]  # (N, C_l) each
        if self.metric == "cos":
            picked = [torch.nn.functional.normalize(t, dim=-1) for t in picked]
        return torch.cat(picked, dim=-1)  # (N, sum C_l)

    def add(self, tokens: list[torch.Tensor]) -> None:
        self.rows.append(self._joint(tokens))

    def score(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        query, bank = self._joint(tokens), torch.cat(self.rows)
        if self.metric == "cos":
            dist = 1 - (query @ bank.T).max(dim=1).values / len(self.taps)
        else:
            dist = torch.cdist(query, bank).min(dim=1).values
        return dist[None, None]  # (1, 1, N), as MemoryBank.score's (B, L, N)


def evaluate(tower, refs, val, shots: int, side: int, keep_aspect: bool, sigma: float = 4.0, augment: str = "none",
             scoring: str = "eq2", bank_taps: list[int] | None = None, coreset: int = 0,
             image_score: str = "max"):
    taps = bank_taps if bank_taps is not None else list(range(len(tower.layer_dims)))
    if scoring == "eq2":
        bank = MemoryBank([tower.layer_dims[i] for i in taps])
    else:
        bank = JointBank(taps, scoring.split("-")[1])
    for rgb in refs[:shots]:
        for view in augmented(rgb, AUGMENTS[augment]):
            tokens = tower.encode_image(preprocess(view, side, keep_aspect)).patch_tokens
            bank.add(tokens if scoring != "eq2" else [tokens[i] for i in taps])
    if coreset and scoring == "eq2":
        bank.subsample(coreset)
    labels, scores, masks, maps, times = [], [], [], [], []
    for rgb, mask in val:
        x = preprocess(rgb, side, keep_aspect)
        t0 = time.perf_counter()
        feats = tower.encode_image(x)
        times.append(time.perf_counter() - t0)
        tokens = feats.patch_tokens if scoring != "eq2" else [feats.patch_tokens[i] for i in taps]
        grid = bank.score(tokens).mean(dim=1)[0].unflatten(0, feats.grid).numpy()  # (h, w)
        small = cv2.resize(grid, (x.shape[-1], x.shape[-2]), interpolation=cv2.INTER_LINEAR)
        small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma)
        full = cv2.resize(small, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
        labels.append(int(mask.any()))
        if image_score == "max":
            scores.append(float(small.max()))
        else:  # the mean of the map's top 1 % (Inspector's score_top1)
            flat = small.reshape(-1)
            k = max(1, flat.size // 100)
            scores.append(float(np.partition(flat, -k)[-k:].mean()))
        masks.append(mask)
        maps.append(full)
    return auroc(labels, scores), pixel_auroc(masks, maps), statistics.median(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=["lite0", "lite1", "lite2"])
    ap.add_argument("--taps", nargs="+", default=["2,3,4,5", "3,4,5,6", "2,3,4,6"])
    ap.add_argument("--sides", nargs="+", type=int, default=[256, 320])
    ap.add_argument("--shots", nargs="+", type=int, default=[4, 16])
    ap.add_argument("--aspect", nargs="+", default=["keep", "squash"])
    ap.add_argument("--augment", nargs="+", default=["none"], choices=list(AUGMENTS),
                    help="views of each reference added to the bank")
    ap.add_argument("--scoring", nargs="+", default=["eq2"], choices=SCORINGS,
                    help="eq2: the product's per-layer cosine, layers averaged; joint-*: one nearest neighbour "
                         "over the concatenated taps (PatchCore style)")
    ap.add_argument("--bank-taps", nargs="+", default=["all"],
                    help="which of the tower's taps the bank reads, as positions in --taps (e.g. 1,2)")
    ap.add_argument("--coreset", nargs="+", type=int, default=[0],
                    help="eq2 bank shrunk to this many patches by the product's coreset (0: every patch kept)")
    ap.add_argument("--image-score", nargs="+", default=["max"], choices=["max", "top1"],
                    help="an image's score: the map's maximum, or the mean of its top 1 %% of pixels")
    ap.add_argument("--anomalies", choices=["mix", "draw"], default="mix",
                    help="validation anomalies: NSA, CutPaste and drawn marks in turn (default), or drawn marks only")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    methods = ("draw",) if args.anomalies == "draw" else ("nsa", "cutpaste", "draw")
    sets = {d.name: validation_set(d, methods=methods) for d in args.data}
    print("| variant | taps | side | aspect | bank views | scoring | bank taps | coreset | image score | " + " | ".join(
        f"{n} {k}-shot I / P" for n in sets for k in args.shots) + " | encode ms |")
    print("|" + " --- |" * (10 + len(sets) * len(args.shots)))
    for variant in args.variants:
        towers = {}
        for taps, side, aspect, augment, scoring, bank_taps, coreset, image_score in itertools.product(
                args.taps, args.sides, args.aspect, args.augment, args.scoring, args.bank_taps, args.coreset,
                args.image_score):
            key = tuple(int(t) for t in taps.split(","))
            tower = towers.setdefault(key, build_efficientnet(variant, key))
            chosen = None if bank_taps == "all" else [int(t) for t in bank_taps.split(",")]
            cells, enc = [], []
            with torch.no_grad():
                for refs, val in sets.values():
                    for k in args.shots:
                        i, p, ms = evaluate(tower, refs, val, k, side, aspect == "keep", augment=augment,
                                            scoring=scoring, bank_taps=chosen, coreset=coreset,
                                            image_score=image_score)
                        cells.append(f"{100 * i:.1f} / {100 * p:.1f}")
                        enc.append(ms)
            shown = taps if chosen is None else ",".join(str(key[i]) for i in chosen)
            row = [variant, taps, side, aspect, augment, scoring, shown, coreset or "all", image_score, *cells,
                   f"{statistics.median(enc):.1f}"]
            print("| " + " | ".join(str(c) for c in row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
