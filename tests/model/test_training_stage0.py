"""Stage 0 on tiny-test: towers and LLM trained from scratch, saved with the heads, loaded by Inspector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from iadgpt.config import load_preset
from iadgpt.errors import ConfigError
from iadgpt.llm import inspection_messages
from iadgpt.position import POSITIONS
from iadgpt.prompt_bank import load_bank
from iadgpt.training.corpus import conversation_batch, sample_conversation
from iadgpt.training.pretext import cells_tensor
from iadgpt.training.trainer import TrainConfig, Trainer
from tests.model.test_training import _same, _snapshot, _texture_dataset


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return _texture_dataset(tmp_path_factory.mktemp("stage0-data"), {"carpet": 4})


def test_all_includes_stage0_only_for_towers_without_weights() -> None:
    assert TrainConfig(stage="all").stages_for(load_preset("tiny-test")) == [0, 1, 2, 3]
    # the built-in model: a pretrained image tower, but its small LLM is trained from scratch (stage 0, LM only)
    assert TrainConfig(stage="all").stages_for(load_preset("unified-lite0")) == [0, 1, 2, 3]
    assert TrainConfig(stage="all").stages_for(load_preset("paper")) == [1, 2, 3]
    assert TrainConfig(stage="all", init_weights=Path("w")).stages_for(load_preset("unified-lite0")) == [1, 2, 3]
    with pytest.raises(ConfigError, match="pretrained towers"):
        TrainConfig(stage=0).stages_for(load_preset("paper"))


def test_corpus_is_deterministic_and_consistent() -> None:
    from iadgpt.data import load_answer_templates

    banks = {"carpet": load_bank("carpet")}
    templates = load_answer_templates()
    a = conversation_batch(3, 10, 32, banks, templates, "sys")
    assert a == conversation_batch(3, 10, 32, banks, templates, "sys")
    assert a != conversation_batch(3, 11, 32, banks, templates, "sys")
    for talk in a:
        first = talk.messages[2]["content"] if len(talk.messages) > 2 else talk.answer
        assert first.startswith("Yes") == talk.anomalous and first.startswith("No") != talk.anomalous
        assert bool(talk.cells) == talk.anomalous
        if talk.anomalous:
            assert POSITIONS[talk.cells[0]] in first
    follow_ups = [t for t in a if len(t.messages) > 2]
    assert follow_ups and all(t.messages[-1]["role"] == "user" for t in follow_ups)
    talk = sample_conversation(np.random.default_rng(0), "carpet", banks["carpet"], templates, "sys", anomaly_ratio=1)
    assert talk.anomalous and cells_tensor([talk.cells]).sum() == len(talk.cells)


def test_stage0_speaks_of_many_products_and_calls_a_good_one_the_part() -> None:
    """An LLM that saw one product name said "the ball screw drive looks normal" of any part: the corpus's
    prompts name the trained classes, every shipped bank's class and generic parts (never the held-out
    names), and its answers call a good part "the part", never by a product's name."""
    from iadgpt.data import load_answer_templates
    from iadgpt.prompt_bank import available_banks
    from iadgpt.training.corpus import HELD_OUT_NAMES, corpus_banks

    banks = corpus_banks(["ball_screw_drive"])
    assert {"ball_screw_drive", "magnetic_tile", "steel_bolt", "gear"} <= set(banks) and len(banks) > 100
    assert set(available_banks()) <= set(banks)
    assert not {h.replace(" ", "_") for h in HELD_OUT_NAMES} & set(banks)
    talks = conversation_batch(0, 0, 256, banks, load_answer_templates(), "sys")
    named = {t.messages[1]["content"].split("photo of a ")[1].split(" for industrial")[0] for t in talks}
    assert len(named) > 60
    normal = [t.answer for t in talks if "looks normal" in t.answer]
    assert normal and all("the part looks normal" in a.lower() for a in normal), normal



