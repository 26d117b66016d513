"""The three-stage training of the IAD-GPT heads on normal images with synthetic anomalies.

Stages (paper; DESIGN.md "Training and evaluation"):

0. only for presets whose image tower has no pretrained weights (clip.weights null, e.g. `demo`):
   the image tower (NSA segmentation pretext through the decoder, which keeps what it learns) and
   the LLM (causal LM on the conversation corpus) are trained from scratch, then frozen like the
   paper's pretrained ones (training/pretext.py);
1. TGE only; cross-entropy on the answer tokens.
2. TGE frozen; decoder + MMF with cross-entropy + focal + dice on the decoder map.
3. decoder frozen; TGE + MMF jointly with cross-entropy.

In stages 1-3 the image/text towers and the LLM are always frozen (requires_grad False); the LLM still passes
gradients back to its `inputs_embeds`, i.e. to the spliced image embeddings.

Choices made here:

* segmentation target: the decoder's per-layer maps (B, L, h, w) are averaged over the layers,
  upsampled bilinearly to the encoder resolution (S, S) - the map the inspector post-processes - and
  compared with the synthetic mask at (S, S); each layer's map is also compared with the mask
  max-pooled to the patch grid, so every tap learns to segment (the average alone lets one layer
  carry the others);
* batches hold one class each (`ClassBatchSampler`), so the class's prompts (T_win, T_apg) are
  shared by the batch and `IADGPT.layer_maps` takes them unbatched;
* `max_steps` caps the optimiser steps of each stage (the schedule is sized to the cap);
* data are a pure function of (seed, epoch, index) and the batch order of (seed, stage, epoch), so
  a run resumed from `checkpoints/last` (saved after every epoch and when `max_steps` stops a stage)
  ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from iadgpt.builder import build_model, preset_dtype, vision_module
from iadgpt.config import load_preset, with_overrides
from iadgpt.data.answers import load_answer_templates
from iadgpt.data.datasets import mvtec_samples, product_for
from iadgpt.errors import ConfigError, DatasetError
from iadgpt.llm import inspection_messages
from iadgpt.memory_bank import MemoryBank
from iadgpt.model import TRAINABLE_PARTS
from iadgpt.prompt_bank import load_bank
from iadgpt.prompts import TextPrompts, build_text_prompts
from iadgpt.tiny import tokenizer_fingerprint
from iadgpt.training.banks import LeaveOutBanks
from iadgpt.training.config import STAGE_PARTS, TrainConfig
from iadgpt.training.conversation import build_training_batch, copy_vocabulary
from iadgpt.training.corpus import conversation_batch, corpus_banks, distinct_banks
from iadgpt.training.data import ClassBatchSampler, SyntheticAnomalyDataset, collate
from iadgpt.training.pretext import PRETEXT_PART, PretextHeads, PretextStep, cells_tensor
from iadgpt.training.state import load_trainer_state, save_trainer_state
from iadgpt.training.step import TrainStep, lr_factor
from iadgpt.weights import save_trainable

__all__ = ["STAGE_PARTS", "ClassBatchSampler", "StageResult", "SyntheticAnomalyDataset", "TrainConfig", "TrainStep",
           "Trainer", "collate", "load_trainer_state", "lr_factor", "save_trainer_state", "train"]

log = logging.getLogger(__name__)

TOWER_PARTS = ("vision", "llm")  # saved with the heads when stage 0 trained them
TRAINER_STATE = "trainer_state.safetensors"
MAP_SOURCES = ("decoder", "bank", "both")  # the maps the LLM learns to read in stages 1 and 3
BANK_SHOTS = 8  # good images per class in the memory bank that stages 1 and 3 read from



@dataclass
class StageResult:
    stage: int
    steps: int
    images: int
    seconds: float
    last_loss: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _release_accelerator_state(mixed_precision: str) -> None:
    """accelerate keeps one process-wide state and refuses a second Accelerator with another mixed
    precision; a process that trains twice (tests, benchmarks, fp16 then bf16) starts it afresh."""
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=True)  # accelerate's own way (its test utilities)


REPLAY_BY_BANK = 0.5  # --replay: share of its conversations whose class is drawn bank first


class Trainer:
    """Builds everything for a TrainConfig; `run()` trains and returns the weights folder."""

    def __init__(self, cfg: TrainConfig) -> None:
        from accelerate import Accelerator

        cfg.check()
        self.cfg = cfg
        self.run_dir = Path(cfg.out_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cuda = torch.cuda.is_available() and cfg.device != "cpu"
        device = "cuda" if cuda else "cpu"
        self.preset = with_overrides(load_preset(cfg.preset), llm_path=cfg.llm_path, clip_weights=cfg.clip_weights)
        self.stages = cfg.stages_for(self.preset)
        scratch = 0 in self.stages
        # Frozen towers and LLM in the chosen precision (auto: bf16 or fp16 on a GPU, as the LLM was
        # trained); the trained heads always in fp32, under autocast. Stage 0 trains the towers and
        # LLM themselves, so they stay in fp32 (autocast runs them in the chosen precision).
        chosen = preset_dtype(self.preset, cfg.precision, torch.device(device))
        mixed = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(chosen, "no")
        _release_accelerator_state(mixed)
        self.accelerator = Accelerator(mixed_precision=mixed, cpu=not cuda)
        torch.manual_seed(cfg.seed)  # the heads' initial weights
        dtype = torch.float32 if scratch else chosen
        self.model, self.llm = build_model(self.preset, device, dtype)
        self.vision = vision_module(self.model)  # None: a pretrained image tower that is never trained
        self.towers_trained = False  # whether vision/LLM weights are this run's (stage 0 or init_weights)
        for name in TRAINABLE_PARTS:
            getattr(self.model, name).float()
        self.model.towers.requires_grad_(False)
        self.llm.model.requires_grad_(False)
        self.llm.model.eval()
        self.step_module = TrainStep(self.model, self.llm)
        self.pretext: PretextHeads | None = None
        self.pretext_step: PretextStep | None = None
        if scratch or cfg.replay:  # --replay trains on the stage-0 corpus too, through its slots
            towers, heads = self.model.towers, self.preset.heads
            with torch.random.fork_rng():  # the other parts' initial weights do not depend on stage 0
                torch.manual_seed(cfg.seed + 1)
                self.pretext = PretextHeads(towers.embed_dim, self.llm.hidden_size, heads.fusion_grid,
                                            heads.base_prompts)
            self.pretext.to(device)
            self.pretext_step = PretextStep(towers, self.model.decoder, self.pretext, self.llm.model,
                                            self.llm.image_token_id, self.llm.tokenizer.pad_token_id,
                                            train_vision=self.vision is not None)
        # whether the pretext slots hold trained values (loaded by _load_parts, or stage 0 runs): then they
        # go in every checkpoint, so later stages and --replay runs can continue from it
        self.slots_ready = False
        if cfg.init_weights is not None:  # after the pretext heads: a stage-0 checkpoint continues with its slots
            self.towers_trained = self._load_parts(cfg.init_weights)
        if cfg.replay and not self.slots_ready:
            raise ConfigError(f"--replay trains on the stage-0 corpus through the stage-0 slots, but --init "
                              f"{cfg.init_weights} holds none; start from a stage-0 checkpoint (its "
                              f"checkpoints/last) or join weights and slots with iadgpt.training.recipe.with_slots")

        samples = [s for s in mvtec_samples(Path(cfg.data), "train", cfg.classes) if s.label == 0]
        if not samples:
            raise DatasetError(f"dataset {cfg.data} has no good training images in train/good")
        self.products: dict[str, str] = {}  # dataset class -> product class it was trained as
        if cfg.product:
            self.products = product_for(cfg.data, sorted({s.class_name for s in samples}), cfg.product)
            samples = [replace(s, class_name=cfg.product) for s in samples]
        self.bank_only: set[str] = set()  # classes shown through memory-bank maps only (--bank-only)
        if cfg.bank_only is not None:
            extra = [s for s in mvtec_samples(Path(cfg.bank_only), "train") if s.label == 0]
            self.bank_only = {s.class_name for s in extra}
            clash = self.bank_only & {s.class_name for s in samples}
            if clash:
                raise ConfigError(f"--bank-only {cfg.bank_only} has classes {sorted(clash)} that --data has too")
            samples += extra
        banks = {name: load_bank(name) for name in sorted({s.class_name for s in samples})}
        self.banks = banks
        # stage 0's prompts name many products, so its answers do not hang on the one trained on; with
        # --tune-llm, stage 3's follow-ups name their types from the same banks
        many = corpus_banks(list(banks)) if self.pretext is not None or cfg.tune_llm else banks
        self.corpus_banks = many if self.pretext is not None else banks
        self.templates = load_answer_templates()
        self.prompts: dict[str, TextPrompts] = {
            name: build_text_prompts(self.model.towers, bank).to(self.accelerator.device, torch.float32)
            for name, bank in banks.items()}
        self.dataset = SyntheticAnomalyDataset(
            samples, self.preset, self.templates, method=cfg.synthesis,
            anomaly_ratio=cfg.anomaly_ratio, seed=cfg.seed, patch_frac=tuple(cfg.patch_frac),
            object_classes=[n for n, b in banks.items() if b.is_object], banks=banks,
            follow_up_ratio=cfg.follow_ups,
            # one of each distinct bank: the generic one, shared by most part names, would drown the rest
            type_banks=[many[names[0]] for names in distinct_banks(many).values()] if cfg.tune_llm else ())
        self.class_banks: dict[str, LeaveOutBanks] = self._class_banks() if cfg.bank_maps else {}
        self.sampler = ClassBatchSampler(self.dataset.by_class, cfg.batch_size, cfg.seed, frozenset(self.bank_only))
        loader = DataLoader(self.dataset, batch_sampler=self.sampler, collate_fn=collate,
                            num_workers=cfg.num_workers)
        self.loader = self.accelerator.prepare(loader)
        self.results: list[StageResult] = []
        self._log_handler: logging.Handler | None = None

    @torch.no_grad()
    def _class_banks(self) -> dict[str, LeaveOutBanks]:
        """Two memory banks per class from disjoint sets of up to BANK_SHOTS good images, calibrated as
        the inspector does; every image is scored by the one that does not hold it (training/banks.py)."""
        from iadgpt.inspector import bank_from_tokens

        towers, device = self.model.towers, self.accelerator.device
        dtype = next(towers.parameters()).dtype

        def bank_of(name: str, ids: Sequence[int]) -> MemoryBank:
            per_image = [towers.encode_image(self.dataset.normalise(self.dataset.image(i)).unsqueeze(0)
                                             .to(device, dtype)).patch_tokens for i in ids]
            return bank_from_tokens(towers.layer_dims, per_image, {"class": name},
                                    self.preset.inference.max_memory_patches)

        return {name: LeaveOutBanks.build(ids, BANK_SHOTS, lambda chosen, n=name: bank_of(n, chosen), name)
                for name, ids in self.dataset.by_class.items()}

    # -- pieces usable on their own (tests, benchmarks) --------------------------------------
    def batch(self, indices: Sequence[int], epoch: int = 0) -> dict[str, Any]:
        """A collated batch of dataset items (one class) as the loader would give it."""
        self.dataset.set_epoch(epoch)
        return collate([self.dataset[i] for i in indices])

    def map_source(self, stage: int, step: int) -> str:
        """Which map the LLM reads in this step: "decoder", "bank" or "both" (a pure function of
        (seed, stage, step)). Stage 2 trains the decoder, so it always reads the decoder's map."""
        if stage == 2 or not self.class_banks:
            return "decoder"
        rng = np.random.default_rng([self.cfg.seed, 31, stage, step])
        return MAP_SOURCES[int(rng.integers(len(MAP_SOURCES)))]

    def forward(self, batch: dict[str, Any], source: str = "decoder", module: nn.Module | None = None
                ) -> dict[str, torch.Tensor]:
        """Stage 1-3 losses of a batch whose LLM reads the map from `source`."""
        names = set(batch["class_name"])
        assert len(names) == 1, f"a batch must hold one class, got {sorted(names)}"
        name = names.pop()
        prompts = self.prompts[name]
        messages = [inspection_messages(self.preset.llm.system_prompt, c, e) + turns
                    for c, e, turns in zip(batch["class_name"], batch["evidence"], batch["turns"], strict=True)]
        device = self.accelerator.device
        ids, mask, labels = build_training_batch(self.llm, messages, batch["answer"])
        if name in self.bank_only:
            source = "bank"  # the decoder was never trained on these images: their map is the bank's
        banks = self.class_banks.get(name) if source in ("bank", "both") else None
        bank = banks.for_items(batch["index"].tolist()) if banks is not None else None
        return (module or self.step_module)(batch["image"].to(device), batch["mask"].to(device), ids.to(device),
                                            mask.to(device), labels.to(device), prompts.win, prompts.apg,
                                            bank, source != "bank" or bank is None, self._token_weights(messages))

    @torch.no_grad()
    def losses(self, batch: dict[str, Any]) -> dict[str, float]:
        """Every loss term (focal and dice included) for a batch, without training."""
        seg, self.step_module.seg_loss = self.step_module.seg_loss, True
        try:
            with self.accelerator.autocast():
                return {k: float(v) for k, v in self.forward(batch).items()}
        finally:
            self.step_module.seg_loss = seg

    def set_stage(self, stage: int) -> list[nn.Parameter]:
        """Freeze everything but the stage's parts; return their parameters."""
        for name in TRAINABLE_PARTS:
            getattr(self.model, name).requires_grad_(name in STAGE_PARTS[stage])
            getattr(self.model, name).train(name in STAGE_PARTS[stage])
        self.step_module.seg_loss = stage == 2
        decoder_only = stage == 2 and self.cfg.decoder_only
        self.step_module.answer_loss = not decoder_only
        if decoder_only:
            self.model.mmf.requires_grad_(False)
            self.model.mmf.train(False)
            return list(self.model.decoder.parameters())
        if self.vision is not None:
            self.vision.requires_grad_(stage == 0)
        tune_llm = stage == 3 and self.cfg.tune_llm
        self.llm.model.requires_grad_(stage == 0 or tune_llm)
        if tune_llm and not self.cfg.tune_embeddings:
            # The word embeddings and the output head stay as stage 0 made them: stage 3's answers speak of
            # one product, and the words they never use (other products' types) need not move (decision 0009)
            self.llm.model.get_input_embeddings().requires_grad_(False)
            self.llm.model.get_output_embeddings().requires_grad_(False)
        if self.pretext is not None:  # trained in stage 0; --replay reads them as they are
            self.pretext.requires_grad_(stage == 0)
        if stage == 0:
            assert self.pretext is not None, "stage 0 needs a preset whose towers have no pretrained weights"
            self.towers_trained = True
            if self.vision is None:  # the LM alone (see _run_stage); stage 2 trains the decoder
                return list(self.llm.model.parameters()) + list(self.pretext.parameters())
            return (list(self.vision.parameters()) + list(self.llm.model.parameters())
                    + list(self.model.decoder.parameters()) + list(self.pretext.parameters()))
        params = [p for name in STAGE_PARTS[stage] for p in getattr(self.model, name).parameters()]
        return params + [p for p in self.llm.model.parameters() if p.requires_grad] if tune_llm else params

    def stage_steps(self, stage: int = 1) -> int:
        """Optimiser steps of one stage on this process (the loader is sharded across processes)."""
        steps = self.cfg.stage_epochs(stage) * len(self.loader)
        return min(steps, self.cfg.max_steps) if self.cfg.max_steps else steps

    def pretext_forward(self, batch: dict[str, Any], step: int, module: nn.Module | None = None,
                        by_bank: float = 0.0) -> dict[str, torch.Tensor]:
        """Stage-0 losses for an image batch and the corpus batch of `step` (by_bank: conversation_batch's)."""
        assert self.pretext_step is not None, "stage 0 is not part of this run"
        module = module or self.pretext_step
        talks = conversation_batch(self.cfg.seed, step, self.cfg.text_batch_size, self.corpus_banks, self.templates,
                                   self.preset.llm.system_prompt, self.cfg.flip_slots, by_bank)
        ids, mask, labels = build_training_batch(self.llm, [t.messages for t in talks], [t.answer for t in talks],
                                                 history=self.cfg.lm_loss == "turns")
        device = self.accelerator.device
        answer_labels = labels.to(device) if self.cfg.lm_loss != "all" else None
        anomalous = torch.tensor([t.slot_state for t in talks], device=device)
        cells = cells_tensor([t.slot_cells for t in talks]).to(device)
        weights = self._token_weights([t.messages for t in talks])
        if batch is None:  # a pretrained image tower: the LM alone
            classes = next(iter(self.prompts.values())).decoder_classes
            return module(None, None, classes, ids.to(device), mask.to(device), anomalous, cells, answer_labels,
                          weights)
        names = set(batch["class_name"])
        assert len(names) == 1, f"a batch must hold one class, got {sorted(names)}"
        classes = self.prompts[names.pop()].decoder_classes
        return module(batch["image"].to(device), batch["mask"].to(device), classes, ids.to(device),
                      mask.to(device), anomalous, cells, answer_labels, weights)

    def _token_weights(self, conversations: list[list[dict[str, str]]]) -> torch.Tensor | None:
        """--copy-weight W: per conversation, the answer loss's weight of each token id ((B, V): W for the
        ids its evidence line writes its fields with and the verdict words, 1 for the rest); None: a
        plain mean."""
        if self.cfg.copy_weight == 1.0:
            return None
        prompts = ["\n".join(m["content"] for m in messages if m["role"] == "user") for messages in conversations]
        copied = copy_vocabulary(self.llm, prompts).float()
        return (1.0 + (self.cfg.copy_weight - 1.0) * copied).to(self.accelerator.device)

    # -- logging ----------------------------------------------------------------------------
    def _metrics(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def _start_logging(self) -> None:
        handler = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        package = logging.getLogger("iadgpt")
        package.addHandler(handler)
        if package.level == logging.NOTSET or package.level > logging.INFO:
            package.setLevel(logging.INFO)
        self._log_handler = handler

    def _stop_logging(self) -> None:
        if self._log_handler is not None:
            logging.getLogger("iadgpt").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    # -- checkpoints ------------------------------------------------------------------------
    def _save_weights(self, folder: Path, extra: dict[str, Any], pretext: bool = False) -> Path:
        parts = {name: {k: v.float() for k, v in getattr(self.model, name).state_dict().items()}
                 for name in TRAINABLE_PARTS}
        extra = dict(extra)
        if self.towers_trained and self.vision is not None:
            # Stage 0 made the towers: they belong to these weights, not to the preset.
            parts["vision"] = {k: v.float() for k, v in self.vision.state_dict().items()}
        if self.towers_trained or self.cfg.tune_llm:  # so did stage 0, or stage 3 tuned the LLM
            parts["llm"] = {k: v.float() for k, v in self.llm.model.state_dict().items()}
            extra["tokenizer"] = tokenizer_fingerprint(self.llm.tokenizer)
        if pretext and self.pretext is not None:
            parts[PRETEXT_PART] = self.pretext.state_dict()
        return save_trainable(folder, parts, preset=self.preset.name,
                              base_models=self.preset.base_model_ids(), extra=extra)

    def _checkpoint(self, optimizer, scheduler, progress: dict[str, Any]) -> None:
        if not self.accelerator.is_main_process:
            return
        folder = self.run_dir / "checkpoints" / "last"
        self._save_weights(folder, {"stage": progress["stage"], "epoch": progress["epoch"],
                                    "global_step": progress["global_step"]},
                           pretext=self.slots_ready)
        save_trainer_state(folder / TRAINER_STATE, optimizer, scheduler, progress)
        log.info("checkpoint %s: stage %d epoch %d batch %d step %d", folder, progress["stage"],
                 progress["epoch"], progress["batch"], progress["global_step"])

    def _load_parts(self, folder: Path) -> bool:
        """Load a weights folder's heads, and its image tower and LLM when it holds them (a stage-0 run);
        True when it held an LLM trained by this project."""
        from iadgpt.weights import load_trainable

        manifest, parts = load_trainable(folder, expect_preset=self.preset.name)
        expected = manifest.get("extra", {}).get("tokenizer")
        if "llm" in parts and expected and expected != tokenizer_fingerprint(self.llm.tokenizer):
            raise ConfigError(f"the LLM in {folder} was trained with another tokenizer than preset "
                              f"'{self.preset.name}' builds; start from weights of this preset")
        for name in TRAINABLE_PARTS:
            if name not in parts:
                raise ConfigError(f"weights folder {folder} has no '{name}' part")
            getattr(self.model, name).load_state_dict(parts[name], strict=True)
        if "vision" in parts:
            if self.vision is None:
                raise ConfigError(f"{folder} holds an image tower, but preset '{self.preset.name}' uses a "
                                  f"pretrained one")
            self.vision.load_state_dict(parts["vision"], strict=True)
        if "llm" in parts:
            self.llm.model.load_state_dict(parts["llm"], strict=True)
        if PRETEXT_PART in parts and self.pretext is not None:  # a checkpoint, or --init to continue stage 0
            self.pretext.load_state_dict(parts[PRETEXT_PART], strict=True)
            self.slots_ready = True
        return "llm" in parts

    def _load_checkpoint(self) -> tuple[dict[str, Any], dict, dict] | None:
        folder = self.run_dir / "checkpoints" / "last"
        if not (folder / TRAINER_STATE).is_file():
            log.warning("resume asked for, but %s holds no checkpoint; starting afresh", folder)
            return None
        if self._load_parts(folder):
            self.towers_trained = True
        opt_state, sched_state, progress, rng = load_trainer_state(folder / TRAINER_STATE)
        torch.set_rng_state(rng["rng.torch"])
        cuda_states = [rng[k] for k in sorted(k for k in rng if k.startswith("rng.cuda."))]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states[:torch.cuda.device_count()])
        log.info("resuming from %s: %s", folder, progress)
        return progress, opt_state, sched_state

    # -- training ---------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        self._start_logging()
        try:
            if self.accelerator.is_main_process:
                (self.run_dir / "config.json").write_text(json.dumps(cfg.to_json(), indent=2) + "\n",
                                                          encoding="utf-8")
            resumed = self._load_checkpoint() if cfg.resume else None
            global_step = resumed[0]["global_step"] if resumed else 0
            for stage in self.stages:
                start = None
                if resumed is not None:
                    progress = resumed[0]
                    if stage < progress["stage"] or (stage == progress["stage"] and progress["done"]):
                        continue  # finished before the interruption
                    if stage == progress["stage"]:
                        start = resumed
                self.slots_ready = self.slots_ready or stage == 0
                global_step = self._run_stage(stage, global_step, start)
                resumed = None
            weights = self.run_dir / "weights"
            if self.accelerator.is_main_process:
                self._save_weights(weights, {"stages": self.stages, "epochs": cfg.epochs, "products": self.products,
                                             "stage0_epochs": cfg.stage_epochs(0) if 0 in self.stages else None,
                                             "global_step": global_step, "seed": cfg.seed,
                                             "synthesis": cfg.synthesis})
            self.accelerator.wait_for_everyone()
            log.info("training done: weights in %s", weights)
            return weights
        finally:
            self._stop_logging()

    def _run_stage(self, stage: int, global_step: int,
                   resumed: tuple[dict[str, Any], dict, dict] | None) -> int:
        cfg, acc = self.cfg, self.accelerator
        params = self.set_stage(stage)
        self.sampler.set_epoch(0, stage)  # the stage decides which classes its batches hold (--bank-only)
        total = self.stage_steps(stage)
        epochs, lr = cfg.stage_epochs(stage), cfg.stage_lr(stage)
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else int(cfg.warmup_ratio * total)
        warmup = min(max(warmup, 0), total)
        groups: list[dict[str, Any]] = [{"params": params}]
        if stage == 3 and cfg.tune_llm and cfg.llm_lr is not None:  # the LLM at its own rate
            own = {id(p) for p in self.llm.model.parameters()}
            groups = [{"params": [p for p in params if id(p) not in own]},
                      {"params": [p for p in params if id(p) in own], "lr": cfg.llm_lr}]
        optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
        epoch, skip, step = 0, 0, 0
        if resumed is not None:
            progress, opt_state, sched_state = resumed
            optimizer.load_state_dict(opt_state)
            scheduler.load_state_dict(sched_state)
            epoch, skip, step = progress["epoch"], progress["batch"], progress["stage_step"]
        optimizer, scheduler = acc.prepare(optimizer, scheduler)
        module = acc.prepare(self.pretext_step if stage == 0 else self.step_module)
        parts = STAGE_PARTS[stage]
        if stage == 0 and self.vision is None:
            parts = ("llm",)
        elif stage == 2 and cfg.decoder_only:
            parts = ("decoder",)
        elif stage == 3 and cfg.tune_llm:
            parts = (*parts, "llm")
        log.info("stage %d: training %s, %d steps (warm-up %d), lr %s", stage, parts, total, warmup,
                 " / ".join(f"{g.get('initial_lr', g['lr']):g}" for g in optimizer.param_groups))
        show = cfg.progress and sys.stderr.isatty() and acc.is_local_main_process
        bar = tqdm(total=total, initial=step, desc=f"stage {stage}", disable=not show, dynamic_ncols=True)
        result = StageResult(stage, 0, 0, 0.0)
        last_progress: dict[str, Any] | None = None
        while epoch < epochs and step < total:
            self.sampler.set_epoch(epoch, stage)
            self.dataset.set_epoch(epoch)
            if hasattr(self.loader, "set_epoch"):
                # accelerate's loader re-sets the sampler's and dataset's epoch to its own counter of
                # iterations when it starts iterating; a resumed run's counter restarts at 0, so align it.
                self.loader.set_epoch(epoch)
            # `skip` counts batches of the whole sampler; each process consumed 1/num_processes of them.
            self.sampler.skip = skip
            batch_index = skip // acc.num_processes
            skip = 0
            exhausted = True
            epoch_images, epoch_seconds, epoch_loss, epoch_batches = 0, 0.0, 0.0, 0
            # Stage 0 with a pretrained image tower trains the LM alone: no images to synthesise.
            text_only = stage == 0 and self.vision is None
            batches = itertools.repeat(None, len(self.loader) - batch_index) if text_only else self.loader
            for batch in batches:
                t0 = time.perf_counter()
                out = self._step(module, batch, optimizer, scheduler, params, stage, step)
                seconds = time.perf_counter() - t0
                n = cfg.text_batch_size if batch is None else len(batch["answer"])
                step += 1
                global_step += 1
                batch_index += 1
                result.steps += 1
                result.images += n
                result.seconds += seconds
                epoch_images += n
                epoch_seconds += seconds
                epoch_loss += out["loss"]
                epoch_batches += 1
                result.last_loss = out
                ips = n / seconds if seconds > 0 else 0.0
                bar.set_postfix(loss=f"{out['loss']:.4f}", img_s=f"{ips:.1f}")
                bar.update(1)
                if global_step % max(1, cfg.log_every) == 0:
                    self._metrics({"kind": "step", "stage": stage, "epoch": epoch, "step": step,
                                   "global_step": global_step, **out,
                                   "lr": scheduler.get_last_lr()[0], "images_per_s": ips})
                if step >= total:
                    exhausted = batch_index >= len(self.loader)
                    break
            finished_epoch = exhausted
            done = step >= total
            next_epoch = epoch + 1 if finished_epoch else epoch
            last_progress = {"stage": stage, "epoch": next_epoch,
                             "batch": 0 if finished_epoch else batch_index * acc.num_processes,
                             "stage_step": step, "global_step": global_step,
                             "done": bool(done or next_epoch >= epochs)}
            self._metrics({"kind": "epoch", "stage": stage, "epoch": epoch, "steps": step,
                           "global_step": global_step, "mean_loss": epoch_loss / max(1, epoch_batches),
                           "images_per_s": epoch_images / epoch_seconds if epoch_seconds else 0.0})
            if last_progress["done"] or not finished_epoch or next_epoch % cfg.checkpoint_every == 0:
                self._checkpoint(optimizer, scheduler, last_progress)
            epoch = next_epoch
            if done:
                break
        bar.close()
        self.results.append(result)
        log.info("stage %d done: %d steps, %.2f images/s", stage, result.steps, result.images_per_s)
        return global_step

    def _step(self, module, batch, optimizer, scheduler, params, stage: int = 1,
              stage_step: int = 0) -> dict[str, float]:
        acc = self.accelerator
        if stage == 0:
            out = self.pretext_forward(batch, stage_step, module)
        else:
            out = self.forward(batch, self.map_source(stage, stage_step), module)
            if stage == 3 and self.cfg.replay:
                # half its classes drawn bank first, as stage 3's follow-ups name their types (one per bank)
                out["replay"] = self.pretext_forward(None, stage_step, by_bank=REPLAY_BY_BANK)["loss"]
                out["loss"] = out["loss"] + self.cfg.replay * out["replay"]
        acc.backward(out["loss"])
        if self.cfg.max_grad_norm and acc.sync_gradients:
            acc.clip_grad_norm_(params, self.cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return {k: float(v.detach()) for k, v in out.items()}


def train(cfg: TrainConfig) -> Path:
    """Train the heads as configured; returns the weights folder (loadable by Inspector(weights=...))."""
    return Trainer(cfg).run()
