"""Memory banks for training that never score an image against a bank holding it.

At inspection the memory bank is built from reference images and scores *other* images, so a good
part's map shows the normal spread between parts. A training image scored against a bank that holds
it matches itself everywhere and reads 0: a map no good part ever gives at inspection, which taught
the LLM that anything above 0 is a defect. So each class gets two banks from disjoint sets of its
good images, and every image is scored by a bank it is not in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from iadgpt.errors import ConfigError
from iadgpt.memory_bank import MemoryBank


class LeaveOutBanks:
    """Two memory banks of one class, each with the dataset indices of the images it holds."""

    def __init__(self, first: tuple[MemoryBank, frozenset[int]], second: tuple[MemoryBank, frozenset[int]]) -> None:
        if first[1] & second[1]:
            raise ValueError("the two banks must hold disjoint images")
        self.banks = (first, second)

    @classmethod
    def build(cls, ids: Sequence[int], shots: int, bank_of: Callable[[Sequence[int]], MemoryBank],
              class_name: str) -> LeaveOutBanks:
        """Banks of up to `shots` images each from the class's good images `ids` (dataset indices);
        `bank_of(indices)` builds a calibrated bank from the images at those indices."""
        n = min(shots, len(ids) // 2)
        if n < 2:
            raise ConfigError(f"--bank-maps needs at least 4 good images of class '{class_name}' (two "
                              f"memory banks of two or more), it has {len(ids)}")
        a, b = list(ids[:n]), list(ids[n:2 * n])
        return cls((bank_of(a), frozenset(a)), (bank_of(b), frozenset(b)))

    def for_items(self, indices: Sequence[int]) -> BatchBanks:
        """The bank each image of a batch is scored by: the first bank, or the second for its own images."""
        (first, held), (second, _) = self.banks
        return BatchBanks([second if int(i) in held else first for i in indices])


class BatchBanks:
    """A memory bank per image of a batch, read as one bank by IADGPT.layer_maps."""

    def __init__(self, per_item: list[MemoryBank]) -> None:
        self.per_item = per_item

    def anomaly_scores(self, patch_tokens: Sequence[Tensor]) -> Tensor:
        """(B, L, N) calibrated maps, each image's from its own bank."""
        if len(self.per_item) != patch_tokens[0].shape[0]:
            raise ValueError(f"{len(self.per_item)} banks for a batch of {patch_tokens[0].shape[0]} images")
        out: list[Tensor | None] = [None] * len(self.per_item)
        for bank in {id(b): b for b in self.per_item}.values():
            rows = [i for i, b in enumerate(self.per_item) if b is bank]
            scores = bank.anomaly_scores([t[rows] for t in patch_tokens])  # (len(rows), L, N)
            for k, i in enumerate(rows):
                out[i] = scores[k]
        return torch.stack(out)  # type: ignore[arg-type]