def test_size_answers_repeat_the_evidence_lines_span_from_the_place_to_the_size() -> None:
    """After "size: " alone the small LLM said "tiny, 0.2 %" of every defect; it copies a span it has
    started after "at the". So every corpus answer that gives the size repeats the evidence line from
    "at the" through the size word for word, and is consistent with that evidence."""
    from iadgpt.data import load_answer_templates
    from iadgpt.evidence import Evidence
    from iadgpt.grounding import consistent
    from iadgpt.training.corpus import answer

    rng = np.random.default_rng(0)
    evidences = [Evidence("top left and center", 2, 0.031, "line", ("crack",)),
                 Evidence("bottom", 1, 0.0004, None, ()), Evidence("right", 3, 0.15, "patch", ("stain",))]
    for evidence in evidences:
        line = evidence.text()
        span = line[line.index("at the "):line.index(" of the image") + len(" of the image")]
        assert span == f"at the {evidence.position}; size: {evidence.size_phrase}"
        for kind in ("size", "describe"):
            reply = answer(kind, True, evidence, rng)
            assert span in reply and consistent(kind, reply, True, evidence), (kind, reply)
        count = answer("count", True, evidence, rng)
        assert f"regions: {evidence.count}" in line and consistent("count", count, True, evidence), count
    talks = conversation_batch(1, 0, 256, {"carpet": load_bank("carpet")}, load_answer_templates(), "sys")
    sized = [t for t in talks if t.anomalous and " size: " in t.answer]
    assert sized, "the corpus asks about sizes"
    for talk in sized:
        line = talk.messages[1]["content"]
        assert talk.answer[talk.answer.index("at the "):].rstrip(".").split("; likely type")[0] in line
def test_flipped_slots_leave_the_text_and_say_the_other_state_of_follow_ups_only() -> None:
    """With --flip-slots the image slots of some conversations with follow-ups say the other state than
    the verdict, so the LLM must answer a follow-up from the verdict in the history: a good part whose
    image tokens look like a defect's stays good after its "No". The text of every conversation is
    the one drawn without flipping, and a first answer alone always has slots that agree with it."""
    from iadgpt.data import load_answer_templates

    banks, templates = {"carpet": load_bank("carpet")}, load_answer_templates()
    plain = conversation_batch(2, 5, 128, banks, templates, "sys")
    flipped = conversation_batch(2, 5, 128, banks, templates, "sys", flip_slots=1.0)
    assert [(t.messages, t.answer, t.anomalous) for t in plain] == [(t.messages, t.answer, t.anomalous)
                                                                    for t in flipped]
    assert all(t.slot_state == t.anomalous for t in plain)
    for talk in flipped:
        if len(talk.messages) > 2:
            assert talk.slot_state != talk.anomalous and not talk.slot_cells
            verdict = talk.messages[2]["content"]
            assert verdict.startswith("Yes" if talk.anomalous else "No"), verdict
        else:
            assert talk.slot_state == talk.anomalous
    half = conversation_batch(2, 5, 128, banks, templates, "sys", flip_slots=0.5)
    follow = [t for t in half if len(t.messages) > 2]
    assert 0.3 < np.mean([t.slot_state != t.anomalous for t in follow]) < 0.7


def test_slot_cells_say_how_many_cells_are_lit_but_not_where() -> None:
    """The place an answer names must be copied from the evidence line: the slots light as many cells
    as the defect covers, at random places, drawn without changing the text of the corpus."""
    from dataclasses import replace

    from iadgpt.data import load_answer_templates

    banks = {"carpet": load_bank("carpet")}
    templates = load_answer_templates()
    batch = conversation_batch(3, 10, 64, banks, templates, "sys")
    anomalous = [t for t in batch if t.anomalous]
    assert anomalous and all(len(t.slot_cells) == len(t.cells) for t in batch)
    assert sum(set(t.slot_cells) != set(t.cells) for t in anomalous) > len(anomalous) // 2
    assert [replace(t, slot_cells=()) for t in batch] == _without_slot_cells(3, 10, 64, banks, templates)


