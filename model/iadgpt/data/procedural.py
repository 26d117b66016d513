"""Procedural products: good "parts" of many made-up products for training the bank-map branch.

The memory-bank map of a new product shows that product's normal variation, and what the LLM
answers depends on how that map looks for good parts. Trained on ball-screw images and three
textures' tiles (iadgpt.data.textures), TGE, MMF and the LLM have seen the normal variation of
a handful of products only. This module makes more: each product is a family (a woven or knitted
surface, a grain such as brushed metal or wood, a cell pattern, a lattice of holes or dots, a single
object on a background, a smooth surface with a lighting gradient) with parameters drawn once per
product (scale, orientation, contrast, colour, aspect ratio), and its good parts differ as parts of
one product do: the pattern's phase and fine noise, a small shift of the object, the lighting.

Nothing here is anyone's photograph: the images are the project's own, drawn with numpy and
OpenCV from a seed, so they carry no licence of others. Written in MVTec-AD layout
(<class>/train/good/NNN.png) under class names `proc_<family>_<n>`; training shows them as bank
maps only (`iadgpt train --bank-only DIR`, with the textures in the same folder), never to the
decoder, and they are not recorded as products. Measured in decision 0017 and not in the recipe:
stage 3 with 18 of them beside the textures did not change the verdict on validation beyond
what another seed does.

    python -m iadgpt.data.procedural runs/textures --products 18 --images 12
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree

LONG_SIDE = 256
ASPECTS = (1.0, 1.0, 1.0, 1.5, 2.0)  # long / short side; most products are square, some elongated


def _noise(rng: np.random.Generator, shape: tuple[int, int], scale: float, stretch: float = 1.0,
           angle: float = 0.0) -> np.ndarray:
    """Smooth random field in [-1, 1]: Gaussian noise blurred at `scale` pixels, `stretch` times
    longer along `angle` (degrees) than across it."""
    h, w = shape
    pad = int(3 * scale * stretch) + 2
    field = rng.standard_normal((h + 2 * pad, w + 2 * pad)).astype(np.float32)
    sigma_along, sigma_across = max(scale * stretch, 0.5), max(scale, 0.5)
    size = int(2 * np.ceil(3 * max(sigma_along, sigma_across)) + 1)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - size // 2
    t = np.deg2rad(angle)
    u, v = xx * np.cos(t) + yy * np.sin(t), -xx * np.sin(t) + yy * np.cos(t)
    kernel = np.exp(-(u / sigma_along) ** 2 / 2 - (v / sigma_across) ** 2 / 2)
    field = cv2.filter2D(field, -1, kernel / kernel.sum())[pad:pad + h, pad:pad + w]
    return field / (np.abs(field).max() + 1e-6)


def _coords(shape: tuple[int, int], angle: float, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    xx, yy = xx + shift[0], yy + shift[1]
    t = np.deg2rad(angle)
    return xx * np.cos(t) + yy * np.sin(t), -xx * np.sin(t) + yy * np.cos(t)


def _weave(p: dict, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Two crossing thread gratings, each thread's brightness wavering along it."""
    shift = tuple(rng.uniform(0, p["period"], 2))
    u, v = _coords(shape, p["angle"] + rng.normal(0, 0.5), shift)
    warp = np.sin(2 * np.pi * u / p["period"])
    weft = np.sin(2 * np.pi * v / (p["period"] * p["ratio"]))
    over = (np.sin(np.pi * u / p["period"]) * np.sin(np.pi * v / (p["period"] * p["ratio"])) > 0)
    image = np.where(over, warp, weft) * 0.6 + 0.4 * _noise(rng, shape, p["period"] / 3)
    return image + p["fuzz"] * _noise(rng, shape, 1.0)


