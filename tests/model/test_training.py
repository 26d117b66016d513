"""Training on tiny-test: losses, conversation labels, data, stage freezing, checkpoints, resume."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open

import iadgpt.training.state
from iadgpt.data import load_sample, mvtec_samples
from iadgpt.errors import ConfigError
from iadgpt.inspector import Inspector
from iadgpt.llm import IGNORE_INDEX, IMAGE_TOKEN, NORMAL_ANSWER
from iadgpt.training import build_training_batch, dice_loss, focal_loss, inspection_messages
from iadgpt.training.cli import add_train_parser, config_from_args
from iadgpt.training.state import load_trainer_state, save_trainer_state
from iadgpt.training.trainer import (
    TRAINER_STATE,
    ClassBatchSampler,
    TrainConfig,
    Trainer,
    lr_factor,
)
from tests.conftest import shared_dataset

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _texture_dataset(root: Path, classes: dict[str, int], size: int = 96) -> Path:
    """Small noisy textures in MVTec layout: <class>/train/good/NNN.png."""
    rng = np.random.default_rng(7)
    for name, count in classes.items():
        folder = root / name / "train" / "good"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            base = rng.integers(60, 180, size=3)
            noise = cv2.GaussianBlur(rng.normal(0, 25, size=(size, size, 3)), (0, 0), 1.5)
            image = np.clip(base + noise, 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    return root


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return _texture_dataset(tmp_path_factory.mktemp("train-data"), {"carpet": 2, "wood": 2})


@pytest.fixture(scope="module")
def trainer(data_root, tmp_path_factory) -> Trainer:
    cfg = TrainConfig(data=data_root, out_dir=tmp_path_factory.mktemp("run"), stage=2, batch_size=2,
                      anomaly_ratio=1.0, lr=1e-3, progress=False)
    return Trainer(cfg)


# --------------------------------------------------------------------------------------------
# Losses and schedule
# --------------------------------------------------------------------------------------------


def test_focal_loss_hand_computed() -> None:
    p = torch.tensor([[[0.9, 0.2]]])  # (B=1, H=1, W=2)
    y = torch.tensor([[[1.0, 0.0]]])
    # p_t = 0.9 and 0.8: mean of 0.1^2 * -ln 0.9 and 0.2^2 * -ln 0.8
    expected = (0.01 * -math.log(0.9) + 0.04 * -math.log(0.8)) / 2
    assert focal_loss(p, y).item() == pytest.approx(expected, rel=1e-5)
    assert focal_loss(p.unsqueeze(1), y.bool().unsqueeze(1)).item() == pytest.approx(expected, rel=1e-5)
    weighted = (0.25 * 0.01 * -math.log(0.9) + 0.75 * 0.04 * -math.log(0.8)) / 2
    assert focal_loss(p, y, alpha=0.25).item() == pytest.approx(weighted, rel=1e-5)
    assert focal_loss(p, y, gamma=0.0).item() == pytest.approx((-math.log(0.9) - math.log(0.8)) / 2, rel=1e-5)
    assert math.isfinite(focal_loss(torch.tensor([[[0.0, 1.0]]]), y).item())


def test_dice_loss_hand_computed() -> None:
    p = torch.tensor([[[0.9, 0.2]]])
    y = torch.tensor([[[1.0, 0.0]]])
    assert dice_loss(p, y).item() == pytest.approx(1 - 2.8 / 3.1, rel=1e-5)  # (2*0.9+1)/(1.1+1+1)
    empty = torch.zeros(1, 1, 2)
    assert dice_loss(torch.full((1, 1, 2), 0.5), empty).item() == pytest.approx(0.5)  # 1 - 1/(1+1)
    batch = dice_loss(torch.cat([p, torch.full((1, 1, 2), 0.5)]), torch.cat([y, empty]))
    assert batch.item() == pytest.approx(1 - 2.8 / 4.1, rel=1e-5)  # pooled: (2*0.9+1)/(2.1+1+1)
    assert dice_loss(y, y, eps=0.0).item() == pytest.approx(0.0)


def test_lr_schedule_warmup_then_cosine_to_zero() -> None:
    factors = [lr_factor(s, 2, 10) for s in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert all(a >= b for a, b in zip(factors[1:], factors[2:], strict=False))
    assert lr_factor(10, 2, 10) == pytest.approx(0.0)


# --------------------------------------------------------------------------------------------
# Conversation
# --------------------------------------------------------------------------------------------


def test_training_batch_labels_only_the_answer(trainer) -> None:
    llm = trainer.llm
    tok = llm.tokenizer
    answers = [NORMAL_ANSWER, "Yes, there is an anomaly in the image, at the top left of the image."]
    messages = [inspection_messages("You inspect.", "carpet"), inspection_messages("You inspect.", "metal_nut")]
    ids, mask, labels = build_training_batch(llm, messages, answers)
    assert ids.shape == mask.shape == labels.shape and ids.shape[0] == 2
    for b, (msgs, answer) in enumerate(zip(messages, answers, strict=True)):
        prompt = tok(llm.prompt_text(msgs), add_special_tokens=False)["input_ids"]
        n = int(mask[b].sum())
        assert ids[b, :len(prompt)].tolist() == prompt, "the prompt comes first, unchanged"
        assert (labels[b, :len(prompt)] == IGNORE_INDEX).all(), "prompt tokens are ignored"
        assert (labels[b, n:] == IGNORE_INDEX).all() and (ids[b, n:] == tok.pad_token_id).all()
        answer_labels = labels[b, len(prompt):n].tolist()
        assert answer_labels[-1] == tok.eos_token_id
        assert tok.decode(answer_labels[:-1]) == answer
        assert (labels[b] != IGNORE_INDEX).sum() == n - len(prompt)
        assert (ids[b] == llm.image_token_id).sum() == 1
    assert IMAGE_TOKEN in messages[1][1]["content"] and "metal nut" in messages[1][1]["content"]


def test_turns_labels_every_earlier_answer_and_no_question(trainer) -> None:
    """`--lm-loss turns`: the size an earlier answer gave is trained too, never the user's words."""
    llm = trainer.llm
    tok = llm.tokenizer
    earlier = "A thin line at the top left; size: small, 1.0 % of the image; likely type: crack."
    messages = inspection_messages("You inspect.", "carpet") + [
        {"role": "assistant", "content": "Yes, there is a defect at the top left of the image."},
        {"role": "user", "content": "Describe the defect."},
        {"role": "assistant", "content": earlier},
        {"role": "user", "content": "How big is it?"}]
    last = "It is at the top left; size: small, 1.0 % of the image."
    _, _, plain = build_training_batch(llm, [messages], [last])
    ids, mask, labels = build_training_batch(llm, [messages], [last], history=True)
    assert (labels != IGNORE_INDEX).sum() > (plain != IGNORE_INDEX).sum()
    labelled = tok.decode(ids[0][labels[0] != IGNORE_INDEX])
    assert "size: small, 1.0 % of the image; likely type: crack." in labelled, labelled
    assert "there is a defect at the top left" in labelled and labelled.endswith(last + tok.eos_token)
    assert "Describe" not in labelled and "How big" not in labelled and "inspect" not in labelled, labelled
    first_words = [tok.decode(ids[0][i]) for i in range(ids.shape[1]) if labels[0, i] != IGNORE_INDEX][:1]
    assert first_words != [" Yes"], "an earlier turn's first token (after 'Assistant: ') is not trained"
    inspector = Inspector(trainer.preset)
    evidence = "Map evidence: strongest response at the top; 1 region; size: small, 1.0 % of the image."
    assert inspection_messages(inspector.preset.llm.system_prompt, inspector.class_name, evidence) == \
        inspector._conversation(evidence), "training asks exactly what inspection asks"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def test_dataset_items_are_deterministic_and_preprocessed_like_inspection(trainer) -> None:
    ds = trainer.dataset
    ds.set_epoch(0)
    a, b = ds[1], ds[1]
    assert torch.equal(a["image"], b["image"]) and a["answer"] == b["answer"]
    assert a["mask"].sum() > 0 and a["answer"].startswith("Yes"), "anomaly_ratio 1 makes every item abnormal"
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["mask"], a["mask"]), "another epoch draws another anomaly"
    ds.anomaly_ratio = 0.0
    try:
        normal = ds[0]
    finally:
        ds.anomaly_ratio = 1.0
    assert normal["answer"] == NORMAL_ANSWER and normal["mask"].sum() == 0
    rgb, _ = load_sample(ds.samples[0])
    expected = Inspector(trainer.preset)._preprocess(rgb)[0]
    torch.testing.assert_close(normal["image"], expected, rtol=0, atol=1e-6)


