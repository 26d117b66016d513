"""Tests of iadgpt.llm.LanguageModel on the tiny offline model built by iadgpt.tiny."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from contextlib import contextmanager

import pytest
import torch

from iadgpt.config import load_preset
from iadgpt.errors import WeightsError
from iadgpt.llm import IMAGE_TOKEN, LanguageModel, plain_transcript, question_text
from iadgpt.tiny import ensure_tiny_llm

PRESET = load_preset("tiny-test")
TINY = PRESET.llm.tiny
SYSTEM = PRESET.llm.system_prompt
QUESTION = "Is there any anomaly in the image?"


def _messages(user: str = f"{IMAGE_TOKEN} {QUESTION}", system: str | None = SYSTEM) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system is not None else []
    return msgs + [{"role": "user", "content": user}]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image(k: int, d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(1, k, d, generator=torch.Generator().manual_seed(seed)) * scale


@contextmanager
def _bias_logits(lm: LanguageModel, token_id: int, value: float = 1e4, from_call: int = 0):
    """Add `value` to one token's logit in every LM-head call from call number `from_call` on."""
    calls = {"n": 0}

    def hook(_module, _inputs, output):
        n = calls["n"]
        calls["n"] += 1
        if n >= from_call:
            output = output.clone()
            output[..., token_id] += value
            return output
        return None

    handle = lm.model.lm_head.register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-llm-a")


@pytest.fixture(scope="module")
def tiny_folder(tiny_root):
    return ensure_tiny_llm(TINY, root=tiny_root)


@pytest.fixture(scope="module")
def lm(tiny_folder) -> LanguageModel:
    return LanguageModel.load(tiny_folder)


@pytest.fixture(scope="module")
def sharp_lm(tiny_folder) -> LanguageModel:
    """The same model with its matrices scaled up, so greedy answers vary from token to token
    (the plain random model repeats one token, which would not tell a broken KV cache apart)."""
    model = LanguageModel.load(tiny_folder)
    with torch.no_grad():
        for p in model.model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    return model


# --------------------------------------------------------------------------------------------------
# the tiny folder


