"""Good "parts" of three textures for training the bank-map branch on more than one product.

The memory-bank map of a new product shows that product's normal variation. Trained on ball-screw
images alone, the LLM read a texture's normal map (faint responses everywhere) as a defect. Three
CC0 textures that scikit-image ships in its wheel (brick, grass, gravel: 512 x 512 grey images, see
`skimage.data`) are cut into non-overlapping crops, each crop a good part of its texture class, in
MVTec-AD layout (<class>/train/good/NNN.png). Each texture turned by 90 degrees is a class of its
own (`<name>_r90`): the CNN's features are not rotation-invariant, so it is another product to them.
Training shows them as bank maps only (`iadgpt train --bank-only DIR`), never to the decoder, and
they are not recorded as products.

The PNG files are read from the installed package's folder; scikit-image's code is not imported.

    python -m iadgpt.data.textures runs/textures
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np

from iadgpt.errors import DatasetError

TEXTURES = ("brick", "grass", "gravel")  # CC0 (skimage.data docstrings: CC0Textures, DeviantArt)
PACKAGE = "scikit-image==0.25.2"


def texture_file(name: str) -> Path:
    """The texture's PNG inside the installed scikit-image wheel."""
    spec = importlib.util.find_spec("skimage")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / "data" / f"{name}.png"
        if path.is_file():
            return path
    raise DatasetError(f"the {name} texture comes from the scikit-image wheel, which is not installed "
                       f"(or lacks skimage/data/{name}.png): run `pip install {PACKAGE}`")


def write_texture_dataset(out: Path, crop: int = 128) -> dict[str, int]:
    """Write every texture's non-overlapping crop x crop tiles as good images; returns counts per class."""
    counts = {}
    for name in TEXTURES:
        image = cv2.imread(str(texture_file(name)), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DatasetError(f"{texture_file(name)} could not be read as an image; reinstall {PACKAGE}")
        for cls, view in ((name, image), (f"{name}_r90", np.rot90(image))):
            folder = Path(out) / cls / "train" / "good"
            folder.mkdir(parents=True, exist_ok=True)
            tiles = [view[y:y + crop, x:x + crop] for y in range(0, view.shape[0] - crop + 1, crop)
                     for x in range(0, view.shape[1] - crop + 1, crop)]
            for i, tile in enumerate(tiles):
                cv2.imwrite(str(folder / f"{i:03d}.png"), np.ascontiguousarray(tile))
            counts[cls] = len(tiles)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--crop", type=int, default=128)
    args = ap.parse_args(argv)
    try:
        counts = write_texture_dataset(args.out, args.crop)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(", ".join(f"{n}: {c} good images" for n, c in counts.items()) + f" in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