def _without_slot_cells(seed, step, size, banks, templates):
    """conversation_batch(seed, step, size) as it drew before slot cells existed."""
    rng = np.random.default_rng([seed, 7919, step])
    names = sorted(banks)
    out = []
    for _ in range(size):
        name = names[int(rng.integers(len(names)))]
        out.append(sample_conversation(rng, name, banks[name], templates, "sys"))
    return out


def test_a_stage0_checkpoint_given_as_init_continues_with_its_slots(data_root, tmp_path) -> None:
    common = dict(data=data_root, stage=0, stage0_epochs=1, batch_size=2, text_batch_size=2, seed=4, progress=False)
    first = Trainer(TrainConfig(out_dir=tmp_path / "first", **common))
    first.run()
    checkpoint = tmp_path / "first" / "checkpoints" / "last"
    fresh = Trainer(TrainConfig(out_dir=tmp_path / "fresh", **common))
    assert not _same(_snapshot(fresh.pretext), _snapshot(first.pretext)), "stage 0 trained the slots"
    continued = Trainer(TrainConfig(out_dir=tmp_path / "continued", init_weights=checkpoint, **common))
    assert _same(_snapshot(continued.pretext), _snapshot(first.pretext))
    assert _same(_snapshot(continued.llm.model), _snapshot(first.llm.model))


def test_stage0_lowers_its_loss_on_a_fixed_batch(data_root, tmp_path) -> None:
    trainer = Trainer(TrainConfig(data=data_root, out_dir=tmp_path, stage=0, batch_size=2, anomaly_ratio=1.0,
                                  text_batch_size=4, progress=False))
    batch = trainer.batch([0, 1])
    params = trainer.set_stage(0)
    assert all(p.requires_grad for p in trainer.llm.model.parameters())
    assert all(p.requires_grad for p in trainer.model.decoder.parameters())
    decoder_before = _snapshot(trainer.model.decoder)
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    torch.manual_seed(0)
    with torch.no_grad():
        before = {k: float(v) for k, v in trainer.pretext_forward(batch, 0).items()}
    for _ in range(8):
        out = trainer.pretext_forward(batch, 0)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    torch.manual_seed(0)
    with torch.no_grad():
        after = {k: float(v) for k, v in trainer.pretext_forward(batch, 0).items()}
    assert after["loss"] < before["loss"] - 0.1, (before, after)
    assert after["lm"] < before["lm"] and after["focal"] + after["dice"] < before["focal"] + before["dice"]
    # Stage 0 segments through the model's own decoder, so stage 2 starts from what it learned.
    assert not _same(decoder_before, _snapshot(trainer.model.decoder))


def test_stage0_weights_hold_towers_and_llm_and_load_in_inspector(data_root, tmp_path) -> None:
    from iadgpt.inspector import Inspector
    from iadgpt.weights import load_trainable

    cfg = TrainConfig(data=data_root, out_dir=tmp_path / "run", stage="all", batch_size=2, max_steps=2,
                      text_batch_size=2, progress=False)
    trainer = Trainer(cfg)
    vision_before = _snapshot(trainer.model.towers.clip.visual)
    weights = trainer.run()
    assert [r.stage for r in trainer.results] == [0, 1, 2, 3]
    manifest = json.loads((weights / "manifest.json").read_text())
    assert set(manifest["files"]) == {f"{p}.safetensors" for p in ("decoder", "tge", "mmf", "vision", "llm")}
    assert manifest["extra"]["tokenizer"] and manifest["extra"]["stages"] == [0, 1, 2, 3]
    # Final weights leave the stage-0 slots out; the last checkpoint (stage 3) keeps them, so a tuned
    # stage 3 with --replay can start from it.
    checkpoint = json.loads((cfg.out_dir / "checkpoints" / "last" / "manifest.json").read_text())
    assert checkpoint["extra"]["stage"] == 3 and "pretext.safetensors" in checkpoint["files"]
    _, saved = load_trainable(cfg.out_dir / "checkpoints" / "last")
    assert _same(saved["pretext"], _snapshot(trainer.pretext))
    vision_after = _snapshot(trainer.model.towers.clip.visual)
    assert not _same(vision_before, vision_after), "stage 0 trained the image tower"

    inspector = Inspector("tiny-test", weights=weights, class_name="carpet")
    assert _same(_snapshot(inspector.model.towers.clip.visual), vision_after)
    assert _same(_snapshot(inspector.llm.model), _snapshot(trainer.llm.model))
    result = inspector.inspect(next((data_root / "carpet" / "train" / "good").iterdir()), generate_answer=False)
    assert result.verdict in ("good", "defective") and inspector.trained