def test_follow_up_items_ask_questions_answered_from_their_own_evidence(trainer) -> None:
    """--follow-ups: an item asks follow-up questions after its first answer; the answer trained on is
    the last question's, consistent with the item's verdict and evidence line, and labelled alone."""
    from iadgpt.evidence import Evidence
    from iadgpt.grounding import consistent, positions_in
    from iadgpt.training.corpus import QUESTIONS

    ds = trainer.dataset
    ds.set_epoch(0)
    plain = ds[1]
    assert plain["turns"] == [], "without --follow-ups an item is the first question and answer"
    kind_of = {q: kind for kind, questions in QUESTIONS.items() for q in questions}
    ds.follow_up_ratio = 1.0
    try:
        items = [ds[i] for i in range(len(ds))]
        batch = trainer.batch(list(range(2)))
    finally:
        ds.follow_up_ratio = 0.0
    for item in items:
        turns = item["turns"]
        assert turns[0]["role"] == "assistant" and turns[0]["content"].startswith("Yes")
        assert turns[-1]["role"] == "user" and 2 <= len(turns) <= 6
        line = item["evidence"]
        position = line.split("strongest response at the ")[1].split(";")[0]
        assert positions_in(position), line
        size = line.split("size: ")[1].split(",")[0]
        area = float(line.split("size: ")[1].split(", ")[1].split(" %")[0]) / 100
        evidence = Evidence(position, int(line.split("regions: ")[1].split(";")[0]), area, None, ())
        assert evidence.size == size
        kind = kind_of[turns[-1]["content"]]
        if kind in ("where", "size", "count", "ship", "action", "compare"):
            assert consistent(kind, item["answer"], True, evidence), (kind, line, item["answer"])
    assert torch.equal(items[1]["image"], plain["image"]), "the image and its anomaly are drawn as before"
    messages = [inspection_messages(trainer.preset.llm.system_prompt, c, e) + t
                for c, e, t in zip(batch["class_name"], batch["evidence"], batch["turns"], strict=True)]
    ids, mask, labels = build_training_batch(trainer.llm, messages, batch["answer"])
    tok = trainer.llm.tokenizer
    for b, answer in enumerate(batch["answer"]):
        labelled = labels[b][labels[b] != IGNORE_INDEX].tolist()
        assert tok.decode(labelled[:-1]) == answer, "only the last answer is trained on"


