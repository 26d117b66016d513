"""Training configuration: what to train, on which data, for how long (`iadgpt train` flags)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from iadgpt.config import Preset
from iadgpt.data.synthesis import METHODS
from iadgpt.errors import ConfigError

STAGE_PARTS: dict[int, tuple[str, ...]] = {0: ("vision", "llm", "decoder"), 1: ("tge",), 2: ("decoder", "mmf"),
                                           3: ("tge", "mmf")}


@dataclass
class TrainConfig:
    preset: str = "tiny-test"
    data: Path = Path(".")  # MVTec-AD layout root (or one class folder); train/good is used
    out_dir: Path = Path("runs/iadgpt")  # the run directory
    classes: list[str] | None = None
    product: str | None = None  # train a one-class dataset as this product class (its prompt bank and name)
    stage: int | str = "all"  # 0, 1, 2, 3 or "all" (0 only, and always, for towers without weights)
    epochs: int = 1  # per stage
    lr: float = 1e-4
    stage0_epochs: int | None = None  # None: `epochs`
    epochs_by_stage: dict[int, int] | None = None  # e.g. {2: 23}: these stages' epochs instead (--stage-epochs)
    stage0_lr: float = 1e-3  # towers and LLM from scratch need a larger rate than the heads
    text_batch_size: int = 16  # conversations per stage-0 step
    # stage-0 LM loss on the last answer ("answers"), on every answer of the conversation ("turns"), or on
    # every text token ("all")
    lm_loss: str = "answers"
    # share of stage-0 conversations with follow-ups whose slots say the other state (corpus.conversation_batch)
    flip_slots: float = 0.0
    # weight of the answer tokens copied from the evidence line (its place, share, count and type names)
    # in the LLM's loss, stage 0 and stage 3 alike (losses.lm_loss; 1: a plain mean)
    copy_weight: float = 1.0
    init_weights: Path | None = None  # start from a weights folder (e.g. a stage-0 run's towers and LLM)
    weight_decay: float = 0.01
    batch_size: int = 8
    warmup_steps: int | None = None  # None: warmup_ratio of the stage's steps
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0
    synthesis: str = "nsa"  # "nsa", "cutpaste" or "mix"
    bank_maps: bool = False  # stages 1 and 3 also feed the LLM memory-bank maps (unified model)
    bank_only: Path | None = None  # more good images (MVTec layout) shown as memory-bank maps only
    decoder_only: bool = False  # stage 2 trains the decoder alone on focal + dice (no LLM pass, MMF frozen)
    patch_frac: tuple[float, float] = (0.05, 0.3)  # synthetic patch side / image side (min, max)
    anomaly_ratio: float = 0.5
    follow_ups: float = 0.0  # stages 1-3: share of items trained on a follow-up answer instead of the first
    # stage 3 trains the LLM too, so that it answers (follow-ups above all) with real image tokens, which
    # stage 0 never showed it (the slots stand for the image there)
    tune_llm: bool = False
    llm_lr: float | None = None  # with tune_llm: the LLM's learning rate (None: `lr`, as the heads')
    tune_embeddings: bool = False  # with tune_llm: its word embeddings and output head too (else they stay)
    # with tune_llm: weight of a stage-0 corpus batch (its slots for the image) trained beside every stage-3
    # step, so the LLM keeps copying every product's types and sizes from the evidence line (0: none)
    replay: float = 0.0
    resume: bool = False
    checkpoint_every: int = 1  # epochs between checkpoints; a stage's last epoch is always saved
    max_steps: int | None = None  # per stage
    num_workers: int = 0
    device: str = "auto"  # "auto", "cpu" or "cuda"
    precision: str = "auto"  # frozen towers and LLM: auto (fp32 on the CPU; bf16 or fp16 on a GPU), fp32, fp16, bf16
    llm_path: str | None = None  # --llm: the LLM folder instead of the preset's
    clip_weights: str | None = None  # --clip: the open_clip checkpoint instead of the preset's
    progress: bool = True  # tqdm bar (only shown on a terminal)
    log_every: int = 1  # metrics.jsonl: one step line every n steps

    @property
    def stages(self) -> list[int]:
        """The paper's stages; `stages_for(preset)` adds stage 0 to "all" for towers without weights."""
        if str(self.stage) == "all":
            return [1, 2, 3]
        stage = int(self.stage)
        if stage not in STAGE_PARTS:
            raise ConfigError(f"training stage {self.stage!r} is not 0, 1, 2, 3 or 'all'")
        return [stage]

    def stages_for(self, preset: Preset) -> list[int]:
        scratch = not preset.pretrained_vision or preset.llm.tiny is not None
        if str(self.stage) == "all":
            return [0, 1, 2, 3] if scratch and self.init_weights is None else [1, 2, 3]
        if self.stages == [0] and not scratch:
            raise ConfigError(f"stage 0 trains the image tower and LLM from scratch, but preset '{preset.name}' "
                              f"has pretrained towers and LLM; train stages 1-3 instead")
        return self.stages

    def stage_epochs(self, stage: int) -> int:
        if self.epochs_by_stage and stage in self.epochs_by_stage:
            return self.epochs_by_stage[stage]
        return self.stage0_epochs if stage == 0 and self.stage0_epochs else self.epochs

    def stage_lr(self, stage: int) -> float:
        return self.stage0_lr if stage == 0 else self.lr

    def check(self) -> None:
        self.stages  # noqa: B018 - validates
        if self.synthesis not in METHODS:
            raise ConfigError(f"synthesis '{self.synthesis}' is not one of {', '.join(METHODS)}")
        if self.lm_loss not in ("answers", "turns", "all"):
            raise ConfigError(f"lm_loss '{self.lm_loss}' is not 'answers', 'turns' or 'all'")
        lo, hi = self.patch_frac
        if not 0.0 < lo <= hi < 1.0:
            raise ConfigError(f"patch_frac {lo} {hi}: need 0 < min <= max < 1 (fractions of the image side)")
        if not 0.0 <= self.anomaly_ratio <= 1.0:
            raise ConfigError(f"anomaly_ratio {self.anomaly_ratio} must lie in [0, 1]")
        if not self.copy_weight >= 1.0:
            raise ConfigError(f"--copy-weight {self.copy_weight}: a weight of 1 (a plain mean) or more")
        if not 0.0 <= self.flip_slots <= 1.0:
            raise ConfigError(f"flip_slots {self.flip_slots} must lie in [0, 1] (a share of the conversations)")
        if self.tune_llm and 3 not in self.stages:
            raise ConfigError("--tune-llm trains the LLM in stage 3: it needs --stage 3 or all")
        if self.llm_lr is not None and (not self.tune_llm or self.llm_lr <= 0):
            raise ConfigError(f"--llm-lr {self.llm_lr}: a positive learning rate, and only with --tune-llm")
        if self.tune_embeddings and not self.tune_llm:
            raise ConfigError("--tune-embeddings is a part of --tune-llm: give both")
        if self.replay < 0 or (self.replay and not self.tune_llm):
            raise ConfigError(f"--replay {self.replay}: a weight of 0 or more, and only with --tune-llm (it keeps "
                              f"the LLM that stage 3 tunes reading the stage-0 corpus)")
        if not 0.0 <= self.follow_ups <= 1.0:
            raise ConfigError(f"follow_ups {self.follow_ups} must lie in [0, 1] (a share of the training items)")
        if self.epochs < 1 or self.batch_size < 1 or (self.stage0_epochs is not None and self.stage0_epochs < 1):
            raise ConfigError("epochs and batch_size must be at least 1")
        for stage, epochs in (self.epochs_by_stage or {}).items():
            if stage not in STAGE_PARTS or epochs < 1:
                raise ConfigError(f"stage epochs {stage}={epochs}: the stage must be 0-3 and the epochs at least 1")
        if self.checkpoint_every < 1:
            raise ConfigError("checkpoint_every must be at least 1 epoch")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("max_steps must be at least 1")
        if self.bank_only is not None and (not self.bank_maps or not set(self.stages) & {1, 3}):
            raise ConfigError("--bank-only images are read through memory-bank maps: it needs --bank-maps and "
                              "stage 1 or 3 (stages 0 and 2 leave them out: the decoder never sees them)")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["data"], data["out_dir"] = str(self.data), str(self.out_dir)
        data["init_weights"] = None if self.init_weights is None else str(self.init_weights)
        data["bank_only"] = None if self.bank_only is None else str(self.bank_only)
        return data
