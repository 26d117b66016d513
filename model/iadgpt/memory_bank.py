"""Few-shot memory bank of normal patch tokens (paper Eq. 2).

For every tapped encoder layer ``l`` the bank ``B^l`` holds L2-normalised patch tokens of reference
images of good parts. A query patch ``i`` scores

    M^l[i] = 1 - max_j cos(F^l[i], B^l[j])

so a patch that looks like some normal patch scores ~0 and an unseen structure scores high. The
caller (IADGPT.layer_maps) combines the per-layer maps; the inspector upsamples them.

All layers store the same patch locations in the same order: row ``j`` of every layer comes from
the same image patch, and :meth:`MemoryBank.subsample` keeps the same rows in every layer.

File format (safetensors): tensors ``layer_0 .. layer_{L-1}`` of shape (M, C_l), float32, and string
metadata ``format``, ``format_version``, ``layer_dims`` (JSON list), ``meta`` (JSON object).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from iadgpt.atomic import atomic_path
from iadgpt.errors import CancelledError, MemoryBankError

log = logging.getLogger(__name__)

FORMAT_NAME = "iadgpt-memory-bank"
FORMAT_VERSION = 1
DEFAULT_CHUNK = 4096
# Largest similarity block (query rows x bank rows) computed at once: 2**20 floats = 4 MiB. Blocks of
# 128 MiB were allocated, faulted in and freed for every block; 4 MiB ones are reused and stay near
# the CPU's caches (benchmarks/inference.py, few-shot, 1536 patches x 8192: anomaly map 101 -> 41 ms).
_MAX_SIM_ELEMENTS = 1 << 20
_PROJ_DIM = 128
BANK_STEEPNESS = 4.0  # exponent p of calibrate_bank_scores
_REBUILD = "rebuild the memory bank from the product's reference images of good parts"


class BankMaps(Protocol):
    """What IADGPT.layer_maps reads a memory bank through (a MemoryBank, or training's BatchBanks)."""

    def anomaly_scores(self, patch_tokens: Sequence[Tensor]) -> Tensor: ...


class MemoryBank:
    """Normalised patch tokens of good reference images, one float32 CPU tensor per tapped layer."""

    def __init__(self, layer_dims: Sequence[int], meta: Mapping[str, str] | None = None) -> None:
        dims = tuple(int(d) for d in layer_dims)
        if not dims or any(d < 1 for d in dims):
            raise ValueError(f"layer_dims must be a non-empty list of positive sizes, got {list(layer_dims)}")
        self._dims = dims
        self._meta = _check_meta(meta)
        # Per layer, a list of (M_k, C_l) chunks; consolidated lazily so repeated add() stays linear.
        self._chunks: list[list[Tensor]] = [[] for _ in dims]
        self._count = 0
        self._device_cache: tuple[torch.device, list[Tensor]] | None = None

    # ------------------------------------------------------------------ properties

    def __len__(self) -> int:
        """Number of stored patches (the same in every layer)."""
        return self._count

    @property
    def num_layers(self) -> int:
        return len(self._dims)

    @property
    def layer_dims(self) -> tuple[int, ...]:
        return self._dims

    @property
    def meta(self) -> dict[str, str]:
        return dict(self._meta)

    def __repr__(self) -> str:
        return f"MemoryBank(patches={self._count}, layer_dims={list(self._dims)}, meta={self._meta})"

    # ------------------------------------------------------------------ building

    def add(self, patch_tokens: Sequence[Tensor]) -> None:
        """Store the patch tokens of good reference images: one (B, N, C_l) tensor per layer."""
        batch, patches = self._check_tokens(patch_tokens, "reference")
        with torch.no_grad():
            for chunks, tokens in zip(self._chunks, patch_tokens, strict=True):
                flat = tokens.detach().reshape(batch * patches, tokens.shape[-1])  # (B*N, C)
                flat = F.normalize(flat.float(), dim=-1).to("cpu")  # (B*N, C), unit rows
                if not torch.isfinite(flat).all():
                    raise MemoryBankError(
                        "reference patch tokens contain NaN or infinite values; the encoder output is "
                        "broken (check the model weights and the input image) - the bank was not changed"
                    )
                chunks.append(flat)
        self._count += batch * patches
        self._device_cache = None

    def subsample(self, max_patches: int, seed: int = 0, *, progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> Tensor:
        """Shrink the bank to at most ``max_patches`` rows with a greedy k-center coreset.

        The same rows are kept in every layer; they are chosen on the concatenation of all layers'
        normalised tokens, in a seeded random projection to 128 dims (PatchCore style). Returns the
        kept row indices (sorted). A no-op when the bank is already small enough. ``progress(done,
        total)`` and ``should_stop()`` are passed to `greedy_coreset` (a stop leaves the bank as it was).
        """
        if max_patches < 1:
            raise ValueError(f"max_patches must be at least 1, got {max_patches}")
        total = self._count
        if total <= max_patches:
            return torch.arange(total)
        started = time.perf_counter()
        layers = self._stacked()
        keep = greedy_coreset(layers, max_patches, seed=seed, progress=progress, should_stop=should_stop)
        self._chunks = [[layer.index_select(0, keep)] for layer in layers]
        self._count = int(keep.numel())
        self._device_cache = None
        log.info(
            "memory bank coreset: %d -> %d patches in %.2f s",
            total,
            self._count,
            time.perf_counter() - started,
        )
        return keep

    # ------------------------------------------------------------------ scoring

    def score(self, patch_tokens: Sequence[Tensor], *, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
        """Per-layer anomaly maps (B, L, N): 1 - max cosine similarity to the bank, float32.

        Runs on the device of the query; the bank is moved there once and cached. Query rows are
        processed ``chunk_size`` at a time (and the bank in column blocks) so memory stays bounded.
        """
        if self._count == 0:
            raise MemoryBankError(
                "the memory bank is empty; build it from reference images of good parts first"
            )
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        batch, patches = self._check_tokens(patch_tokens, "query")
        device = patch_tokens[0].device
        bank = self._on_device(device)
        maps = []
        with torch.no_grad():
            for tokens, stored in zip(patch_tokens, bank, strict=True):
                query = tokens.detach().reshape(batch * patches, tokens.shape[-1])  # (B*N, C)
                query = F.normalize(query.float(), dim=-1)  # (B*N, C)
                best = _max_cosine(query, stored, chunk_size)  # (B*N,)
                maps.append((1.0 - best).clamp_(0.0, 2.0).reshape(batch, patches))  # (B, N)
        return torch.stack(maps, dim=1)  # (B, L, N)

    @property
    def normal_level(self) -> float | None:
        """The references' normal spread recorded at build time (meta ``normal_level``), if any."""
        level = float(self._meta.get("normal_level", 0) or 0)
        return level if level > 0 else None

    def anomaly_scores(self, patch_tokens: Sequence[Tensor]) -> Tensor:
        """Per-layer maps (B, L, N) on the decoder's [0, 1) scale: `score` calibrated by the bank's
        normal level (`calibrate_bank_scores`); raw distances when the bank records no level."""
        scores = self.score(patch_tokens)
        level = self.normal_level
        return calibrate_bank_scores(scores, level) if level is not None else scores

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bank to a safetensors file atomically (temp file + os.replace)."""
        target = Path(path)
        if self._count == 0:
            raise MemoryBankError(
                f"not saving memory bank {target}: it is empty; build it from reference images of good "
                "parts first"
            )
        tensors = {f"layer_{i}": layer.contiguous() for i, layer in enumerate(self._stacked())}
        metadata = {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "layer_dims": json.dumps(list(self._dims)),
            "meta": json.dumps(self._meta, sort_keys=True),
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(target) as tmp:
                save_file(tensors, str(tmp), metadata=metadata)
        except OSError as exc:
            raise MemoryBankError(
                f"could not write memory bank {target}: {exc.strerror or exc}; check that the folder is "
                "writable and the disk is not full"
            ) from exc
        log.info("saved memory bank %s (%d patches, %d layers)", target, self._count, self.num_layers)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], expect_meta: Mapping[str, str] | None = None) -> MemoryBank:
        """Read a bank written by :meth:`save`; check it against ``expect_meta`` (e.g. preset, model)."""
        source = Path(path)
        if not source.is_file():
            where = "is a folder, not a file" if source.is_dir() else "does not exist"
            raise MemoryBankError(f"memory bank file {source} {where}; {_REBUILD}")
        try:
            with safe_open(str(source), framework="pt", device="cpu") as fh:
                metadata = dict(fh.metadata() or {})
                tensors = {key: fh.get_tensor(key) for key in fh.keys()}
        except Exception as exc:  # safetensors raises its own error types and OSError
            raise MemoryBankError(
                f"memory bank file {source} is unreadable ({type(exc).__name__}: {exc}); it is truncated, "
                f"corrupt or not a memory bank; {_REBUILD}"
            ) from exc
        dims, meta = _parse_metadata(source, metadata)
        layers = _check_layers(source, tensors, dims)
        if expect_meta:
            for key, wanted in expect_meta.items():
                found = meta.get(key)
                if found != wanted:
                    raise MemoryBankError(
                        f"memory bank file {source} was built with {key} {found!r}, but {key} {wanted!r} "
                        f"is loaded now; {_REBUILD} with the current settings"
                    )
        bank = cls(dims, meta)
        bank._chunks = [[layer] for layer in layers]
        bank._count = int(layers[0].shape[0])
        log.info("loaded memory bank %s (%d patches, %d layers)", source, bank._count, bank.num_layers)
        return bank

    # ------------------------------------------------------------------ internals

    def _check_tokens(self, patch_tokens: Sequence[Tensor], what: str) -> tuple[int, int]:
        """Validate one (B, N, C_l) tensor per layer with a shared B and N; return (B, N)."""
        if len(patch_tokens) != self.num_layers:
            raise MemoryBankError(
                f"got {what} patch tokens for {len(patch_tokens)} layers, but the memory bank has "
                f"{self.num_layers} (layer dims {list(self._dims)}); the bank belongs to another model "
                f"setup - {_REBUILD} with the loaded model"
            )
        shapes = [tuple(t.shape) for t in patch_tokens]
        for layer, (shape, dim) in enumerate(zip(shapes, self._dims, strict=True)):
            if len(shape) != 3:
                raise MemoryBankError(
                    f"{what} patch tokens of layer {layer} have shape {shape}, expected (B, N, C); "
                    "pass the encoder's patch tokens without the class token"
                )
            if shape[2] != dim:
                raise MemoryBankError(
                    f"{what} patch tokens of layer {layer} have {shape[2]} channels, but the memory bank "
                    f"was built for {dim} (layer dims {list(self._dims)}); the bank belongs to another "
                    f"model - {_REBUILD} with the loaded model"
                )
        if len({s[:2] for s in shapes}) != 1:
            raise MemoryBankError(
                f"{what} patch tokens disagree on (batch, patches) across layers: {shapes}; every tapped "
                "layer must come from the same images at the same patch grid"
            )
        return shapes[0][0], shapes[0][1]

    def _stacked(self) -> list[Tensor]:
        """One (M, C_l) tensor per layer, consolidating pending chunks."""
        out = []
        for layer, chunks in enumerate(self._chunks):
            if not chunks:
                out.append(torch.empty(0, self._dims[layer]))  # (0, C)
                continue
            if len(chunks) > 1:
                chunks[:] = [torch.cat(chunks, dim=0)]  # (M, C)
            out.append(chunks[0])
        return out

    def _on_device(self, device: torch.device) -> list[Tensor]:
        if device.type == "cpu":
            return self._stacked()
        if self._device_cache is None or self._device_cache[0] != device:
            self._device_cache = (device, [layer.to(device) for layer in self._stacked()])
        return self._device_cache[1]


def calibrate_bank_scores(scores: Tensor, level: float, steepness: float = BANK_STEEPNESS) -> Tensor:
    """Memory-bank distances (1 - max cosine) -> [0, 1) on the scale the decoder's maps use.

    `level` is the upper end of normal variation: the largest distance at which a good image's
    patches lie from a bank of other good images (inspector.normal_level). A patch at that distance
    reads 0.5, half of it 1/17, twice it 16/17: r**p / (r**p + 1) with r = scores / level. Normal
    variation must read near 0, as the decoder's maps do on good parts, because the MMF and the LLM
    read both kinds of map alike. Monotonic, so the bank map's own ranking of patches is unchanged.
    """
    ratio = (scores / level).pow(steepness)
    return ratio / (ratio + 1.0)


def greedy_coreset(features: Sequence[Tensor], k: int, *, seed: int = 0, proj_dim: int = _PROJ_DIM,
                   progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> Tensor:
    """Indices (sorted, at most ``k``) of a greedy k-center coreset of the rows of ``features``.

    ``features`` are (M, C_l) tensors with the same rows; distances are taken on their
    concatenation, approximated in a seeded Gaussian random projection to ``proj_dim`` dims when
    the concatenation is wider. Starts at a seeded random row and repeatedly adds the row farthest
    from the selected set; stops early when every remaining row duplicates a selected one.
    ``progress(picked, k)`` is called about a hundred times on the way; ``should_stop()`` is checked
    as often, and a True raises `CancelledError`.
    """
    assert features, "greedy_coreset needs at least one feature tensor"
    total = int(features[0].shape[0])
    assert all(f.shape[0] == total for f in features), "all feature tensors must have the same rows"
    if total <= k:
        return torch.arange(total)
    gen = torch.Generator().manual_seed(seed)
    width = sum(int(f.shape[1]) for f in features)
    with torch.no_grad():
        if width <= proj_dim:
            points = torch.cat([f.float() for f in features], dim=1)  # (M, D)
        else:
            points = torch.zeros(total, proj_dim)  # (M, P)
            for f in features:
                proj = torch.randn(f.shape[1], proj_dim, generator=gen) / math.sqrt(proj_dim)  # (C, P)
                points.addmm_(f.float(), proj)  # (M, P)
        sq_norm = (points * points).sum(dim=1)  # (M,)
        tol = 1e-6 * (1.0 + float(sq_norm.max()))
        nearest = torch.full((total,), float("inf"))  # (M,) squared distance to the selected set
        picked: list[int] = []
        current = int(torch.randint(total, (1,), generator=gen))
        every = max(1, k // 100)
        while True:
            picked.append(current)
            if len(picked) == k:
                break
            if len(picked) % every == 0:
                if should_stop is not None and should_stop():
                    raise CancelledError("building the memory bank was cancelled; the previous bank is kept")
                if progress is not None:
                    progress(len(picked), k)
            # |x - c|^2 = |x|^2 - 2 x.c + |c|^2
            dist = torch.addmv(sq_norm, points, points[current], alpha=-2.0)  # (M,)
            dist.add_(sq_norm[current])
            torch.minimum(nearest, dist, out=nearest)
            nearest[current] = 0.0
            current = int(torch.argmax(nearest))
            if float(nearest[current]) <= tol:
                break
    return torch.tensor(sorted(picked), dtype=torch.long)


def _max_cosine(query: Tensor, bank: Tensor, chunk_size: int) -> Tensor:
    """Row-wise max of ``query @ bank.T`` for unit rows, in bounded blocks. (Q, C), (M, C) -> (Q,)."""
    rows = query.shape[0]
    best = torch.empty(rows, device=query.device)  # (Q,)
    step = max(1, min(chunk_size, rows))
    bank_step = max(1, _MAX_SIM_ELEMENTS // step)
    for start in range(0, rows, step):
        block = query[start : start + step]  # (q, C)
        top = None
        for b_start in range(0, bank.shape[0], bank_step):
            sim = block @ bank[b_start : b_start + bank_step].T  # (q, m)
            part = sim.amax(dim=1)  # (q,)
            top = part if top is None else torch.maximum(top, part)
        best[start : start + step] = top
    return best


def _check_meta(meta: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(meta or {})
    bad = [k for k, v in out.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"memory bank meta must map strings to strings; bad entries: {bad}")
    return out


def _parse_metadata(source: Path, metadata: Mapping[str, str]) -> tuple[list[int], dict[str, str]]:
    if metadata.get("format") != FORMAT_NAME:
        raise MemoryBankError(
            f"file {source} is a safetensors file but not an IAD-GPT memory bank (no '{FORMAT_NAME}' "
            f"format tag); {_REBUILD}"
        )
    try:
        version = int(metadata.get("format_version", ""))
        dims = json.loads(metadata["layer_dims"])
        meta = json.loads(metadata.get("meta", "{}"))
    except (ValueError, KeyError) as exc:
        raise MemoryBankError(f"memory bank file {source} has damaged metadata ({exc}); {_REBUILD}") from exc
    if version != FORMAT_VERSION:
        raise MemoryBankError(
            f"memory bank file {source} has format version {version}, but this version of IAD-GPT reads "
            f"version {FORMAT_VERSION}; {_REBUILD}"
        )
    dims_ok = isinstance(dims, list) and dims and all(isinstance(d, int) and d > 0 for d in dims)
    meta_ok = isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
    if not dims_ok or not meta_ok:
        raise MemoryBankError(f"memory bank file {source} has damaged metadata; {_REBUILD}")
    return dims, meta


def _check_layers(source: Path, tensors: Mapping[str, Tensor], dims: Sequence[int]) -> list[Tensor]:
    expected = [f"layer_{i}" for i in range(len(dims))]
    if sorted(tensors) != sorted(expected):
        raise MemoryBankError(
            f"memory bank file {source} holds tensors {sorted(tensors)}, expected {expected}; {_REBUILD}"
        )
    layers = [tensors[name] for name in expected]
    rows = {int(t.shape[0]) if t.dim() == 2 else -1 for t in layers}
    shapes_ok = all(
        t.dim() == 2 and t.shape[1] == d and t.dtype == torch.float32
        for t, d in zip(layers, dims, strict=True)
    )
    if not shapes_ok or len(rows) != 1 or rows == {0}:
        shapes = [(tuple(t.shape), str(t.dtype)) for t in layers]
        raise MemoryBankError(
            f"memory bank file {source} has tensors of the wrong shape or type {shapes} for layer dims "
            f"{list(dims)}; {_REBUILD}"
        )
    if not all(torch.isfinite(t).all() for t in layers):
        raise MemoryBankError(f"memory bank file {source} contains NaN or infinite values; {_REBUILD}")
    return layers
