"""The good reference images a few-shot memory bank was built from, indexed by their F_img.

The memory bank (Eq. 2) pools the patches of every reference, so it cannot say which reference a
part looks most like. A `ReferenceSet` keeps one L2-normalised global embedding F_img per reference
(the image tower computes it anyway while the bank is built) with the file it came from, so the
inspector can name the nearest good reference (cosine similarity) for the operator to compare side
by side. It never changes a score or a verdict.

It is saved beside its bank as ``<bank stem>.references.safetensors`` and tied to that bank by a
build id that both carry in their meta: a bank built by an older version (no file) or a file left
from another build is simply not used.

File format (safetensors): tensor ``embeddings`` (R, C) float32 with unit rows; string metadata
``format``, ``format_version``, ``sources`` (JSON list of R strings: the path each reference was read
from, "" for an image given as an array) and ``meta`` (JSON object of strings).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from iadgpt.atomic import atomic_path
from iadgpt.errors import MemoryBankError

log = logging.getLogger(__name__)

FORMAT_NAME = "iadgpt-reference-set"
FORMAT_VERSION = 1
BUILD_KEY = "build"  # the meta key whose value ties a reference set to the bank built with it
SUFFIX = ".references.safetensors"
_REBUILD = "rebuild the memory bank to compare parts with their nearest good reference again"


@dataclass(frozen=True)
class NearestReference:
    """The good reference image most like an inspected part (by F_img)."""

    index: int  # which reference, in the order the bank was built from
    name: str  # its file name ("good_012.png"), or "reference 3" for an image given as an array
    path: str | None  # the file it was read from; None for an image given as an array
    similarity: float  # cosine similarity of the two global embeddings, in [-1, 1]


class ReferenceSet:
    """One unit-length F_img per good reference image, with where each came from."""

    def __init__(self, embeddings: Tensor, sources: Sequence[str | None], meta: Mapping[str, str] | None = None
                 ) -> None:
        if embeddings.dim() != 2 or embeddings.shape[0] < 1:
            raise ValueError(f"embeddings must be (R, C) with R >= 1, got shape {tuple(embeddings.shape)}")
        if len(sources) != embeddings.shape[0]:
            raise ValueError(f"{len(sources)} sources for {embeddings.shape[0]} embeddings")
        rows = F.normalize(embeddings.detach().float(), dim=-1).to("cpu").contiguous()  # (R, C)
        if not torch.isfinite(rows).all():
            raise MemoryBankError("reference embeddings contain NaN or infinite values; the encoder output is "
                                  "broken (check the model weights) - " + _REBUILD)
        self.embeddings = rows
        self.sources: tuple[str | None, ...] = tuple(s or None for s in sources)
        self.meta: dict[str, str] = dict(meta or {})

    def __len__(self) -> int:
        return len(self.sources)

    def __repr__(self) -> str:
        return f"ReferenceSet(references={len(self)}, dim={self.embeddings.shape[1]}, meta={self.meta})"

    def name(self, index: int) -> str:
        source = self.sources[index]
        return os.path.basename(source) if source else f"reference {index + 1}"

    def nearest(self, global_embedding: Tensor) -> NearestReference:
        """The reference whose F_img is closest in cosine to the part's: (C,) or (1, C)."""
        query = global_embedding.detach().float().reshape(-1).to("cpu")  # (C,)
        if query.shape[0] != self.embeddings.shape[1]:
            raise MemoryBankError(f"the image embedding has {query.shape[0]} values, but the reference set "
                                  f"was built with {self.embeddings.shape[1]}; {_REBUILD}")
        sims = self.embeddings @ F.normalize(query, dim=0)  # (R,)
        index = int(torch.argmax(sims))
        return NearestReference(index, self.name(index), self.sources[index], float(sims[index]))

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set to a safetensors file atomically (temp file + os.replace)."""
        target = Path(path)
        metadata = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                    "sources": json.dumps([s or "" for s in self.sources]),
                    "meta": json.dumps(self.meta, sort_keys=True)}
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(target) as tmp:
                save_file({"embeddings": self.embeddings}, str(tmp), metadata=metadata)
        except OSError as exc:
            raise MemoryBankError(f"could not write the reference index {target}: {exc.strerror or exc}; check "
                                  f"that the folder is writable and the disk is not full") from exc
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReferenceSet:
        """Read a set written by :meth:`save`."""
        source = Path(path)
        try:
            with safe_open(str(source), framework="pt", device="cpu") as fh:
                metadata = dict(fh.metadata() or {})
                tensors = {key: fh.get_tensor(key) for key in fh.keys()}
        except Exception as exc:  # safetensors raises its own error types and OSError
            raise MemoryBankError(f"reference index {source} is unreadable ({type(exc).__name__}: {exc}); "
                                  f"{_REBUILD}") from exc
        if metadata.get("format") != FORMAT_NAME or metadata.get("format_version") != str(FORMAT_VERSION):
            raise MemoryBankError(f"{source} is not a reference index this version reads (format "
                                  f"{metadata.get('format')!r} version {metadata.get('format_version')!r}); "
                                  f"{_REBUILD}")
        try:
            sources = json.loads(metadata["sources"])
            meta = json.loads(metadata.get("meta", "{}"))
        except (KeyError, ValueError) as exc:
            raise MemoryBankError(f"reference index {source} has damaged metadata ({exc}); {_REBUILD}") from exc
        embeddings = tensors.get("embeddings")
        valid = (isinstance(sources, list) and all(isinstance(s, str) for s in sources)
                 and isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
                 and sorted(tensors) == ["embeddings"] and embeddings is not None and embeddings.dim() == 2
                 and embeddings.dtype == torch.float32 and embeddings.shape[0] == len(sources) >= 1)
        if not valid:
            raise MemoryBankError(f"reference index {source} holds the wrong tensors or metadata; {_REBUILD}")
        return cls(embeddings, sources, meta)


def references_path(bank_path: str | os.PathLike[str]) -> Path:
    """Where the reference index of the memory bank at `bank_path` lives (beside it)."""
    bank = Path(bank_path)
    return bank.with_name(bank.name.removesuffix(".safetensors") + SUFFIX)


def load_beside(bank_path: str | os.PathLike[str], bank_meta: Mapping[str, str]) -> ReferenceSet | None:
    """The reference index saved with the bank at `bank_path`, or None when it has none: a bank from
    before reference indexes, or a file from another build of the bank (a save cut short). A file
    that is there but unreadable raises `MemoryBankError`."""
    path = references_path(bank_path)
    if not path.is_file():
        return None
    refs = ReferenceSet.load(path)
    build = bank_meta.get(BUILD_KEY)
    if not build or refs.meta.get(BUILD_KEY) != build:
        log.warning("reference index %s belongs to another build of the memory bank %s; not used",
                    path, bank_path)
        return None
    return refs
