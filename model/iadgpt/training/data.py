"""Training data: normal images with synthetic anomalies, their evidence lines and answers; one-class batches."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from iadgpt.config import Preset
from iadgpt.data.answers import AnswerTemplates
from iadgpt.data.datasets import Sample, load_sample
from iadgpt.data.synthesis import foreground_mask, synthesize
from iadgpt.evidence import mask_evidence
from iadgpt.preprocess import input_shape, normalise, resize_rgb
from iadgpt.prompt_bank import PromptBank, load_bank
from iadgpt.training.corpus import follow_ups, sample_evidence

FOREGROUND_IMAGES = 32  # normal images per object class used to estimate its foreground


class SyntheticAnomalyDataset(Dataset):
    """Normal training images; with probability anomaly_ratio one gets a synthetic anomaly.

    Item i of epoch e is a pure function of (seed, e, i): `np.random.default_rng([seed, e, i])`
    decides whether it is anomalous, picks the source image (another normal image of the class),
    draws the synthesis and the answer template. With `follow_up_ratio` > 0, that share of the items
    also asks one to three follow-up questions after the first answer (`corpus.follow_ups`), answered
    from the item's evidence line, and the last of those answers is the one trained on. With
    `type_banks`, a defective item's follow-ups read an evidence line whose types are named from one of
    those banks, drawn per item: an LLM trained on them (`--tune-llm`) must copy the type from the line,
    not learn the trained product's ("pitting or dent" said of a magnetic tile's blowhole).
    """

    def __init__(self, samples: Sequence[Sample], preset: Preset, templates: AnswerTemplates, *,
                 method: str = "nsa", anomaly_ratio: float = 0.5, seed: int = 0,
                 object_classes: Sequence[str] = (), patch_frac: tuple[float, float] = (0.05, 0.3),
                 banks: dict[str, PromptBank] | None = None, follow_up_ratio: float = 0.0,
                 type_banks: Sequence[PromptBank] = ()) -> None:
        self.samples = list(samples)
        self.type_banks = list(type_banks)
        self.follow_up_ratio = follow_up_ratio
        self.banks = banks or {}
        self.spec = preset.image_input
        self.templates = templates
        self.method = method
        self.patch_frac = patch_frac
        self.anomaly_ratio = anomaly_ratio
        self.seed = seed
        self.epoch = 0
        self._images: dict[int, np.ndarray] = {}  # resized normal images: decoding dominates otherwise
        self.by_class: dict[str, list[int]] = {}
        for i, s in enumerate(self.samples):
            self.by_class.setdefault(s.class_name, []).append(i)
        # A batch holds one class, so every image of a class gets the input shape of its first image.
        self.shapes = {name: input_shape(*load_sample(self.samples[ids[0]])[0].shape[:2], self.spec)
                       for name, ids in self.by_class.items()}
        self.foreground: dict[str, np.ndarray] = {}
        for name in object_classes:
            if name in self.by_class:
                images = [self.image(i) for i in self.by_class[name][:FOREGROUND_IMAGES]]
                self.foreground[name] = foreground_mask(images)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def image(self, index: int) -> np.ndarray:
        """The RGB image of sample `index` at its class's input shape (cached; callers must not modify it)."""
        if index not in self._images:
            sample = self.samples[index]
            self._images[index] = resize_rgb(load_sample(sample)[0], self.shapes[sample.class_name],
                                              self.spec.interpolation)
        return self._images[index]

    def normalise(self, rgb: np.ndarray) -> torch.Tensor:
        """RGB uint8 (H', W', 3) -> (3, H', W') float32, the same values as Inspector._preprocess."""
        return normalise(rgb, self.spec)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = self.image(index)
        mask = np.zeros(image.shape[:2], dtype=bool)
        if rng.random() < self.anomaly_ratio:
            peers = [i for i in self.by_class[sample.class_name] if i != index] or [index]
            source = self.image(peers[int(rng.integers(len(peers)))])
            image, mask = synthesize(image, source, rng, self.method,  # type: ignore[arg-type]
                                     foreground=self.foreground.get(sample.class_name),
                                     patch_frac=self.patch_frac)
        bank = self.banks.get(sample.class_name) or load_bank(sample.class_name)
        if mask.any():  # the evidence line a perfect map would give, and the answer that names its place
            evidence = mask_evidence(mask, bank.names)
            template = self.templates.abnormal[int(rng.integers(len(self.templates.abnormal)))]
            answer = template.format(position=evidence.position)
        else:  # a good part's map still has a strongest response somewhere: evidence as the corpus draws it
            evidence, _ = sample_evidence(rng, bank)
            answer = self.templates.normal
        turns: list[dict[str, str]] = []  # after the first question: its answer, follow-ups (none: first answer)
        if self.follow_up_ratio > 0 and rng.random() < self.follow_up_ratio:
            if self.type_banks and mask.any():
                evidence = mask_evidence(mask, self.type_banks[int(rng.integers(len(self.type_banks)))].names)
            turns, answer = follow_ups(rng, answer, bool(mask.any()), evidence)
        return {"image": self.normalise(image), "mask": torch.from_numpy(mask.astype(np.float32)),
                "answer": answer, "evidence": evidence.text(), "turns": turns, "class_name": sample.class_name,
                "index": index}


class ClassBatchSampler(Sampler[list[int]]):
    """Batches of one class each, in an order that is a pure function of (seed, stage, epoch).

    Within each class the indices are shuffled and cut into batches (the last one may be short);
    the batches of all classes are then shuffled together. `skip` drops the first batches of the
    next iteration (resuming inside an epoch). The `bank_only` classes (--bank-only) are read through
    memory-bank maps only, so stages 0 and 2 (the LM's and the decoder's) leave them out.
    """

    def __init__(self, by_class: dict[str, list[int]], batch_size: int, seed: int,
                 bank_only: frozenset[str] = frozenset()) -> None:
        self.by_class = {k: list(v) for k, v in sorted(by_class.items())}
        self.batch_size = batch_size
        self.seed = seed
        self.stage = 0
        self.epoch = 0
        self.skip = 0
        self.bank_only = bank_only

    def _classes(self) -> list[list[int]]:
        left_out = self.bank_only if self.stage in (0, 2) else frozenset()
        return [ids for name, ids in self.by_class.items() if name not in left_out]

    def set_epoch(self, epoch: int, stage: int | None = None) -> None:
        self.epoch = epoch
        if stage is not None:
            self.stage = stage

    def batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.stage * 10_007 + self.epoch)
        batches: list[list[int]] = []
        for indices in self._classes():
            order = [indices[i] for i in torch.randperm(len(indices), generator=g).tolist()]
            batches += [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        yield from self.batches()[skip:]

    def __len__(self) -> int:
        return sum(math.ceil(len(v) / self.batch_size) for v in self._classes())


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([it["image"] for it in items]),
            "mask": torch.stack([it["mask"] for it in items]),
            "answer": [it["answer"] for it in items],
            "evidence": [it["evidence"] for it in items],
            "turns": [it["turns"] for it in items],
            "class_name": [it["class_name"] for it in items],
            "index": torch.tensor([it["index"] for it in items])}
