"""Inspector: what runs the model. Loading, device and precision, pre/post-processing, chat.

`Inspector.inspect(image)` returns a plain `InspectionResult` (numbers, strings, a numpy map): the
desktop app and the command line use nothing else.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from iadgpt.builder import build_model, preset_dtype, vision_module
from iadgpt.config import Preset, load_preset, with_overrides
from iadgpt.cpu_threads import is_small, one_thread_if
from iadgpt.encoders import VisualFeatures
from iadgpt.errors import CancelledError, WeightsError
from iadgpt.evidence import Evidence, map_evidence
from iadgpt.imageio import DEFAULT_MAX_PIXELS, load_image, resize_map
from iadgpt.llm import inspection_messages, question_text, user_text
from iadgpt.memory_bank import MemoryBank
from iadgpt.model import TRAINABLE_PARTS
from iadgpt.precision import pick_device
from iadgpt.preprocess import preprocess
from iadgpt.prompt_bank import PromptBank, default_bank_dir, load_bank
from iadgpt.prompts import TextPrompts, build_text_prompts, defect_type_probabilities
from iadgpt.references import BUILD_KEY, NearestReference, ReferenceSet
from iadgpt.tiny import tokenizer_fingerprint
from iadgpt.weights import load_trainable

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | np.ndarray
SHIPPED_PRESETS = ("unified-lite0",)  # presets whose trained weights ship in resources/models/<preset>


def shipped_weights(preset_name: str) -> Path | None:
    """resources/models/<preset> (honours $IADGPT_RESOURCES) when that preset's weights ship and exist."""
    if preset_name not in SHIPPED_PRESETS:
        return None
    folder = default_bank_dir().parent / "models" / preset_name
    return folder if (folder / "manifest.json").is_file() else None


@dataclass
class InspectionResult:
    """One inspected image, as plain data that can cross threads and be stored."""

    image: str | None  # the source path, when the image came from a file
    image_size: tuple[int, int]  # (H, W)
    class_name: str
    score: float  # max of the smoothed anomaly map
    score_top1: float  # mean of its top 1 %
    verdict: str  # "defective" or "good", from the LLM's first answer token
    p_yes: float
    answer: str
    position: str | None  # 3x3-grid phrase of the anomaly regions, when defective
    regions: list[dict]
    defect_types: list[tuple[str, float]]
    anomaly_map: np.ndarray = field(repr=False)  # (H, W) float32 in [0, 1]
    mode: str = "zero-shot"  # "zero-shot", "few-shot", or "untrained"
    evidence: Evidence | None = None  # what the map shows (the evidence line the LLM read)
    model_id: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    nearest_reference: NearestReference | None = None  # few-shot: the good reference most like this part

    @property
    def latency_ms(self) -> float:
        return sum(self.timings_ms.values())


def normal_level(layer_dims: list[int], per_image: list[list[torch.Tensor]], max_images: int = 8) -> float | None:
    """The upper end of normal variation: how far a good image's patches lie from a bank of *other*
    good images, the largest value of the leave-one-image-out memory-bank map, taken over the
    left-out images (at most `max_images`) as `upper_level` does. None with a single reference
    (nothing to leave out; see single_reference_level)."""
    if len(per_image) < 2:
        return None
    levels = []
    for i in range(min(len(per_image), max_images)):
        others = MemoryBank(layer_dims)
        for j, tokens in enumerate(per_image):
            if j != i:
                others.add(tokens)
        levels.append(map_max(others, per_image[i]))
    return upper_level(levels)


def single_reference_level(layer_dims: list[int], reference: list[torch.Tensor],
                           views: list[list[torch.Tensor]]) -> float | None:
    """normal_level for a bank of ONE reference: how far slightly moved views of it (a crop shifted and
    rescaled by a few percent: the pose changes a line sees) lie from it, their largest map value."""
    if not views:
        return None
    bank = MemoryBank(layer_dims)
    bank.add(reference)
    return upper_level([map_max(bank, v) for v in views])


def map_max(bank: MemoryBank, tokens: list[torch.Tensor]) -> float:
    """The largest value of one image's raw memory-bank map, layers averaged (before calibration)."""
    return float(bank.score(tokens).mean(dim=1).float().max())


