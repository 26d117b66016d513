"""Good "parts" of three textures for training the bank-map branch on more than one product.

The memory-bank map of a new product shows that product's normal variation. Trained on ball-screw
images alone, the LLM read a texture's normal map (faint responses everywhere) as a defect. Three
CC0 textures that scikit-image ships in its wheel (brick, grass, gravel: 512 x 512 grey images, see
`skimage.data`) are cut into non-overlapping crops, each crop a good part of its texture class, in
MVTec-AD layout (<class>/train/good/NNN.png). Each texture turned by 90 degrees is a class of its
own (`<name>_r90`): the CNN's features are not rotation-invariant, so it is another product to them.
With `--zooms 1 2`, each is also seen twice as close (`<name>_x2`, `<name>_x2_r90`: crop / 2 pixels
scaled up to crop, taken at the same places, so as many tiles): its features' scale is another again.
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


def write_texture_dataset(out: Path, crop: int = 128, zooms: tuple[int, ...] = (1,)) -> dict[str, int]:
    """Write every texture's crop x crop tiles as good images, per zoom and turn; returns counts per class.

    Zoom z takes crop / z pixels at each tile's corner and scales them up z times (bilinear)."""
    counts = {}
    for name in TEXTURES:
        image = cv2.imread(str(texture_file(name)), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DatasetError(f"{texture_file(name)} could not be read as an image; reinstall {PACKAGE}")
        for zoom in zooms:
            if zoom < 1 or crop % zoom:
                raise ValueError(f"zoom {zoom} must be a whole number >= 1 dividing the crop size {crop}")
            side = crop // zoom
            zoomed = name if zoom == 1 else f"{name}_x{zoom}"
            for cls, view in ((zoomed, image), (f"{zoomed}_r90", np.rot90(image))):
                folder = Path(out) / cls / "train" / "good"
                folder.mkdir(parents=True, exist_ok=True)
                tiles = [view[y:y + side, x:x + side] for y in range(0, view.shape[0] - crop + 1, crop)
                         for x in range(0, view.shape[1] - crop + 1, crop)]
                for i, tile in enumerate(tiles):
                    if zoom > 1:
                        tile = cv2.resize(np.ascontiguousarray(tile), (crop, crop), interpolation=cv2.INTER_LINEAR)
                    cv2.imwrite(str(folder / f"{i:03d}.png"), np.ascontiguousarray(tile))
                counts[cls] = len(tiles)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--zooms", type=int, nargs="+", default=[1], help="1: as photographed; 2: twice as close")
    args = ap.parse_args(argv)
    try:
        counts = write_texture_dataset(args.out, args.crop, tuple(args.zooms))
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(", ".join(f"{n}: {c} good images" for n, c in counts.items()) + f" in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