def _grain(p: dict, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Long streaks along one direction (brushed metal; with rings, wood)."""
    image = _noise(rng, shape, p["scale"], p["stretch"], p["angle"])
    if p["rings"]:
        u, v = _coords(shape, p["angle"], tuple(rng.uniform(-20, 20, 2)))
        image = image + 0.7 * np.sin(2 * np.pi * (v + 8 * image) / p["ring_period"])
    return image + p["fuzz"] * _noise(rng, shape, 1.0)


def _cells(p: dict, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Irregular cells with darker borders (leather, foam, stone tiles): the distance to the nearest
    seed point against the second nearest."""
    h, w = shape
    n = max(int(h * w / p["cell"] ** 2), 4)
    points = np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], axis=1).astype(np.float32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    two, nearest = cKDTree(points).query(np.stack([xx.ravel(), yy.ravel()], axis=1), k=2)  # (h*w, 2)
    edge = np.clip((two[:, 1] - two[:, 0]) / (p["cell"] * p["border"]), 0, 1).reshape(h, w)
    shade = rng.uniform(-0.3, 0.3, n).astype(np.float32)[nearest[:, 0]].reshape(h, w)
    return 2 * edge - 1 + shade + p["fuzz"] * _noise(rng, shape, 1.5)


def _lattice(p: dict, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A regular lattice of round holes or dots (perforated sheet, mesh, studded rubber)."""
    shift = tuple(rng.uniform(0, p["pitch"], 2))
    u, v = _coords(shape, p["angle"] + rng.normal(0, 0.3), shift)
    if p["stagger"]:
        u = u + (np.floor(v / p["pitch"]) % 2) * p["pitch"] / 2
    du = (u % p["pitch"]) - p["pitch"] / 2
    dv = (v % p["pitch"]) - p["pitch"] / 2
    r = np.sqrt(du ** 2 + dv ** 2) / (p["pitch"] * p["radius"])
    dots = 1.0 / (1.0 + np.exp((r - 1.0) * 12.0))
    image = (1 - 2 * dots) * p["sign"] + 0.25 * _noise(rng, shape, p["pitch"])
    return image + p["fuzz"] * _noise(rng, shape, 1.0)


def _object(p: dict, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """One part in front of a plain background: a disc, ring or rounded block, shaded, moved and
    turned a little from image to image, as a part on a fixture is."""
    h, w = shape
    cx = w / 2 + rng.normal(0, 0.02 * w)
    cy = h / 2 + rng.normal(0, 0.02 * h)
    u, v = _coords(shape, p["angle"] + rng.normal(0, 2.0), (-cx, -cy))
    a, b = p["size"] * w / 2, p["size"] * h / 2 * p["squeeze"]
    if p["shape"] == "block":
        q = np.maximum(np.abs(u) / a, np.abs(v) / b)
    else:
        q = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    inside = 1.0 / (1.0 + np.exp((q - 1.0) * 40.0))
    if p["shape"] == "ring":
        inside = inside * (1.0 / (1.0 + np.exp((p["hole"] - q) * 40.0)))
    light = 0.4 * (u * np.cos(p["light"]) + v * np.sin(p["light"])) / max(a, b)
    part = p["part"] + light + 0.15 * _noise(rng, shape, 3.0) + p["fuzz"] * _noise(rng, shape, 1.0)
    background = p["back"] + 0.1 * _noise(rng, shape, 20.0)
    return inside * part + (1 - inside) * background


def _smooth(p: dict, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A plain surface (painted, moulded, ground) under a lighting gradient, with fine grain."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    t = p["angle"] + rng.normal(0, 10)
    gradient = (xx / w - 0.5) * np.cos(np.deg2rad(t)) + (yy / h - 0.5) * np.sin(np.deg2rad(t))
    return p["tilt"] * gradient * 2 + 0.3 * _noise(rng, shape, p["scale"]) + p["fuzz"] * _noise(rng, shape, 1.0)


FAMILIES: dict[str, tuple[Callable[[np.random.Generator], dict], Callable]] = {
    "weave": (lambda r: {"period": r.uniform(5, 16), "ratio": r.uniform(0.8, 1.25), "angle": r.uniform(0, 90),
                         "fuzz": r.uniform(0.05, 0.3)}, _weave),
    "grain": (lambda r: {"scale": r.uniform(1, 3), "stretch": r.uniform(4, 15), "angle": r.uniform(0, 180),
                         "rings": bool(r.random() < 0.4), "ring_period": r.uniform(8, 24),
                         "fuzz": r.uniform(0.05, 0.3)}, _grain),
    "cells": (lambda r: {"cell": r.uniform(12, 40), "border": r.uniform(0.05, 0.2), "fuzz": r.uniform(0.05, 0.3)},
              _cells),
    "lattice": (lambda r: {"pitch": r.uniform(10, 32), "radius": r.uniform(0.15, 0.35), "angle": r.uniform(0, 90),
                           "stagger": bool(r.random() < 0.5), "sign": float(r.choice([-1.0, 1.0])),
                           "fuzz": r.uniform(0.05, 0.25)}, _lattice),
    "object": (lambda r: {"shape": str(r.choice(["disc", "ring", "block"])), "size": r.uniform(0.5, 0.8),
                          "squeeze": r.uniform(0.8, 1.0), "hole": r.uniform(0.3, 0.6), "angle": r.uniform(0, 90),
                          "light": r.uniform(0, 2 * np.pi), "part": r.uniform(-0.2, 0.8),
                          "back": r.uniform(-1.0, -0.4), "fuzz": r.uniform(0.03, 0.15)}, _object),
    "smooth": (lambda r: {"tilt": r.uniform(0.2, 0.8), "angle": r.uniform(0, 360), "scale": r.uniform(8, 30),
                          "fuzz": r.uniform(0.05, 0.25)}, _smooth),
}


def product_params(family: str, rng: np.random.Generator) -> dict:
    """One product's parameters: its family's, and how it looks (size, contrast, colour)."""
    draw, _ = FAMILIES[family]
    params = draw(rng)
    aspect = float(rng.choice(ASPECTS)) if family != "object" else 1.0
    long_h = bool(rng.random() < 0.5)
    short = int(round(LONG_SIDE / aspect))
    params["shape_hw"] = (LONG_SIDE, short) if long_h else (short, LONG_SIDE)
    params["contrast"] = float(rng.uniform(0.15, 0.45))
    params["mean"] = float(rng.uniform(0.3, 0.7))
    params["colour"] = rng.uniform(0.6, 1.4, 3) if rng.random() < 0.5 else np.ones(3)
    return params


def good_part(family: str, params: dict, rng: np.random.Generator) -> np.ndarray:
    """One good part of the product (H, W, 3) uint8 BGR."""
    _, draw = FAMILIES[family]
    field = draw(params, rng, params["shape_hw"]).astype(np.float32)
    field = field / (np.percentile(np.abs(field), 99) + 1e-6)
    brightness = params["mean"] * (1 + rng.normal(0, 0.03))  # the lighting varies from part to part
    grey = np.clip(brightness + params["contrast"] * field, 0, 1)
    rgb = np.clip(grey[..., None] * params["colour"][None, None, :], 0, 1)
    return (rgb * 255 + 0.5).astype(np.uint8)


def write_products(out: Path, products: int = 18, images: int = 12, seed: int = 0) -> dict[str, int]:
    """Write `products` procedural products (the families in turn) with `images` good parts each, in
    MVTec-AD layout under `out`; returns the good images per class. A pure function of the seed."""
    if images < 4:
        raise ValueError(f"a product needs at least 4 good images (two disjoint training banks), not {images}")
    counts = {}
    names = sorted(FAMILIES)
    for k in range(products):
        family = names[k % len(names)]
        rng = np.random.default_rng([seed, 5381, k])
        params = product_params(family, rng)
        cls = f"proc_{family}_{k // len(names)}"
        folder = Path(out) / cls / "train" / "good"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(images):
            cv2.imwrite(str(folder / f"{i:03d}.png"), good_part(family, params, rng))
        counts[cls] = images
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--products", type=int, default=18, help="how many products (the six families in turn)")
    ap.add_argument("--images", type=int, default=12, help="good images per product (at least 4)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        counts = write_products(args.out, args.products, args.images, args.seed)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(counts)} procedural products, {sum(counts.values())} good images in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