def upper_level(maxima: list[float]) -> float:
    """The largest of the good images' map maxima, at most twice their median.

    The largest, because a good part at the edge of normal variation must still read below 0.5 after
    calibration (with the median, half of the held-out good images of train/ read above it and the
    LLM answered "Yes" for 83 % of them on bsdata and for all on magnetic_tile, 4-shot validation).
    At most twice the median, so one odd reference (a defective part added by mistake) cannot raise
    the level until real defects read as normal."""
    return max(min(max(maxima), 2.0 * float(np.median(maxima))), 1e-6)


def moved_views(rgb: np.ndarray, count: int = 2, crop: float = 0.92, seed: int = 0) -> list[np.ndarray]:
    """`count` crops of `crop` of the image's side at seeded offsets, resized back to the image's size."""
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    ch, cw = max(8, int(h * crop)), max(8, int(w * crop))
    out = []
    for _ in range(count):
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(cv2.resize(rgb[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR))
    return out


def bank_from_tokens(layer_dims: list[int], per_image: list[list[torch.Tensor]], meta: dict[str, str],
                     max_patches: int, level: float | None = None, *,
                     progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> MemoryBank:
    """A calibrated memory bank (Eq. 2) from the patch tokens of good reference images; `level`
    overrides the leave-one-out normal level (needed for a single reference). `progress` and
    `should_stop` reach the coreset (`MemoryBank.subsample`)."""
    meta = dict(meta)
    if level is None:
        level = normal_level(layer_dims, per_image)
    if level is not None:
        meta["normal_level"] = f"{level:.6g}"
    bank = MemoryBank(layer_dims, meta=meta)
    for tokens in per_image:
        bank.add(tokens)
    bank.subsample(max_patches, progress=progress, should_stop=should_stop)
    return bank


class Inspector:
    """Loads a preset on a device and inspects images of one product class at a time."""

    def __init__(self, preset: str | Preset = "tiny-test", *, device: str = "auto", precision: str = "auto",
                 weights: str | os.PathLike | None = None, llm_path: str | None = None,
                 clip_weights: str | None = None, class_name: str = "generic",
                 prompt_bank: PromptBank | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.preset = load_preset(preset) if isinstance(preset, str) else preset
        self.preset = with_overrides(self.preset, llm_path=llm_path, clip_weights=clip_weights)
        self.device = pick_device(device)
        self.dtype = preset_dtype(self.preset, precision, self.device)
        self.max_pixels = max_pixels
        started = time.perf_counter()
        self.model, self.llm = build_model(self.preset, self.device, self.dtype)
        self.trained = False
        self.weights_manifest: dict | None = None
        self.weights_source: str | None = None
        if weights is None:
            weights = shipped_weights(self.preset.name)  # the built-in model
        if weights is not None:
            self.load_weights(weights)
        self.model.to(self.device, self.dtype).eval()
        self._small_heads = is_small(self.model.tge, self.model.mmf)  # run on one CPU thread (decision 0012)
        self.memory_bank: MemoryBank | None = None
        self.references: ReferenceSet | None = None  # the bank's reference images by F_img, when known
        # image embeddings and the map's own evidence line (None: not worked out, a shown map was read)
        self._embed_cache: OrderedDict[str, tuple[torch.Tensor, str | None]] = OrderedDict()
        self.set_product(class_name, prompt_bank)
        log.info("inspector ready: preset %s on %s/%s in %.1f s", self.preset.name, self.device,
                 self.dtype, time.perf_counter() - started)

    # -- loading -----------------------------------------------------------------------------
    def load_weights(self, folder: str | os.PathLike) -> None:
        """Load trained decoder, TGE and MMF weights (safetensors + manifest) for this preset.

        A folder trained from scratch (stage 0, e.g. the demo) also holds the image tower ("vision")
        and the LLM ("llm"); they replace the preset's random ones.
        """
        manifest, parts = load_trainable(folder, expect_preset=self.preset.name)
        if "llm" in parts:
            expected = manifest.get("extra", {}).get("tokenizer")
            if expected and expected != tokenizer_fingerprint(self.llm.tokenizer):
                raise WeightsError(f"the LLM in {folder} was trained with another tokenizer than preset "
                                   f"'{self.preset.name}' builds; use the preset the weights were trained with")
        towers = {"vision": vision_module(self.model), "llm": self.llm.model}
        for name, module in towers.items():
            if name in parts and module is None:
                raise WeightsError(f"{folder} holds an image tower ('vision'), but preset '{self.preset.name}' "
                                   f"uses a pretrained one; use weights trained for this preset")
            if name in parts:
                try:
                    module.load_state_dict(parts[name], strict=True)
                except RuntimeError as exc:
                    raise WeightsError(f"{Path(folder) / (name + '.safetensors')} does not fit preset "
                                       f"'{self.preset.name}': {str(exc).splitlines()[0]}; use weights trained "
                                       f"for this preset") from exc
        for name in TRAINABLE_PARTS:
            if name not in parts:
                raise WeightsError(f"weights folder {folder} has no '{name}' part; train all stages "
                                   f"or point Settings > Model at a complete weights folder")
            try:
                getattr(self.model, name).load_state_dict(parts[name], strict=True)
            except RuntimeError as exc:
                raise WeightsError(f"{Path(folder) / (name + '.safetensors')} does not fit preset "
                                   f"'{self.preset.name}': {str(exc).splitlines()[0]}; use weights trained "
                                   f"for this preset") from exc
        self.model.to(self.device, self.dtype)
        self.trained = True
        self.weights_manifest = manifest
        self.weights_source = str(folder)

    @property
    def model_id(self) -> str:
        if self.weights_manifest:
            return f"{self.preset.name}@{self.weights_manifest.get('created', 'trained')}"
        return f"{self.preset.name}@untrained"

    @property
    def mode(self) -> str:
        if self.memory_bank is not None:
            return "few-shot"
        return "zero-shot" if self.trained else "untrained"

    # -- product -----------------------------------------------------------------------------
    def set_product(self, class_name: str, prompt_bank: PromptBank | None = None) -> None:
        """Switch the class the prompts speak about (T_win, T_apg); clears cached chat images."""
        self.bank = prompt_bank or load_bank(class_name)
        self.class_name = self.bank.class_name if prompt_bank else class_name
        self.prompts: TextPrompts = build_text_prompts(self.model.towers, self.bank).to(self.device, self.dtype)
        self._embed_cache.clear()

    def memory_bank_meta(self) -> dict[str, str]:
        return {"preset": self.preset.name, "clip": self.preset.base_model_ids()["clip"]}

    def build_memory_bank(self, references: Iterable[ImageInput], *,
                          progress: Callable[[int, int], None] | None = None,
                          should_stop: Callable[[], bool] = lambda: False,
                          select_progress: Callable[[int, int], None] | None = None) -> MemoryBank:
        """Few-shot mode (Eq. 2): a memory bank from images of good parts, set on this inspector.

        ``progress`` counts the images read, ``select_progress`` the coreset's patches chosen (the
        long phase of a large bank); ``should_stop`` is checked in both."""
        references = list(references)
        per_image: list[list[torch.Tensor]] = []
        global_embeddings: list[torch.Tensor] = []  # F_img per reference, for the nearest reference
        level = None
        dims = self.model.towers.layer_dims
        for i, ref in enumerate(references):
            if should_stop():
                raise CancelledError("building the memory bank was cancelled; the previous bank is kept")
            rgb = load_image(ref, max_pixels=self.max_pixels)
            features = self._encode(rgb)
            per_image.append(features.patch_tokens)
            global_embeddings.append(features.global_embedding[0])  # (C,)
            if len(references) == 1:  # nothing to leave out: calibrate on moved views of the one image
                views = [self._encode(v).patch_tokens for v in moved_views(rgb)]
                level = single_reference_level(dims, per_image[0], views)
            if progress:
                progress(i + 1, len(references))
        meta = {**self.memory_bank_meta(), BUILD_KEY: secrets.token_hex(8)}  # ties the bank to its references
        bank = bank_from_tokens(dims, per_image, meta, self.preset.inference.max_memory_patches,
                                level=level, progress=select_progress, should_stop=should_stop)
        sources = [None if isinstance(ref, np.ndarray) else str(ref) for ref in references]
        self.set_memory_bank(bank, ReferenceSet(torch.stack(global_embeddings), sources, meta))
        return bank

    def set_memory_bank(self, bank: MemoryBank | None, references: ReferenceSet | None = None) -> None:
        """Use `bank` (None: no few-shot); `references` name the nearest good reference of each part."""
        self.memory_bank = bank
        self.references = references if bank is not None else None
        self._embed_cache.clear()

    # -- inspection --------------------------------------------------------------------------
    def _preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        return preprocess(rgb, self.preset.image_input, self.device, self.dtype)  # (1, 3, H', W')

    @torch.no_grad()
    def _encode(self, rgb: np.ndarray) -> VisualFeatures:
        return self.model.towers.encode_image(self._preprocess(rgb))

    def _heads_threads(self):
        return one_thread_if(self._small_heads, self.device)

    def _conversation(self, evidence: str | None = None) -> list[dict[str, str]]:
        return inspection_messages(self.preset.llm.system_prompt, self.class_name, evidence)

    @property
    def use_decoder(self) -> bool:
        """The decoder's map (Eq. 1) serves products the weights were trained on (and every product when
        there is no memory bank); a new product is served by its memory bank (Eq. 2) alone."""
        if self.memory_bank is None:
            return True
        return self.trained and self.class_name in self.trained_products

    @property
    def trained_products(self) -> set[str]:
        extra = (self.weights_manifest or {}).get("extra") or {}
        return set((extra.get("products") or {}).values()) | set(extra.get("classes") or [])

    def _defect_types(self, features: VisualFeatures, evidence: Evidence) -> list[tuple[str, float]]:
        """The prompt-bank types the evidence supports, with their share: image-text similarity among
        them for an open_clip tower, equal shares for a tower without a text tower. Empty: unclear."""
        if not evidence.types:
            return []
        names = list(self.prompts.apg_names)
        if self.preset.clip is None:
            return [(t, round(1.0 / len(evidence.types), 4)) for t in evidence.types]
        probs = defect_type_probabilities(features.global_embedding, self.prompts)[0]
        picked = [(t, float(probs[names.index(t)])) for t in evidence.types]
        total = sum(p for _, p in picked) or 1.0
        return sorted(((t, round(p / total, 4)) for t, p in picked), key=lambda tp: -tp[1])

    @torch.no_grad()
    def inspect(self, image: ImageInput, *, generate_answer: bool = True,
                should_stop: Callable[[], bool] = lambda: False) -> InspectionResult:
        """Inspect one image (a path or an array in any common format)."""
        timings: dict[str, float] = {}

        @contextmanager
        def stage(name: str):
            t0 = time.perf_counter()
            yield
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            timings[name] = (time.perf_counter() - t0) * 1000

        with stage("load"):
            rgb = load_image(image, max_pixels=self.max_pixels)
            x = self._preprocess(rgb)
        with stage("encoder"):
            features = self.model.towers.encode_image(x)
        with stage("anomaly_map"):
            maps = self.model.layer_maps(features, self.prompts, self.memory_bank, use_decoder=self.use_decoder)
        self._check_finite("anomaly map", maps)
        with stage("heads"), self._heads_threads():
            image_embeds = self.model.image_embeddings(features, self.prompts, maps)
            self._check_finite("image embeddings", image_embeds)
        with stage("postprocess"):
            anomaly_map, small, score, top1 = self._postprocess(maps[0], rgb.shape[:2], tuple(x.shape[-2:]))
            # Regions are found on the encoder-resolution map (cheap) and scaled to the image; the
            # same regions give the Position row and the evidence line the LLM reads.
            evidence, small_regions = map_evidence(small, self.prompts.apg_names)
            regions = [r.scaled(rgb.shape[0] / small.shape[0], rgb.shape[1] / small.shape[1])
                       for r in small_regions]
            defect_types = self._defect_types(features, evidence)
            nearest = self.references.nearest(features.global_embedding) if self.references is not None else None
        messages = self._conversation(evidence.text())
        with stage("llm_verdict"):
            embeds, mask = self.llm.embed_prompt(messages, image_embeds)
            verdict = self.llm.verdict(embeds, mask)[0]
        answer = ""
        if generate_answer:
            with stage("llm_answer"):
                answer = "".join(self.llm.stream(embeds, mask, max_new_tokens=self.preset.llm.max_new_tokens,
                                                 should_stop=should_stop)).strip()
        self._remember(self._cache_key(x), (image_embeds, evidence.text()))
        position = evidence.position if verdict.defective and regions else None
        return InspectionResult(
            image=str(image) if not isinstance(image, np.ndarray) else None,
            image_size=(int(rgb.shape[0]), int(rgb.shape[1])),
            class_name=self.class_name, score=score, score_top1=top1,
            verdict="defective" if verdict.defective else "good", p_yes=verdict.p_yes, answer=answer,
            position=position,
            regions=[{"position": r.position, "bbox": list(r.bbox), "area": r.area, "peak": round(r.peak, 4)}
                     for r in regions[:5]],
            defect_types=defect_types if verdict.defective else [],
            anomaly_map=anomaly_map, mode=self.mode, model_id=self.model_id, timings_ms=timings,
            evidence=evidence, nearest_reference=nearest,
        )

    def _postprocess(self, layer_maps: torch.Tensor, size: tuple[int, int], encoder_size: tuple[int, int],
                     ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(L, h, w) layer maps -> smoothed map at the image's resolution (H, W) and at the encoder's
        (H', W'), its max and its top-1% mean."""
        grid_map = layer_maps.float().mean(dim=0).cpu().numpy()  # (h, w)
        small = cv2.resize(grid_map, (encoder_size[1], encoder_size[0]), interpolation=cv2.INTER_LINEAR)
        sigma = self.preset.inference.smoothing_sigma
        if sigma > 0:
            small = cv2.GaussianBlur(small, (0, 0), sigmaX=sigma)
        small = np.clip(small, 0.0, 1.0)
        flat = small.reshape(-1)
        k = max(1, flat.size // 100)
        top1 = float(np.partition(flat, -k)[-k:].mean())
        full = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        return full, small, float(flat.max()), top1

    def _check_finite(self, what: str, values: torch.Tensor) -> None:
        """Fail closed: NaN would read as "good" (NaN > 0.5 is False), so broken weights must stop here."""
        if not bool(torch.isfinite(values).all()):
            source = self.weights_source or "(random initialisation)"
            raise WeightsError(f"the {what} of preset '{self.preset.name}' with weights {source} is not finite "
                               f"(NaN or infinity), so no verdict can be given; the weights are damaged - run "
                               f"`iadgpt models verify {source}`, re-copy or retrain them")

    # -- conversation ------------------------------------------------------------------------
    @staticmethod
    def _cache_key(x: torch.Tensor) -> str:
        """Identifies an image by its encoder input (S x S), cheap whatever the image's own size."""
        # numpy has no bfloat16: widen to float32 (exact for fp16 and bf16) before taking the bytes.
        return hashlib.sha1(x.detach().float().cpu().numpy().tobytes()).hexdigest()

    def _remember(self, key: str, embeds: tuple[torch.Tensor, str | None]) -> None:
        self._embed_cache[key] = embeds
        self._embed_cache.move_to_end(key)
        while len(self._embed_cache) > 16:
            self._embed_cache.popitem(last=False)

    @torch.no_grad()
    def chat(self, image: ImageInput, history: list[dict[str, str]], question: str, *,
             should_stop: Callable[[], bool] = lambda: False, max_new_tokens: int | None = None,
             shown_map: np.ndarray | None = None) -> Iterator[str]:
        """Answer a question about an inspected image, streamed piece by piece.

        history: the earlier turns after the first question, as {"role": "user"|"assistant", "content"}
        (the image's first question and answer included). Multi-turn history is passed as text.
        shown_map: the anomaly map the screen shows for this inspection ((H, W) in [0, 1], any size),
        e.g. a stored one. Its evidence line is the one the answer reads, so an inspection made with
        another product or memory bank than the active one is talked about as it was shown.
        """
        x = self._preprocess(load_image(image, max_pixels=self.max_pixels))
        key = self._cache_key(x)
        cached = self._embed_cache.get(key)
        if cached is None or (shown_map is None and cached[1] is None):
            features = self.model.towers.encode_image(x)
            maps = self.model.layer_maps(features, self.prompts, self.memory_bank, use_decoder=self.use_decoder)
            with self._heads_threads():
                embeds = self.model.image_embeddings(features, self.prompts, maps)
            own = None  # the map's own evidence, worked out only when no shown map replaces it
            if shown_map is None:
                _, small, _, _ = self._postprocess(maps[0], x.shape[-2:], tuple(x.shape[-2:]))
                own = map_evidence(small, self.prompts.apg_names)[0].text()
            cached = (embeds, own)
            self._remember(key, cached)
        embeds, evidence = cached
        if shown_map is not None:
            shown = np.clip(resize_map(shown_map, x.shape[-2], x.shape[-1]), 0.0, 1.0)
            evidence = map_evidence(shown, self.prompts.apg_names)[0].text()
        assert evidence is not None
        messages = self._conversation(evidence)  # the first question, with the same evidence line
        turns = [{**t, "content": question_text(t["content"]) if t["role"] == "user" else user_text(t["content"])}
                 for t in history]  # no forged placeholder; questions written as in training
        if turns and turns[0]["role"] == "user":
            turns = turns[1:]  # that first question, as stored
        messages += turns
        if question:
            messages.append({"role": "user", "content": question_text(question)})
        inputs, mask = self.llm.embed_prompt(messages, embeds)
        yield from self.llm.stream(inputs, mask, max_new_tokens=max_new_tokens or self.preset.llm.max_new_tokens,
                                   should_stop=should_stop)
