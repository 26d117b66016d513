"""What the anomaly map shows, in words the LLM reads and the screen shows alike.

The inspector finds the map's regions (position.labelled_regions); from the same regions come the
Position row on the screen, and an evidence line placed in the inspection prompt:

    Map evidence: strongest response at the top left; size: small, 0.6 % of the image; regions: 1;
    shape: thin line; likely type: crack.

The LLM is trained (training/corpus.py) to decide Yes/No from the image embeddings (the evidence
line is there for good and defective parts alike, so it cannot answer from it), and to take the
position, size, count and type of its answers from the evidence line. So the answer, the chat and
the Position row name the same place; nothing is pasted over the model's output.

Defect types come from the strongest region's shape, not from image-text similarity (the built-in
CNN tower has no text tower): a thin line, a compact spot, a wide patch or a missing piece, matched
by keywords to the product's prompt-bank names. A type is named only when the shape is clear and a
bank name matches that family; otherwise the type is "unclear".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from iadgpt.position import Region, labelled_regions, positions_phrase

# Shape families and the words in prompt-bank names that belong to each.
FAMILIES: dict[str, tuple[str, ...]] = {
    "line": ("crack", "scratch", "line", "fray", "thread", "cut", "fold", "wrinkle", "split", "fissure",
             "bent", "crease"),
    "spot": ("hole", "pit", "pore", "blowhole", "spot", "dot", "dent", "bubble", "poke", "speck", "squeeze",
             "stain", "pitting"),
    "patch": ("uneven", "stain", "discolor", "colour", "color", "contamination", "glue", "oil", "rough",
              "liquid", "print", "burn", "corrosion", "wear", "faulty"),
    "missing": ("break", "broken", "missing", "chip", "cut", "damage"),
}
SHAPE_WORDS = {"line": "thin line", "spot": "compact spot", "patch": "wide patch", "missing": "missing piece"}
SIZE_WORDS = ("tiny", "small", "medium", "large")


@dataclass(frozen=True)
class Evidence:
    """The map's regions, summarised: what the evidence line says."""

    position: str  # positions_phrase of the strongest regions (the Position row)
    count: int  # anomalous regions found
    area_fraction: float  # their area / the image's
    shape: str | None  # a SHAPE_WORDS key, or None when unclear
    types: tuple[str, ...]  # prompt-bank names of that shape family; empty = type unclear

    @property
    def size(self) -> str:
        return size_word(self.area_fraction)

    @property
    def type_phrase(self) -> str:
        return " or ".join(self.types) if self.types else "unclear"

    @property
    def size_phrase(self) -> str:
        """ "small, 1.0 % of the image": what follows "size: " in the evidence line and the answers."""
        return f"{self.size}, {100 * self.area_fraction:.1f} % of the image"

    def text(self) -> str:
        # The place is followed by the size, in the evidence line and in the answers that give both
        # ("Measured at the top left; size: small, ..."): the small LLM goes on copying a span it has
        # started to copy after "at the", while a value after a word alone ("size: ") it did not copy
        # (decision 0009, "Sizes").
        shape = SHAPE_WORDS[self.shape] if self.shape else "unclear"
        return (f"Map evidence: strongest response at the {self.position}; size: {self.size_phrase}; "
                f"regions: {self.count}; shape: {shape}; likely type: {self.type_phrase}.")


def size_word(area_fraction: float) -> str:
    if area_fraction < 0.005:
        return "tiny"
    if area_fraction < 0.02:
        return "small"
    if area_fraction < 0.08:
        return "medium"
    return "large"


def region_shape(binary: np.ndarray, touches_border: bool) -> str | None:
    """The shape family of one region (bool mask), None when it is not clearly one."""
    ys, xs = np.nonzero(binary)
    if len(ys) < 3:
        return "spot"
    cov = np.cov(np.stack([xs, ys]).astype(np.float64))
    eig = np.sort(np.linalg.eigvalsh(cov))  # minor, major variance
    elongation = float(np.sqrt(max(eig[1], 1e-9) / max(eig[0], 1e-9)))
    fraction = binary.mean()
    if elongation >= 3.0:
        return "line"
    if touches_border and fraction >= 0.02:
        return "missing"
    if elongation < 2.0 and fraction < 0.015:
        return "spot"
    if fraction >= 0.06 and elongation < 2.5:
        return "patch"
    return None


def bank_types(shape: str | None, names: Sequence[str]) -> tuple[str, ...]:
    """Prompt-bank names of the shape's family (at most two, bank order)."""
    if shape is None:
        return ()
    words = FAMILIES[shape]
    return tuple(n for n in names if any(w in n.lower() for w in words))[:2]


def evidence_from_regions(regions: Sequence[Region], binary: np.ndarray | None, shape_hw: tuple[int, int],
                          names: Sequence[str]) -> Evidence:
    """Evidence of the given regions (strongest first) on a map of shape_hw; `binary` is the strongest
    region's pixels (for its shape), None when there is no region."""
    h, w = shape_hw
    if not regions:
        return Evidence("center", 0, 0.0, None, ())
    position = positions_phrase([r.position for r in regions[:3]])
    area = sum(r.area for r in regions) / float(h * w)
    shape = None
    if binary is not None:
        x, y, bw, bh = regions[0].bbox
        border = x <= 1 or y <= 1 or x + bw >= w - 1 or y + bh >= h - 1
        shape = region_shape(binary, border)
    return Evidence(position, len(regions), area, shape, bank_types(shape, names))


def map_evidence(anomaly_map: np.ndarray, names: Sequence[str]) -> tuple[Evidence, list[Region]]:
    """Evidence and regions of an anomaly map (H, W) in [0, 1]."""
    regions, strongest = labelled_regions(anomaly_map)
    return evidence_from_regions(regions, strongest, anomaly_map.shape, names), regions


def mask_evidence(mask: np.ndarray, names: Sequence[str]) -> Evidence:
    """Evidence of a ground-truth or synthetic mask (H, W) bool: what a perfect map would show."""
    return map_evidence(mask.astype(np.float32), names)[0]