def test_type_banks_name_the_follow_ups_types_from_other_products(trainer) -> None:
    """With --tune-llm the LLM learns in stage 3 too: a defective item's follow-ups then read types named
    from another product's bank, so the LLM must copy the type from the evidence line instead of
    learning the trained product's ("pitting or dent" said of a magnetic tile's blowhole)."""
    from iadgpt.prompt_bank import load_bank

    ds = trainer.dataset
    ds.set_epoch(0)
    tile = load_bank("magnetic_tile")
    ds.follow_up_ratio, ds.type_banks = 1.0, [tile]
    try:
        items = [ds[i] for i in range(len(ds))]
    finally:
        ds.follow_up_ratio, ds.type_banks = 0.0, []
    named = [item["evidence"].split("likely type: ")[1].rstrip(".") for item in items if item["mask"].any()]
    types = [t for line in named if line != "unclear" for t in line.split(" or ")]
    assert types, named
    assert set(types) <= set(tile.names), (types, tile.names)
    assert ds[0]["turns"] == [], "without follow-ups the product's own bank names the types"


def test_class_batches_are_seeded_and_single_class() -> None:
    by_class = {"a": [0, 1, 2, 3, 4], "b": [5, 6, 7]}
    sampler = ClassBatchSampler(by_class, batch_size=2, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 5
    assert sorted(i for batch in first for i in batch) == list(range(8))
    assert all(len({i < 5 for i in batch}) == 1 for batch in first)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.skip = 2
    assert list(sampler) == sampler.batches()[2:]
    assert len(list(sampler)) == 5, "skip applies once"


def test_real_images_give_anomalies_and_answers(tmp_path) -> None:
    from iadgpt.config import load_preset
    from iadgpt.data import load_answer_templates
    from iadgpt.training.trainer import SyntheticAnomalyDataset

    samples = [s for s in mvtec_samples(shared_dataset("bsdata"), "train") if s.label == 0][:3]
    ds = SyntheticAnomalyDataset(samples, load_preset("tiny-test"), load_answer_templates(),
                                 method="mix", anomaly_ratio=1.0, seed=0, object_classes=["bsdata"])
    assert "bsdata" in ds.foreground
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (3, 128, 128) and item["mask"].shape == (128, 128)
        assert (item["mask"].sum() > 0) == item["answer"].startswith("Yes")


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def test_stage2_steps_reduce_focal_and_dice_on_a_fixed_batch(trainer) -> None:
    batch = trainer.batch([0, 1])
    assert batch["mask"].sum() > 0
    before = trainer.losses(batch)
    params = trainer.set_stage(2)
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    for _ in range(5):
        out = trainer.forward(batch)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    after = trainer.losses(batch)
    seg_before = before["focal"] + before["dice"]
    seg_after = after["focal"] + after["dice"]
    assert seg_after < seg_before - 0.02, (before, after)


@pytest.mark.parametrize("stage", [1, 3])
def test_stage_trains_only_its_parts(data_root, tmp_path, stage) -> None:
    cfg = TrainConfig(data=data_root, out_dir=tmp_path, stage=stage, batch_size=2, max_steps=1, lr=1e-2,
                      anomaly_ratio=0.5, progress=False)
    t = Trainer(cfg)
    parts = {name: _snapshot(getattr(t.model, name)) for name in ("decoder", "tge", "mmf")}
    towers, llm = _snapshot(t.model.towers), _snapshot(t.llm.model)
    t.run()
    trained = {1: {"tge"}, 3: {"tge", "mmf"}}[stage]
    for name, before in parts.items():
        changed = not _same(before, _snapshot(getattr(t.model, name)))
        assert changed == (name in trained), f"stage {stage}: {name} changed={changed}"
    assert _same(towers, _snapshot(t.model.towers)), "the image/text towers never change"
    assert _same(llm, _snapshot(t.llm.model)), "the LLM never changes"
    assert not any(p.requires_grad for p in t.llm.model.parameters())
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["step", "epoch"]
    assert {"loss", "ce", "lr", "images_per_s"} <= set(lines[0])
    assert json.loads((tmp_path / "config.json").read_text())["stage"] == stage
    assert (tmp_path / "train.log").read_text().strip()


def test_tune_llm_trains_the_llm_in_stage_three_and_saves_it(data_root, tmp_path) -> None:
    """--tune-llm: stage 3 trains the LLM beside TGE and MMF (on follow-up answers with real image
    tokens, which stage 0 never showed it), the saved weights hold that LLM, and it loads back; the
    towers and the decoder stay as they were."""
    from iadgpt.weights import load_trainable

    cfg = TrainConfig(data=data_root, out_dir=tmp_path, stage=3, batch_size=2, max_steps=2, lr=1e-2,
                      anomaly_ratio=0.5, follow_ups=1.0, tune_llm=True, progress=False)
    t = Trainer(cfg)
    towers, decoder, llm = _snapshot(t.model.towers), _snapshot(t.model.decoder), _snapshot(t.llm.model)
    t.run()
    tuned = _snapshot(t.llm.model)
    assert not _same(llm, tuned), "the LLM was trained"
    words = [k for k in llm if "embed_tokens" in k or "lm_head" in k]
    assert words and all(torch.equal(llm[k], tuned[k]) for k in words), \
        "its word embeddings and output head stay (other products' words keep their place)"
    assert _same(towers, _snapshot(t.model.towers)) and _same(decoder, _snapshot(t.model.decoder))
    _, parts = load_trainable(tmp_path / "weights")
    assert _same({k: v for k, v in tuned.items()}, {k: v.to(tuned[k].dtype) for k, v in parts["llm"].items()})
    with pytest.raises(ConfigError, match="needs --stage 3"):
        TrainConfig(data=data_root, out_dir=tmp_path / "x", stage=2, tune_llm=True).check()
    with pytest.raises(ConfigError, match="give both"):
        TrainConfig(data=data_root, out_dir=tmp_path / "x", stage=3, tune_embeddings=True).check()
    cfg.out_dir, cfg.tune_embeddings = tmp_path / "words", True
    t = Trainer(cfg)
    t.run()
    assert not all(torch.equal(llm[k], _snapshot(t.llm.model)[k]) for k in words), "--tune-embeddings trains them"


def test_llm_lr_moves_the_tuned_llm_at_its_own_rate(data_root, tmp_path) -> None:
    """--llm-lr: with --tune-llm the LLM has its own learning rate (a tiny one leaves it nearly as it was,
    while TGE and MMF train at --lr); without --tune-llm it is refused."""
    cfg = TrainConfig(data=data_root, out_dir=tmp_path, stage=3, batch_size=2, max_steps=2, lr=1e-2, llm_lr=1e-9,
                      warmup_steps=0, anomaly_ratio=0.5, follow_ups=1.0, tune_llm=True, progress=False)
    t = Trainer(cfg)
    tge, llm = _snapshot(t.model.tge), _snapshot(t.llm.model)
    t.run()
    after = _snapshot(t.llm.model)
    moved = max(float((after[k] - llm[k]).abs().max()) for k in llm)
    assert 0 < moved < 1e-6, f"the LLM moved by {moved} at lr 1e-9"
    assert max(float((v - tge[k]).abs().max()) for k, v in _snapshot(t.model.tge).items()) > 1e-4
    with pytest.raises(ConfigError, match="only with --tune-llm"):
        TrainConfig(data=data_root, out_dir=tmp_path / "x", stage=3, llm_lr=1e-4).check()


def test_resume_gives_the_same_weights_and_they_load(tmp_path, monkeypatch) -> None:
    data = _texture_dataset(tmp_path / "data", {"tile": 2})
    common = dict(data=data, stage=1, epochs=2, batch_size=1, lr=1e-2, seed=5, progress=False)
    straight = Trainer(TrainConfig(out_dir=tmp_path / "straight", **common)).run()

    original = Trainer._checkpoint

    def interrupt(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt  # the run dies right after its first checkpoint (end of epoch 1)

    monkeypatch.setattr(Trainer, "_checkpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(out_dir=tmp_path / "resumed", **common)).run()
    monkeypatch.setattr(Trainer, "_checkpoint", original)

    last = tmp_path / "resumed" / "checkpoints" / "last"
    manifest = json.loads((last / "manifest.json").read_text())
    assert manifest["extra"] == {"stage": 1, "epoch": 1, "global_step": 2}
    assert manifest["preset"] == "tiny-test" and set(manifest["files"]) == {
        "decoder.safetensors", "tge.safetensors", "mmf.safetensors"}
    with safe_open(str(last / TRAINER_STATE), framework="pt") as f:
        keys = set(f.keys())
        state = json.loads(f.metadata()["trainer_state"])
        assert f.get_tensor("rng.torch").dtype == torch.uint8
    assert any(k.startswith("optimizer.state.") and k.endswith("exp_avg") for k in keys)
    assert state["progress"] == {"stage": 1, "epoch": 1, "batch": 0, "stage_step": 2, "global_step": 2,
                                 "done": False}
    assert state["scheduler"]["__keys__"], "scheduler state is stored as JSON"
    assert not (tmp_path / "resumed" / "weights").exists()

    resumed = Trainer(TrainConfig(out_dir=tmp_path / "resumed", resume=True, **common)).run()
    from iadgpt.weights import load_trainable

    _, a = load_trainable(straight)
    _, b = load_trainable(resumed)
    for part in ("decoder", "tge", "mmf"):
        assert _same(a[part], b[part]), f"{part} differs after resume"
    _, first_epoch = load_trainable(last)  # now the end of epoch 2
    assert _same(first_epoch["tge"], b["tge"])

    from iadgpt.inspector import Inspector

    inspector = Inspector("tiny-test", weights=resumed, class_name="tile")
    assert inspector.trained and inspector.mode == "zero-shot"
    result = inspector.inspect(next((data / "tile" / "train" / "good").iterdir()), generate_answer=False)
    assert result.verdict in ("good", "defective") and 0.0 <= result.score <= 1.0


def test_a_checkpoint_save_that_fills_the_disk_keeps_the_previous_trainer_state(tmp_path, monkeypatch) -> None:
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / TRAINER_STATE
    save_trainer_state(path, optimizer, scheduler, {"stage": 1, "epoch": 1, "global_step": 1})
    before = path.read_bytes()

    def half_then_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(iadgpt.training.state, "save_file", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        save_trainer_state(path, optimizer, scheduler, {"stage": 1, "epoch": 2, "global_step": 2})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [TRAINER_STATE]
    opt_state, _, progress, rng = load_trainer_state(path)  # --resume goes on from epoch 1
    assert progress["epoch"] == 1 and opt_state["state"][0]["step"] == 1 and "rng.torch" in rng


def test_train_cli_arguments(tmp_path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--data", str(tmp_path), "--stage", "2", "--epochs", "3", "--lr", "2e-4",
                              "--batch-size", "4", "--seed", "1", "--out", str(tmp_path / "run"), "--resume",
                              "--max-steps", "7", "--synthesis", "mix", "--classes", "a", "b",
                              "--patch-frac", "0.02", "0.1", "--checkpoint-every", "5", "--product", "tile",
                              "--stage-epochs", "2=23", "3=24"])
    cfg = config_from_args(args)
    assert cfg.epochs_by_stage == {2: 23, 3: 24} and cfg.stage_epochs(2) == 23 and cfg.stage_epochs(1) == 3
    assert (cfg.stage, cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed) == (2, 3, 2e-4, 4, 1)
    assert cfg.resume and cfg.max_steps == 7 and cfg.synthesis == "mix" and cfg.classes == ["a", "b"]
    assert cfg.patch_frac == (0.02, 0.1) and cfg.checkpoint_every == 5 and cfg.product == "tile"
    assert cfg.out_dir == tmp_path / "run" and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "x", "--stage", "4"])
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "x", "--stage-epochs", "2:23"])


