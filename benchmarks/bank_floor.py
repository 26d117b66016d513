"""The issue's untrained PatchCore floor beside the product's memory bank, on TEST splits (reporting only).

Issue 11 states a floor: a plain PatchCore-style memory bank on the ImageNet EfficientNet-Lite0's
stride-8 and stride-16 features (3 x 3 average pooling, upsampled to stride 8, 256 px, nearest
neighbour by L2, nothing trained). This script measures that floor on the full test splits in the
same run, on the same references, as the product's own few-shot path (`Inspector` with a memory
bank and a product name the weights were not trained on, so its map is Eq. 2 alone, as for any new
product). Nothing here chooses a setting: choices are made on validation (benchmarks/tower_choice.py,
benchmarks/verdict_calibration.py). References are drawn as `iadgpt eval --seed S` draws them
(`evaluation.choose_references`); several seeds show how much the draw of a few references moves
the result. Pixel AUROC on maps and masks at 256 x 256, as `iadgpt eval`.

    .venv/bin/python benchmarks/bank_floor.py --data ../shared/datasets/bsdata ../shared/datasets/magnetic_tile
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from iadgpt.config import TF_MEAN, TF_STD, ImageInput
from iadgpt.data.datasets import load_sample, mvtec_samples
from iadgpt.efficientnet import build_efficientnet
from iadgpt.evaluation import choose_references
from iadgpt.imageio import resize_map
from iadgpt.inspector import Inspector
from iadgpt.metrics import auroc, pixel_auroc
from iadgpt.preprocess import preprocess

MAP_SIZE = 256
NEW_PRODUCT = "new_product"  # not a trained product: the inspector serves it by its memory bank alone


def _square(amap: np.ndarray) -> np.ndarray:
    return resize_map(amap, MAP_SIZE, MAP_SIZE)  # as `iadgpt eval` resizes maps for the pixel metrics


def floor_maps(tower, refs: list[np.ndarray], tests: list[np.ndarray], side: int,
               sigma: float) -> tuple[list[float], list[np.ndarray]]:
    """The issue's probe: joint L2 nearest neighbour over the tapped stages (concatenated), squashed input."""
    image_input = ImageInput(side, TF_MEAN, TF_STD, keep_aspect=False)

    def tokens(rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        feats = tower.encode_image(preprocess(rgb, image_input))
        return torch.cat([t[0] for t in feats.patch_tokens], dim=-1), feats.grid  # (N, C)

    bank = torch.cat([tokens(r)[0] for r in refs])
    scores, maps = [], []
    for rgb in tests:
        query, grid = tokens(rgb)
        amap = _square(torch.cdist(query, bank).min(dim=1).values.unflatten(0, grid).numpy())
        if sigma > 0:
            amap = cv2.GaussianBlur(amap, (0, 0), sigmaX=sigma)
        scores.append(float(amap.max()))
        maps.append(amap)
    return scores, maps


def product_maps(inspector: Inspector, refs: list[np.ndarray], tests: list[np.ndarray],
                 ) -> tuple[list[float], list[np.ndarray]]:
    """The product's few-shot path: the inspector's bank map and its score (the map's maximum)."""
    inspector.build_memory_bank(refs)
    results = [inspector.inspect(rgb, generate_answer=False) for rgb in tests]
    return [r.score for r in results], [_square(r.anomaly_map) for r in results]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", type=Path, required=True)
    ap.add_argument("--shots", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="reference draws, as `iadgpt eval --seed`")
    ap.add_argument("--floor-taps", default="3,5",
                    help="the probe's block stages, 1-based (3: stride 8, 40 channels; 5: stride 16, 112)")
    ap.add_argument("--side", type=int, default=256, help="the probe's input side (squashed)")
    ap.add_argument("--sigma", type=float, default=4.0, help="Gaussian smoothing of the probe's 256 px map")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    tower = build_efficientnet("lite0", tuple(int(t) for t in args.floor_taps.split(",")))
    inspector = Inspector("unified-lite0", class_name=NEW_PRODUCT)
    print("I-AUROC / P-AUROC, percent, full test splits; product = the shipped model's memory-bank path "
          f"(Eq. 2), floor = the issue's probe (taps {args.floor_taps}, {args.side} px)\n")
    print("| data | K | seed | product I / P | floor I / P |")
    print("| --- | ---: | ---: | ---: | ---: |")
    summary: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
    for data in args.data:
        if not data.is_dir():
            print(f"{data}: not found", file=sys.stderr)
            return 2
        train, test = mvtec_samples(data, "train"), mvtec_samples(data, "test")
        loaded = [load_sample(s) for s in test]
        images = [rgb for rgb, _ in loaded]
        labels = [s.label for s in test]
        masks = [cv2.resize(m.astype(np.uint8), (MAP_SIZE, MAP_SIZE), interpolation=cv2.INTER_NEAREST) > 0
                 for _, m in loaded]
        for k in args.shots:
            for seed in args.seeds:
                refs = [load_sample(s)[0] for s in choose_references(train, k, seed)]
                cells = []
                for scores, maps in (product_maps(inspector, refs, images),
                                     floor_maps(tower, refs, images, args.side, args.sigma)):
                    cells += [100 * auroc(labels, scores), 100 * pixel_auroc(masks, maps)]
                summary.setdefault((data.name, k), []).append(tuple(cells))
                print(f"| {data.name} | {k} | {seed} | {cells[0]:.1f} / {cells[1]:.1f} | "
                      f"{cells[2]:.1f} / {cells[3]:.1f} |", flush=True)
    if len(args.seeds) > 1:
        print("\nMedian over the seeds (min-max of I-AUROC):\n")
        print("| data | K | product I / P | floor I / P |")
        print("| --- | ---: | ---: | ---: |")
        for (name, k), rows in summary.items():
            med = [statistics.median(col) for col in zip(*rows, strict=True)]
            lo_p, hi_p = min(r[0] for r in rows), max(r[0] for r in rows)
            lo_f, hi_f = min(r[2] for r in rows), max(r[2] for r in rows)
            print(f"| {name} | {k} | {med[0]:.1f} ({lo_p:.1f}-{hi_p:.1f}) / {med[1]:.1f} | "
                  f"{med[2]:.1f} ({lo_f:.1f}-{hi_f:.1f}) / {med[3]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