def test_folder_contents(tiny_folder, tiny_root):
    assert tiny_folder.parent == tiny_root
    names = {p.name for p in tiny_folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    # the staging folder was renamed into place, nothing is left beside it
    assert [p.name for p in tiny_root.iterdir()] == [tiny_folder.name]


def test_build_twice_returns_the_same_folder(tiny_folder, tiny_root):
    weights = tiny_folder / "model.safetensors"
    before = (weights.stat().st_mtime_ns, _sha256(weights))
    again = ensure_tiny_llm(TINY, root=tiny_root)
    assert again == tiny_folder
    assert (weights.stat().st_mtime_ns, _sha256(weights)) == before  # not rebuilt


def test_build_is_deterministic_across_roots(tiny_folder, tmp_path):
    other = ensure_tiny_llm(TINY, root=tmp_path)
    assert other != tiny_folder
    assert other.name == tiny_folder.name
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _sha256(other / name) == _sha256(tiny_folder / name), name


def test_the_first_build_prints_no_progress_bar_and_leaves_the_bars_as_they_were(tmp_path, capfd):
    """A newcomer's first start printed "Writing model shards: 100%" from inside the library."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()  # as in a fresh process; other code in this one may have turned them off
    try:
        ensure_tiny_llm(TINY, root=tmp_path)
        assert "Writing model shards" not in capfd.readouterr().err
        assert hf_logging.is_progress_bar_enabled()
    finally:
        if not before:
            hf_logging.disable_progress_bar()


def test_another_seed_gives_other_weights(tiny_folder, tmp_path):
    other = ensure_tiny_llm(dataclasses.replace(TINY, seed=TINY.seed + 1), root=tmp_path)
    assert other.name != tiny_folder.name
    assert _sha256(other / "model.safetensors") != _sha256(tiny_folder / "model.safetensors")
    assert _sha256(other / "tokenizer.json") == _sha256(tiny_folder / "tokenizer.json")


@pytest.mark.parametrize("text", [
    "Prüfung 検査",
    "Yes, there is an anomaly in the image, at the top left of the image.",
    "  two leading spaces, a\ttab and a\nnewline  ",
    "🔩 Riß, ñ, Ω — “quotes” don't",
    "a , b . c !",
])
def test_tokenizer_round_trips_text(lm, text):
    ids = lm.tokenizer.encode(text, add_special_tokens=False)
    assert lm.tokenizer.decode(ids) == text


def test_share_tokens_make_each_share_one_token_and_round_trip(tmp_path):
    """With share_tokens the evidence line's share ("11.5") is one token, which the answer can copy as
    it copies a place word; the line and its answers decode to exactly the text they came from."""
    from iadgpt.evidence import Evidence

    lm = LanguageModel.load(ensure_tiny_llm(dataclasses.replace(TINY, share_tokens=True), root=tmp_path))
    plain = LanguageModel.load(ensure_tiny_llm(TINY, root=tmp_path))
    assert len(lm.tokenizer) == len(plain.tokenizer) + 1001
    for area in (0.0004, 0.009, 0.115, 0.2999, 1.0):
        line = Evidence("top left and center", 2, area, "spot", ("hole", "stain")).text()
        share = f"{100 * area:.1f}"
        pieces = [lm.tokenizer.decode([i]) for i in lm.tokenizer.encode(line, add_special_tokens=False)]
        assert share in pieces, (share, pieces)
        ids = lm.tokenizer.encode(line, add_special_tokens=False)
        assert lm.tokenizer.decode(ids) == line
        assert len(ids) < len(plain.tokenizer.encode(line, add_special_tokens=False))
    for text in ("version 3.14159 of 10.25.2", "Yes, there is an anomaly, 12.0 % of the image."):
        assert lm.tokenizer.decode(lm.tokenizer.encode(text, add_special_tokens=False)) == text


def test_the_built_in_presets_tokenizer_is_the_one_its_shipped_llm_was_trained_with(tmp_path):
    """The shipped LLM weights record their tokenizer's vocabulary; the preset must build that same one
    (a share_tokens setting out of step with the weights would refuse to load them)."""
    import json

    from iadgpt.inspector import shipped_weights
    from iadgpt.tiny import tokenizer_fingerprint

    preset = load_preset("unified-lite0")
    manifest = json.loads((shipped_weights("unified-lite0") / "manifest.json").read_text())
    lm = LanguageModel.load(ensure_tiny_llm(preset.llm.tiny, root=tmp_path))
    assert tokenizer_fingerprint(lm.tokenizer) == manifest["extra"]["tokenizer"]


# --------------------------------------------------------------------------------------------------
# loading errors


def test_load_folder_without_config(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError) as info:
        LanguageModel.load(folder)
    assert str(folder) in str(info.value)


def test_load_folder_without_weights(tiny_folder, tmp_path):
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_folder, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsError) as info:
        LanguageModel.load(folder)
    assert str(folder) in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_load_truncated_weights(tiny_folder, tmp_path, keep):
    folder = tmp_path / "truncated"
    shutil.copytree(tiny_folder, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WeightsError) as info:
        LanguageModel.load(folder)
    assert str(folder) in str(info.value)


# --------------------------------------------------------------------------------------------------
# special tokens


def test_image_token_is_one_token(lm):
    tok = lm.tokenizer
    assert tok.convert_ids_to_tokens(lm.image_token_id) == IMAGE_TOKEN
    assert tok.encode(IMAGE_TOKEN, add_special_tokens=False) == [lm.image_token_id]
    ids = tok.encode(f"a photo{IMAGE_TOKEN}of a {IMAGE_TOKEN}x", add_special_tokens=False)
    assert ids.count(lm.image_token_id) == 2
    assert lm.image_token_id < lm.model.get_input_embeddings().weight.shape[0]


def test_yes_and_no_ids(lm):
    assert lm.yes_ids and lm.no_ids
    assert not (lm.yes_ids & lm.no_ids)
    assert lm.tokenizer.convert_tokens_to_ids("Yes") in lm.yes_ids
    assert lm.tokenizer.convert_tokens_to_ids("No") in lm.no_ids
    assert lm.image_token_id not in lm.yes_ids | lm.no_ids


def test_yes_and_no_ids_mean_yes_and_no(lm):
    for ids, word in ((lm.yes_ids, "yes"), (lm.no_ids, "no")):
        for i in ids:
            piece = lm.tokenizer.decode([i]).strip().lower()
            assert piece and word.startswith(piece), (i, piece)


# --------------------------------------------------------------------------------------------------
# prompt text


def test_prompt_text_with_chat_template(lm):
    assert lm.tokenizer.chat_template
    msgs = _messages()
    text = lm.prompt_text(msgs)
    assert SYSTEM in text
    assert f"{IMAGE_TOKEN} {QUESTION}" in text
    assert text.index(SYSTEM) < text.index(QUESTION)
    assert text.endswith("### Assistant:")
    without = lm.prompt_text(msgs, add_generation_prompt=False)
    assert not without.endswith("### Assistant:")
    assert text == without + "### Assistant:"


def test_prompt_text_without_chat_template_is_the_vicuna_transcript(lm, monkeypatch):
    monkeypatch.setattr(lm.tokenizer, "chat_template", None)
    msgs = _messages(user="U?") + [{"role": "assistant", "content": "A."}, {"role": "user", "content": "V?"}]
    assert lm.prompt_text(msgs) == plain_transcript(msgs)
    assert lm.prompt_text(msgs) == f"{SYSTEM} USER: U? ASSISTANT: A.</s>USER: V? ASSISTANT:"
    assert lm.prompt_text(msgs, add_generation_prompt=False) == f"{SYSTEM} USER: U? ASSISTANT: A.</s>USER: V?"


# --------------------------------------------------------------------------------------------------
# embed_prompt


@pytest.mark.parametrize("k", [1, 7])
def test_embed_prompt(lm, k):
    msgs = _messages()
    ids = lm.tokenizer(lm.prompt_text(msgs), add_special_tokens=False)["input_ids"]
    assert ids.count(lm.image_token_id) == 1
    image = _image(k, lm.hidden_size, seed=k)
    embeds, mask = lm.embed_prompt(msgs, image)
    assert embeds.shape == (1, len(ids) + k - 1, lm.hidden_size)
    assert mask.shape == (1, len(ids) + k - 1)
    assert bool((mask == 1).all())
    assert embeds.dtype == lm.dtype
    p = ids.index(lm.image_token_id)
    torch.testing.assert_close(embeds[0, p:p + k], image[0], rtol=0, atol=0)
    table = lm.model.get_input_embeddings().weight
    torch.testing.assert_close(embeds[0, :p], table[ids[:p]], rtol=0, atol=0)
    torch.testing.assert_close(embeds[0, p + k:], table[ids[p + 1:]], rtol=0, atol=0)


def test_embed_prompt_needs_a_placeholder(lm):
    with pytest.raises(AssertionError, match="exactly one image placeholder"):
        lm.embed_prompt(_messages(user=QUESTION), _image(3, lm.hidden_size, seed=0))


# --------------------------------------------------------------------------------------------------
# verdict


def test_verdict_is_a_probability(lm):
    for seed in range(4):
        embeds, mask = lm.embed_prompt(_messages(), _image(4, lm.hidden_size, seed=seed, scale=3.0))
        (v,) = lm.verdict(embeds, mask)
        assert 0.0 < v.p_yes < 1.0
        assert v.defective == (v.p_yes > 0.5)
        assert isinstance(v.defective, bool) and isinstance(v.p_yes, float)


def test_verdict_depends_on_the_image(lm):
    d = lm.hidden_size
    a = lm.verdict(*lm.embed_prompt(_messages(), torch.zeros(1, 4, d)))[0]
    b = lm.verdict(*lm.embed_prompt(_messages(), _image(4, d, seed=1, scale=10.0)))[0]
    assert abs(a.p_yes - b.p_yes) > 1e-4


def test_verdict_forced_yes(lm):
    embeds, mask = lm.embed_prompt(_messages(), _image(4, lm.hidden_size, seed=0))
    with _bias_logits(lm, lm.tokenizer.convert_tokens_to_ids("Yes")) as calls:
        (v,) = lm.verdict(embeds, mask)
    assert calls["n"] == 1
    assert v.defective is True
    assert v.p_yes > 0.999


def test_verdict_forced_no(lm):
    embeds, mask = lm.embed_prompt(_messages(), _image(4, lm.hidden_size, seed=0))
    with _bias_logits(lm, lm.tokenizer.convert_tokens_to_ids("No")):
        (v,) = lm.verdict(embeds, mask)
    assert v.defective is False
    assert v.p_yes < 1e-3


@pytest.mark.parametrize("side", ["left", "right"])
def test_verdict_of_a_padded_batch_matches_single_rows(lm, side):
    d = lm.hidden_size
    rows = [
        lm.embed_prompt(_messages(), _image(4, d, seed=0, scale=3.0)),
        lm.embed_prompt(_messages(user=f"{IMAGE_TOKEN} Yes?", system=None), _image(4, d, seed=1, scale=5.0)),
    ]
    singles = [lm.verdict(e, m)[0] for e, m in rows]
    T = max(e.shape[1] for e, _ in rows)
    assert rows[0][0].shape[1] != rows[1][0].shape[1]
    padded_e, padded_m = [], []
    for e, m in rows:
        n = T - e.shape[1]
        zeros_e, zeros_m = e.new_zeros(1, n, d), m.new_zeros(1, n)
        if side == "left":
            padded_e.append(torch.cat([zeros_e, e], dim=1))
            padded_m.append(torch.cat([zeros_m, m], dim=1))
        else:
            padded_e.append(torch.cat([e, zeros_e], dim=1))
            padded_m.append(torch.cat([m, zeros_m], dim=1))
    batch = lm.verdict(torch.cat(padded_e), torch.cat(padded_m))
    assert len(batch) == 2
    for got, want in zip(batch, singles, strict=True):
        assert got.defective == want.defective
        assert got.p_yes == pytest.approx(want.p_yes, abs=1e-5)
    assert singles[0].p_yes != pytest.approx(singles[1].p_yes, abs=1e-5)  # the rows are distinguishable


# --------------------------------------------------------------------------------------------------
# stream


def _eos_ids(lm: LanguageModel) -> set[int]:
    eos = lm.model.generation_config.eos_token_id
    return {lm.tokenizer.eos_token_id} | set(eos if isinstance(eos, list) else [eos])


@torch.no_grad()
def _greedy_ids(lm: LanguageModel, embeds: torch.Tensor, n: int) -> list[int]:
    """Greedy decoding with a full forward pass per token and no cache."""
    table = lm.model.get_input_embeddings()
    ids: list[int] = []
    for _ in range(n):
        mask = torch.ones(1, embeds.shape[1], dtype=torch.long)
        logits = lm.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits[0, -1]
        token = int(logits.argmax())
        if token in _eos_ids(lm):
            break
        ids.append(token)
        embeds = torch.cat([embeds, table(torch.tensor([[token]]))], dim=1)
    return ids


@pytest.fixture(scope="module")
def prompt(sharp_lm):
    return sharp_lm.embed_prompt(_messages(), _image(4, sharp_lm.hidden_size, seed=0, scale=3.0))


@pytest.fixture(scope="module")
def greedy(sharp_lm, prompt):
    ids = _greedy_ids(sharp_lm, prompt[0], 16)
    assert len(ids) == 16  # no end-of-sequence in the reference: every step is compared
    while _decode(sharp_lm, ids).endswith("\ufffd"):  # end on a whole character: nothing held back
        ids = ids[:-1]
    assert len(ids) >= 8
    assert len(set(ids)) > 3  # varied enough to tell a broken cache apart
    return ids


def _decode(lm, ids):
    return lm.tokenizer.decode(ids, skip_special_tokens=True)


def test_stream_matches_greedy_without_cache(sharp_lm, prompt, greedy):
    pieces = list(sharp_lm.stream(*prompt, max_new_tokens=len(greedy)))
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    want = _decode(sharp_lm, greedy)
    assert not want.endswith("\ufffd")  # nothing legitimately held back at the end
    assert "".join(pieces) == want


@pytest.mark.parametrize("n", [0, 1, 3, 5])
def test_stream_stops_after_max_new_tokens(sharp_lm, prompt, greedy, n):
    text = "".join(sharp_lm.stream(*prompt, max_new_tokens=n))
    want = _decode(sharp_lm, greedy[:n])
    # a trailing half character is held back, never shown
    assert text == want.rstrip("\ufffd")


def test_stream_should_stop(sharp_lm, prompt, greedy):
    pieces: list[str] = []
    for piece in sharp_lm.stream(*prompt, max_new_tokens=len(greedy), should_stop=lambda: len(pieces) >= 2):
        pieces.append(piece)
    assert len(pieces) == 2
    full = list(sharp_lm.stream(*prompt, max_new_tokens=len(greedy)))
    assert len(full) > 2
    assert pieces == full[:2]


def test_stream_should_stop_at_once(sharp_lm, prompt):
    assert list(sharp_lm.stream(*prompt, max_new_tokens=8, should_stop=lambda: True)) == []


def test_stream_sampling_is_reproducible(sharp_lm, prompt):
    def sample(seed):
        return list(sharp_lm.stream(*prompt, max_new_tokens=10, temperature=1.0, seed=seed))

    first = sample(123)
    assert first
    assert sample(123) == first
    assert any(sample(s) != first for s in (1, 2, 3))


def test_stream_sampling_leaves_the_global_rng_alone(sharp_lm, prompt):
    state = torch.get_rng_state()
    list(sharp_lm.stream(*prompt, max_new_tokens=5, temperature=1.0, seed=7))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("after", [0, 2])
def test_stream_stops_at_eos(sharp_lm, prompt, greedy, after):
    # the first LM-head call scores the first answer token; from call `after` on, eos wins
    with _bias_logits(sharp_lm, sharp_lm.tokenizer.eos_token_id, from_call=after):
        text = "".join(sharp_lm.stream(*prompt, max_new_tokens=len(greedy)))
    assert text == _decode(sharp_lm, greedy[:after]).rstrip("\ufffd")
    if after == 0:
        assert text == ""


def test_stream_answers_one_conversation(sharp_lm, prompt):
    embeds, mask = prompt
    with pytest.raises(AssertionError):
        next(sharp_lm.stream(torch.cat([embeds, embeds]), torch.cat([mask, mask]), max_new_tokens=2))


def test_stream_stops_where_the_model_starts_a_new_turn(lm, monkeypatch):
    """A small model that runs on into '### Human: ...' is cut at the turn marker."""
    script = lm.tokenizer.encode(" top left.\n### Human: What kind?", add_special_tokens=False)
    vocab = lm.model.get_input_embeddings().weight.shape[0]
    state = {"i": 0}
    real_forward = lm.model.forward

    def forward(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        logits = out.logits.clone()
        logits[:, -1] = -1e9
        logits[:, -1, script[min(state["i"], len(script) - 1)]] = 1e9
        state["i"] += 1
        out.logits = logits
        return out

    monkeypatch.setattr(lm.model, "forward", forward)
    embeds, mask = lm.embed_prompt([{"role": "user", "content": f"{IMAGE_TOKEN}\nWhere?"}],
                                   torch.zeros(1, 2, lm.hidden_size))
    assert vocab > max(script)
    text = "".join(lm.stream(embeds, mask, max_new_tokens=len(script) + 5))
    assert text.strip() == "top left."


@pytest.mark.parametrize("typed, written", [
    ("where is the defect", "Where is the defect?"),
    ("how  big is it?", "How big is it?"),
    ("describe it.", "Describe it."),
    ("compare it with the reference", "Compare it with the reference"),  # not a question word: no "?" added
    (f"where {IMAGE_TOKEN}is it", "Where is it?"),
    ("   ", ""),
])
def test_questions_are_written_as_in_training(typed, written):
    assert question_text(typed) == written