def test_stage0_resume_gives_the_same_weights(data_root, tmp_path, monkeypatch) -> None:
    from iadgpt.weights import load_trainable

    common = dict(data=data_root, stage=0, stage0_epochs=2, batch_size=2, text_batch_size=2, seed=4,
                  progress=False)
    straight = Trainer(TrainConfig(out_dir=tmp_path / "straight", **common)).run()
    original = Trainer._checkpoint

    def interrupt(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_checkpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        Trainer(TrainConfig(out_dir=tmp_path / "resumed", **common)).run()
    monkeypatch.setattr(Trainer, "_checkpoint", original)
    assert (tmp_path / "resumed" / "checkpoints" / "last" / "pretext.safetensors").is_file()
    resumed = Trainer(TrainConfig(out_dir=tmp_path / "resumed", resume=True, **common)).run()
    _, a = load_trainable(straight)
    _, b = load_trainable(resumed)
    assert set(a) == set(b) == {"decoder", "tge", "mmf", "vision", "llm"}
    for part in a:
        assert _same(a[part], b[part]), f"{part} differs after resume"


def test_stage0_llm_learns_to_answer_from_the_image_slots(data_root, tmp_path) -> None:
    """LM loss on the answers: after a short LM-only stage 0 the slots decide between "Yes" and "No"."""
    from iadgpt.training.conversation import build_training_batch

    trainer = Trainer(TrainConfig(data=data_root, out_dir=tmp_path, stage=0, progress=False))
    trainer.set_stage(0)
    assert trainer.pretext is not None and trainer.pretext_step is not None
    optimizer = torch.optim.AdamW(list(trainer.llm.model.parameters()) + list(trainer.pretext.parameters()), lr=3e-3)
    torch.manual_seed(0)
    for i in range(300):
        talks = conversation_batch(0, i, 8, trainer.banks, trainer.templates, trainer.preset.llm.system_prompt)
        ids, mask, labels = build_training_batch(trainer.llm, [t.messages for t in talks], [t.answer for t in talks])
        anomalous = torch.tensor([t.anomalous for t in talks])
        loss = trainer.pretext_step.lm_loss(ids, mask, anomalous, cells_tensor([t.cells for t in talks]), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    evidence = "Map evidence: strongest response at the center; 1 region; size: small, 1.0 % of the image."
    messages = inspection_messages(trainer.preset.llm.system_prompt, next(iter(trainer.banks)), evidence)
    answers, p_yes = [], []
    with torch.no_grad():
        for anomalous in (False, True):
            slots = trainer.pretext.slots(torch.tensor([anomalous]), cells_tensor([(4,) if anomalous else ()]))
            embeds, mask = trainer.llm.embed_prompt(messages, slots)
            p_yes.append(trainer.llm.verdict(embeds, mask)[0].p_yes)
            answers.append("".join(trainer.llm.stream(embeds, mask, max_new_tokens=16)).strip())
    assert p_yes[0] < 0.5 < p_yes[1], p_yes
    assert answers[0].startswith("No") and answers[1].startswith("Yes"), answers


def test_replay_trains_the_tuned_llm_on_the_stage0_corpus_through_its_slots(data_root, tmp_path) -> None:
    """--tune-llm --replay W: every stage-3 step also takes the stage-0 LM loss on a corpus batch (the
    slots for the image, frozen), weighted W; the slots come from --init and stay in the checkpoints, so
    a resumed run replays the same; weights without slots, or --replay without --tune-llm, are refused."""
    from iadgpt.training.pretext import PRETEXT_PART
    from iadgpt.weights import load_trainable

    common = dict(data=data_root, batch_size=2, text_batch_size=2, seed=4, progress=False)
    first = Trainer(TrainConfig(out_dir=tmp_path / "s0", stage=0, stage0_epochs=1, **common))
    first.run()
    checkpoint = tmp_path / "s0" / "checkpoints" / "last"
    t = Trainer(TrainConfig(out_dir=tmp_path / "s3", stage=3, max_steps=2, lr=1e-2, tune_llm=True, replay=0.5,
                            init_weights=checkpoint, **common))
    slots, llm = _snapshot(t.pretext), _snapshot(t.llm.model)
    t.run()
    assert _same(slots, _snapshot(t.pretext)), "the slots are read, not trained"
    assert not _same(llm, _snapshot(t.llm.model)), "the LLM was tuned"
    steps = [json.loads(line) for line in (tmp_path / "s3" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "step"]
    assert len(steps) == 2
    for r in steps:
        assert r["replay"] > 0
        assert r["loss"] == pytest.approx(r["ce"] + 0.5 * r["replay"], rel=1e-4)
    _, saved = load_trainable(tmp_path / "s3" / "checkpoints" / "last")
    assert PRETEXT_PART in saved
    with pytest.raises(ConfigError, match="holds none"):
        Trainer(TrainConfig(out_dir=tmp_path / "x", stage=3, tune_llm=True, replay=1.0,
                            init_weights=tmp_path / "s0" / "weights", **common))
    with pytest.raises(ConfigError, match="only with --tune-llm"):
        TrainConfig(data=data_root, out_dir=tmp_path / "y", stage=3, replay=1.0).check()


def test_by_bank_says_a_rare_banks_defect_names_as_often_as_the_generic_ones() -> None:
    """Some 130 of the 158 class names share the generic bank, so drawn by name a bank that one product has (a
    magnetic tile's "blowhole") is almost never said; drawn bank first, every distinct bank is."""
    from iadgpt.data import load_answer_templates
    from iadgpt.training.corpus import corpus_banks, distinct_banks

    banks = corpus_banks(["ball_screw_drive"])
    groups = distinct_banks(banks)
    assert len(groups) < len(banks) // 4 and any(len(names) > 100 for names in groups.values())
    templates = load_answer_templates()

    def share(by_bank: float) -> float:
        talks = [t for step in range(8) for t in conversation_batch(5, step, 256, banks, templates, "sys",
                                                                    by_bank=by_bank)]
        return sum("magnetic tile" in t.messages[1]["content"] for t in talks) / len(talks)

    by_name, first = share(0.0), share(1.0)
    assert by_name < 2.0 / len(groups) < 2 * first and first > 2 * by_name, (by_name, first)
    assert conversation_batch(5, 0, 64, banks, templates, "sys") == \
        conversation_batch(5, 0, 64, banks, templates, "sys", by_bank=0.0), "by default the corpus is as it was"


def test_copy_vocabulary_holds_the_evidence_lines_fields_and_not_its_wording() -> None:
    """--copy-weight: the tokens an answer copies from the evidence line are its place, share, count and
    type names ("1.7 %" was said of every small region: the decimal was never copied)."""
    from iadgpt.builder import build_model
    from iadgpt.evidence import Evidence
    from iadgpt.training.conversation import copy_vocabulary

    _, llm = build_model(load_preset("tiny-test"), "cpu", torch.float32)
    line = Evidence("top left and center", 3, 0.012, "spot", ("blowhole", "stain")).text()
    prompt = inspection_messages("sys", "magnetic_tile", line)[1]["content"]
    vocab = copy_vocabulary(llm, [prompt, "no evidence line here"])
    tok = llm.tokenizer
    words = {tok.decode([i]).strip() for i in vocab[0].nonzero().flatten().tolist()}
    for field in ("top left center", "small", "1.2", "3", "blowhole stain"):
        ids = tok(" " + field, add_special_tokens=False)["input_ids"]
        assert all(vocab[0, i] for i in ids if any(c.isalnum() for c in tok.decode([i]))), (field, words)
    assert not words & {"the", "or", "and", "size", "image", "Map", "evidence", "%", ".", ","}, words
    verdict = sorted(llm.yes_ids | llm.no_ids)
    assert verdict and vocab[:, verdict].all(), "the verdict word counts as much as the copied fields"
    assert int(vocab[1].sum()) == len(verdict), "no evidence line: the verdict words only"


def test_copy_weight_counts_the_copied_tokens_w_times_in_the_answer_loss() -> None:
    """losses.lm_loss with weight w is the weighted mean of the copied and the other labelled tokens' mean
    losses, each taken by the LLM's own loss; w = 1 is its plain loss."""
    from iadgpt.builder import build_model
    from iadgpt.data import load_answer_templates
    from iadgpt.llm import IGNORE_INDEX, embed_with_image
    from iadgpt.training.conversation import build_training_batch, copy_vocabulary
    from iadgpt.training.losses import lm_loss

    _, llm = build_model(load_preset("tiny-test"), "cpu", torch.float32)
    talks = conversation_batch(5, 0, 6, {"carpet": load_bank("carpet")}, load_answer_templates(), "sys")
    ids, mask, labels = build_training_batch(llm, [t.messages for t in talks], [t.answer for t in talks])
    vocab = copy_vocabulary(llm, [t.messages[1]["content"] for t in talks])
    image = torch.zeros(len(talks), 4, llm.hidden_size)
    embeds, attn, spliced = embed_with_image(llm.model, ids, image, llm.image_token_id, llm.tokenizer.pad_token_id,
                                             mask, labels)
    copied = torch.zeros_like(spliced, dtype=torch.bool)
    copied[:, 1:] = vocab.gather(1, spliced[:, 1:].clamp(min=0)) & (spliced[:, 1:] != IGNORE_INDEX)
    only = {flag: spliced.masked_fill(copied != flag, IGNORE_INDEX) for flag in (True, False)}
    counts = {flag: int((only[flag][:, 1:] != IGNORE_INDEX).sum()) for flag in (True, False)}
    assert counts[True] > 0 and counts[False] > 0
    with torch.no_grad():
        means = {flag: float(llm.model(inputs_embeds=embeds, attention_mask=attn, labels=only[flag]).loss)
                 for flag in (True, False)}
        plain = float(lm_loss(llm.model, embeds, attn, spliced))
        for w in (1.0, 4.0):
            want = (counts[False] * means[False] + w * counts[True] * means[True]) / (counts[False] + w * counts[True])
            weights = 1.0 + (w - 1.0) * vocab.float()
            assert float(lm_loss(llm.model, embeds, attn, spliced, weights)) == pytest.approx(want, rel=1e-4)
        assert float(lm_loss(llm.model, embeds, attn, spliced, torch.ones(vocab.shape))) == pytest.approx(plain,
                                                                                                        rel=1e-6)
    with pytest.raises(ConfigError, match="copy-weight"):
        TrainConfig(copy_weight=0.5).check()


def test_stage0_and_stage3_train_with_a_copy_weight(data_root, tmp_path) -> None:
    """--copy-weight reaches both LLM losses: a stage-0 run and a tuned stage 3 with replay train and log
    finite losses that differ from the plain mean's on the same batch."""
    common = dict(data=data_root, batch_size=2, text_batch_size=2, seed=4, progress=False)
    plain = Trainer(TrainConfig(out_dir=tmp_path / "p", stage=0, **common))
    weighted = Trainer(TrainConfig(out_dir=tmp_path / "w", stage=0, copy_weight=6.0, **common))
    batch = plain.batch([0, 1])
    with torch.no_grad():
        a, b = float(plain.pretext_forward(batch, 0)["lm"]), float(weighted.pretext_forward(batch, 0)["lm"])
    assert np.isfinite(a) and np.isfinite(b) and abs(a - b) > 1e-4
    weighted.run()
    t = Trainer(TrainConfig(out_dir=tmp_path / "s3", stage=3, max_steps=1, tune_llm=True, replay=0.5, follow_ups=1.0,
                            copy_weight=6.0, init_weights=tmp_path / "w" / "checkpoints" / "last", **common))
    t.run()
    steps = [json.loads(line) for line in (tmp_path / "s3" / "metrics.jsonl").read_text().splitlines()]
    assert [np.isfinite(r["ce"]) and np.isfinite(r["replay"]) for r in steps if r["kind"] == "step"] == [True]


def test_the_answer_loss_on_labelled_positions_is_the_llms_own_loss_and_gradient() -> None:
    """lm_loss runs the output layer on the labelled positions only (a Llama-family LLM): the loss and
    the gradients reaching the image embeddings and the LLM's layers are those of the LLM's own loss
    on its full logits, so the shortcut changes how fast stage 0 runs, not what it learns."""
    from iadgpt.builder import build_model
    from iadgpt.data import load_answer_templates
    from iadgpt.llm import embed_with_image
    from iadgpt.training.conversation import build_training_batch
    from iadgpt.training.losses import _output_head, lm_loss

    _, llm = build_model(load_preset("tiny-test"), "cpu", torch.float32)
    llm.model.requires_grad_(True)  # as stage 0 trains it
    assert _output_head(llm.model) is not None, "the built-in LLM takes the labelled-positions path"
    talks = conversation_batch(8, 0, 6, {"carpet": load_bank("carpet")}, load_answer_templates(), "sys")
    ids, mask, labels = build_training_batch(llm, [t.messages for t in talks], [t.answer for t in talks])
    image = torch.randn(len(talks), 4, llm.hidden_size, generator=torch.Generator().manual_seed(0))

    def loss_and_grads(own: bool) -> tuple[float, torch.Tensor, torch.Tensor]:
        llm.model.zero_grad()
        slots = image.clone().requires_grad_(True)
        embeds, attn, spliced = embed_with_image(llm.model, ids, slots, llm.image_token_id,
                                                 llm.tokenizer.pad_token_id, mask, labels)
        loss = (llm.model(inputs_embeds=embeds, attention_mask=attn, labels=spliced).loss if own
                else lm_loss(llm.model, embeds, attn, spliced))
        loss.backward()
        layer = dict(llm.model.named_parameters())["model.layers.0.self_attn.q_proj.weight"]
        return float(loss.detach()), slots.grad.clone(), layer.grad.clone()

    own, fast = loss_and_grads(True), loss_and_grads(False)
    assert fast[0] == pytest.approx(own[0], rel=1e-5)
    for a, b in zip(fast[1:], own[1:], strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))
        assert float(b.abs().max()) > 0, "the gradient reaches the part"


def test_an_llm_outside_the_llama_family_keeps_its_own_logits(monkeypatch) -> None:
    """A model type whose logits may be scaled or soft-capped is not second-guessed: lm_loss runs its
    whole forward, and the loss, weighted or not, is still its own."""
    from iadgpt.builder import build_model
    from iadgpt.training.losses import _output_head, lm_loss

    _, llm = build_model(load_preset("tiny-test"), "cpu", torch.float32)
    monkeypatch.setattr(llm.model.config, "model_type", "gemma2")
    assert _output_head(llm.model) is None
    ids = torch.randint(5, 200, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :6] = -100
    embeds = llm.model.get_input_embeddings()(ids)
    with torch.no_grad():
        want = float(llm.model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss)
        assert float(lm_loss(llm.model, embeds, mask, labels)) == pytest.approx(want, rel=1e-6)
        ones = torch.ones(2, llm.model.config.vocab_size)  # the weighted path on the full logits
        assert float(lm_loss(llm.model, embeds, mask, labels, ones)) == pytest.approx(want, rel=1e-5)