def test_checkpoint_every_saves_fewer_epochs_and_resumes_exactly(tmp_path, monkeypatch) -> None:
    data = _texture_dataset(tmp_path / "data", {"tile": 2})
    common = dict(data=data, stage=1, epochs=3, batch_size=1, lr=1e-2, seed=2, progress=False,
                  checkpoint_every=2)
    saved: list[int] = []
    original = Trainer._checkpoint

    def record(self, optimizer, scheduler, progress):
        saved.append(progress["epoch"])
        original(self, optimizer, scheduler, progress)

    monkeypatch.setattr(Trainer, "_checkpoint", record)
    straight = Trainer(TrainConfig(out_dir=tmp_path / "straight", **common)).run()
    assert saved == [2, 3], "epoch 1 is skipped; the stage's last epoch is always saved"

    def interrupt(self, optimizer, scheduler, progress):
        original(self, optimizer, scheduler, progress)
        raise KeyboardInterrupt  # dies right after the epoch-2 checkpoint

    monkeypatch.setattr(Trainer, "_checkpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(out_dir=tmp_path / "resumed", **common)).run()
    monkeypatch.setattr(Trainer, "_checkpoint", original)
    resumed = Trainer(TrainConfig(out_dir=tmp_path / "resumed", resume=True, **common)).run()
    from iadgpt.weights import load_trainable

    _, a = load_trainable(straight)
    _, b = load_trainable(resumed)
    assert _same(a["tge"], b["tge"]), "resuming from a sparser checkpoint gives the same weights"
    with pytest.raises(ConfigError, match="checkpoint_every"):
        TrainConfig(data=data, checkpoint_every=0).check()


def test_product_trains_a_folder_as_the_product_and_eval_follows_the_weights(tmp_path) -> None:
    """bsdata's folder holds ball-screw drives: trained with --product the prompts name the product,
    the weights record it, and evaluation of the same folder inspects it as that product by default."""
    from types import SimpleNamespace

    from iadgpt.evaluation import EvalConfig, product_names

    data = _texture_dataset(tmp_path / "data", {"bsdata": 2})
    cfg = TrainConfig(data=data, out_dir=tmp_path / "run", stage=1, max_steps=1, batch_size=2,
                      product="ball_screw_drive", progress=False)
    trainer = Trainer(cfg)
    assert set(trainer.prompts) == {"ball_screw_drive"} and trainer.banks["ball_screw_drive"].sentences
    assert {trainer.dataset[i]["class_name"] for i in range(2)} == {"ball_screw_drive"}
    weights = trainer.run()
    manifest = json.loads((weights / "manifest.json").read_text())
    assert manifest["extra"]["products"] == {"bsdata": "ball_screw_drive"}

    inspector = SimpleNamespace(weights_manifest=manifest)
    assert product_names(EvalConfig(data=data), ["bsdata", "other"], inspector) == {
        "bsdata": "ball_screw_drive", "other": "other"}
    assert product_names(EvalConfig(data=data, product="tile"), ["bsdata"], inspector) == {"bsdata": "tile"}
    with pytest.raises(ConfigError, match="one product"):
        product_names(EvalConfig(data=data, product="tile"), ["a", "b"], inspector)
    two = _texture_dataset(tmp_path / "two", {"carpet": 1, "wood": 1})
    with pytest.raises(ConfigError, match="2 classes"):
        Trainer(TrainConfig(data=two, out_dir=tmp_path / "r2", stage=1, product="tile", progress=False))
