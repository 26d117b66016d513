"""Tests of the Abnormal Prompt Generator (iadgpt.apg): reply parsing, the session, the HF adapter."""

from __future__ import annotations

import logging

import pytest

from iadgpt.apg import (
    APG_QUESTIONS,
    generate_bank,
    hf_chat_fn,
    parse_keywords,
    parse_sentences,
)
from iadgpt.errors import PromptBankError
from iadgpt.prompt_bank import DefectAttribute, PromptBank

# --------------------------------------------------------------------------------------------------
# parse_keywords


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        pytest.param("1. Scratches\n2. Dents\n3) Cracks\n(4) Discoloration",
                     ["scratches", "dents", "cracks", "discoloration"], id="numbered-mixed"),
        pytest.param("- Scratches\n* Dents\n• Missing threads\n+ Rust",
                     ["scratches", "dents", "missing threads", "rust"], id="bullets"),
        pytest.param("Scratches, dents, cracks, and rust.",
                     ["scratches", "dents", "cracks", "rust"], id="comma-list-oxford"),
        pytest.param("scratch; dent; hole", ["scratch", "dent", "hole"], id="semicolons"),
        pytest.param("1. **Scratches**\n2. **Bent flange**\n3. *Rust stains*\n4. __Chipped edge__",
                     ["scratches", "bent flange", "rust stains", "chipped edge"], id="bold-italic"),
        pytest.param("Sure! Here are the defect keywords extracted from the description:\n\n"
                     "1. Scratches\n2. Dents\n3. Deformation\n\nI hope this helps!",
                     ["scratches", "dents", "deformation"], id="preamble-and-closing"),
        pytest.param("Keywords: scratch, dent, crack", ["scratch", "dent", "crack"], id="keywords-label"),
        pytest.param("Scratches\nscratch\nSCRATCHES\nDents\ndents.",
                     ["scratches", "dents"], id="duplicates-case-and-number"),
        pytest.param("An abnormal metal nut often shows scratches on its surface and dents near the edge.\n"
                     "- Scratches\n- Dents\nThese defects are typically caused by handling.",
                     ["scratches", "dents"], id="sentences-mixed-in"),
        pytest.param("", [], id="empty"),
        pytest.param("   \n\n  ", [], id="blank"),
        pytest.param('1. "Scratches" (fine lines on the surface)\n2. \'Dents\'.\n3. Color stains [rare]',
                     ["scratches", "dents", "color stains"], id="quotes-parentheses-periods"),
        pytest.param("1. Scratches: thin linear marks on the surface\n2. Dents - depressions in the body",
                     ["scratches", "dents"], id="keyword-with-explanation"),
        pytest.param("**Defect keywords:**\n- **Crack**\n- **Contamination**\n- **Hole**",
                     ["crack", "contamination", "hole"], id="bold-heading"),
        pytest.param("The metal nut may have scratches, dents and cracks.", [], id="comma-sentence"),
    ],
)
def test_parse_keywords_formats(reply: str, expected: list[str]) -> None:
    assert parse_keywords(reply) == expected


def test_parse_keywords_caps_at_max() -> None:
    reply = "\n".join(f"- defect{i}" for i in range(20))
    assert parse_keywords(reply, max_keywords=4) == ["defect0", "defect1", "defect2", "defect3"]


def test_parse_keywords_skips_long_lines() -> None:
    reply = "- scratch\n- a very long line that is surely not a single keyword\n- dent"
    assert parse_keywords(reply) == ["scratch", "dent"]


# --------------------------------------------------------------------------------------------------
# parse_sentences


def test_parse_sentences_canonical() -> None:
    reply = ("Scratch: An abnormal metal nut might have thin linear marks on its surface.\n"
             "Dent: An abnormal metal nut might have a depression in its flat face.")
    assert parse_sentences(reply, ["scratch", "dent"], "metal_nut") == [
        DefectAttribute("scratch",
                        "Scratch: An abnormal metal nut might have thin linear marks on its surface."),
        DefectAttribute("dent", "Dent: An abnormal metal nut might have a depression in its flat face."),
    ]


def test_parse_sentences_bold_numbered_and_spacing() -> None:
    reply = ("Here are the sentences:\n"
             "1. **Scratch:** an abnormal  Metal_Nut might have thin marks ,on its surface\n"
             "2) **Dent**: An abnormal metal nut might have a depression!")
    attrs = parse_sentences(reply, ["scratch", "dent"], "Metal Nut")
    assert [a.sentence for a in attrs] == [
        "Scratch: An abnormal metal nut might have thin marks,on its surface.",
        "Dent: An abnormal metal nut might have a depression.",
    ]


def test_parse_sentences_plural_and_case_variation() -> None:
    reply = ("- CRACKS: An abnormal tile might have cracks across it.\n"
             "- scratch: An abnormal tile might have scratches.\n"
             "- Holes: An abnormal tile might have small holes.")
    attrs = parse_sentences(reply, ["crack", "scratches", "hole"], "tile")
    assert [a.name for a in attrs] == ["crack", "scratches", "hole"]
    assert attrs[0].sentence == "Crack: An abnormal tile might have cracks across it."
    assert attrs[1].sentence == "Scratches: An abnormal tile might have scratches."


def test_parse_sentences_missing_and_extra_keywords() -> None:
    reply = ("Rust: An abnormal screw might have rust on the thread.\n"
             "Glue: An abnormal screw might have glue on it.\n"
             "Bent: An abnormal screw might have a bent shaft.")
    attrs = parse_sentences(reply, ["bent", "scratch", "rust"], "screw")
    # keyword order, the extra "glue" ignored, the missing "scratch" left out
    assert [a.name for a in attrs] == ["bent", "rust"]


def test_parse_sentences_multiline_continuation() -> None:
    reply = ("1. Crack: An abnormal bottle might have a crack running\n"
             "   from the rim down to the base\n"
             "2. Contamination:\n"
             "An abnormal bottle might have dirt inside.\n"
             "\n"
             "Let me know if you need anything else.")
    attrs = parse_sentences(reply, ["crack", "contamination"], "bottle")
    assert [a.sentence for a in attrs] == [
        "Crack: An abnormal bottle might have a crack running from the rim down to the base.",
        "Contamination: An abnormal bottle might have dirt inside.",
    ]


def test_parse_sentences_keeps_llm_text_without_prefix() -> None:
    reply = "Hole: a small puncture through the fabric"
    attrs = parse_sentences(reply, ["hole"], "carpet")
    assert attrs == [DefectAttribute("hole", "Hole: A small puncture through the fabric.")]


def test_parse_sentences_first_sentence_wins_and_empty() -> None:
    reply = ("Hole: An abnormal carpet might have a hole.\n"
             "Hole: An abnormal carpet might have another hole.\n"
             "Cut:\n")
    assert parse_sentences(reply, ["hole", "cut"], "carpet") == [
        DefectAttribute("hole", "Hole: An abnormal carpet might have a hole."),
    ]
    assert parse_sentences("", ["hole"], "carpet") == []


# --------------------------------------------------------------------------------------------------
# generate_bank with a scripted LLM


class ScriptedChat:
    """A fake LLM: returns canned replies in order and records every conversation it receives."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []

    def __call__(self, messages: list[dict[str, str]]) -> str:
        self.calls.append(messages)
        if not self.replies:
            raise AssertionError("the LLM was asked more questions than scripted")
        return self.replies.pop(0)


DESCRIPTION = (
    "Sure! An abnormal metal nut in an inspection image may show **scratches** on its flat faces, "
    "dents or bent flanges from impacts, discoloration from heat or corrosion, and it may even be "
    "flipped upside down.\n\nThese defects are visible as local changes in texture and shape."
)
KEYWORDS = "Here are the keywords:\n1. **Scratches**\n2. **Bent flange**\n3. **Discoloration**\n4. **Flip**"
SENTENCES = (
    "1. **Scratches**: An abnormal metal nut might have thin linear scratches on its surface.\n"
    "2. **Bent flange**: An abnormal metal nut might have a flange bent out of shape.\n"
    "3. **Discoloration**: An abnormal metal nut might have patches of unusual color."
)


def test_generate_bank_three_turns() -> None:
    chat = ScriptedChat([DESCRIPTION, KEYWORDS, SENTENCES + "\n4. Flip: An abnormal metal nut might "
                         "have been placed upside down."])
    bank = generate_bank("Metal Nut", chat, model_name="vicuna-7b", is_object=True)

    assert len(chat.calls) == 3
    first, second, third = chat.calls
    assert first[0]["role"] == "system"
    assert [m["role"] for m in first[1:]] == ["user"]
    assert first[-1]["content"] == APG_QUESTIONS[0].format(cls="metal nut", max_keywords=10)
    assert "metal nut" in first[-1]["content"]
    # the history is carried: turn 2 sees turn 1's question and reply
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == DESCRIPTION
    assert [m["role"] for m in third] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert third[4]["content"] == KEYWORDS
    for keyword in ("scratches", "bent flange", "discoloration", "flip"):
        assert keyword in third[-1]["content"]

    assert bank.class_name == "metal_nut"
    assert bank.source == "apg:vicuna-7b"
    assert bank.is_object is True
    assert bank.dataset == ""
    assert bank.names == ["scratches", "bent flange", "discoloration", "flip"]
    assert bank.sentences == [
        "Scratches: An abnormal metal nut might have thin linear scratches on its surface.",
        "Bent flange: An abnormal metal nut might have a flange bent out of shape.",
        "Discoloration: An abnormal metal nut might have patches of unusual color.",
        "Flip: An abnormal metal nut might have been placed upside down.",
    ]
    for sentence in bank.sentences:
        assert ": An abnormal metal nut might have " in sentence and sentence.endswith(".")
    assert bank.description.startswith("An abnormal metal nut in an inspection image")
    assert "**" not in bank.description and "\n" not in bank.description


def test_generate_bank_retries_missing_sentences() -> None:
    retry = "Flip: An abnormal metal nut might have been flipped so its back side faces up."
    chat = ScriptedChat([DESCRIPTION, KEYWORDS, SENTENCES, retry])
    bank = generate_bank("metal_nut", chat)

    assert len(chat.calls) == 4
    fourth = chat.calls[3][-1]["content"]
    assert fourth.count("flip") == 1 and "scratches" not in fourth
    assert chat.calls[3][-2] == {"role": "assistant", "content": SENTENCES}
    assert bank.names == ["scratches", "bent flange", "discoloration", "flip"]
    assert bank.sentences[-1] == retry
    assert bank.source == "apg:llm" and bank.is_object is None


def test_generate_bank_drops_still_missing(caplog: pytest.LogCaptureFixture) -> None:
    chat = ScriptedChat([DESCRIPTION, KEYWORDS, SENTENCES, "Sorry, I cannot help with that."])
    with caplog.at_level(logging.WARNING, logger="iadgpt.apg"):
        bank = generate_bank("metal nut", chat)
    assert len(chat.calls) == 4
    assert bank.names == ["scratches", "bent flange", "discoloration"]
    assert any("flip" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_generate_bank_too_few_keywords() -> None:
    chat = ScriptedChat([DESCRIPTION, "I am not sure what you mean."])
    with pytest.raises(PromptBankError) as info:
        generate_bank("Metal Nut", chat)
    message = str(info.value)
    assert "metal nut" in message
    assert "I am not sure what you mean" in message
    assert "larger" in message and "Retry" in message
    assert len(chat.calls) == 2


def test_generate_bank_too_few_sentences() -> None:
    chat = ScriptedChat([DESCRIPTION, KEYWORDS, "Scratches: An abnormal metal nut might have scratches.",
                         "I cannot."])
    with pytest.raises(PromptBankError, match="metal nut"):
        generate_bank("metal nut", chat, min_keywords=2)


def test_generate_bank_respects_max_keywords() -> None:
    chat = ScriptedChat([DESCRIPTION, KEYWORDS, SENTENCES])
    bank = generate_bank("metal nut", chat, max_keywords=2)
    assert bank.names == ["scratches", "bent flange"]
    assert len(chat.calls) == 3


def test_generate_bank_rejects_non_text_reply() -> None:
    with pytest.raises(PromptBankError, match="str"):
        generate_bank("metal nut", lambda messages: None)  # type: ignore[arg-type, return-value]


def test_generated_bank_round_trips(tmp_path) -> None:
    retry = "Flip: An abnormal metal nut might have been flipped."
    chat = ScriptedChat([DESCRIPTION, KEYWORDS, SENTENCES, retry])
    bank = generate_bank("metal nut", chat, model_name="tiny", is_object=True)
    path = bank.save(tmp_path / "apg" / "metal_nut.json")
    loaded = PromptBank.load(path)
    assert loaded == bank
    assert loaded.path == path


# --------------------------------------------------------------------------------------------------
# hf_chat_fn with a real, tiny, randomly initialised model


class RecordingTokenizer:
    """Wraps a tokenizer and records every text it is asked to encode."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.texts: list[str] = []

    def __call__(self, text, *args, **kwargs):
        self.texts.append(text)
        return self._inner(text, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _tiny_model_and_tokenizer(corpus: list[str]):
    torch = pytest.importorskip("torch")
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.trainers import WordLevelTrainer

    raw = tokenizers.Tokenizer(WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = Whitespace()
    raw.train_from_iterator(corpus, WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[BOS]", "[EOS]"]))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]")
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    return model, tokenizer


MESSAGES = [
    {"role": "system", "content": "You are an inspection expert."},
    {"role": "user", "content": "Describe an abnormal metal nut."},
    {"role": "assistant", "content": "It may have scratches."},
    {"role": "user", "content": "List the defect keywords of the nut."},
]
CORPUS = [m["content"] for m in MESSAGES] + [
    "### System : Human Assistant", "<| system user assistant |>", "scratches dents cracks rust"]


def _run_adapter(tokenizer, model):
    recording = RecordingTokenizer(tokenizer)
    seen_ids = []
    generate = model.generate

    def spy(*args, **kwargs):
        seen_ids.append(kwargs["input_ids"])
        return generate(*args, **kwargs)

    model.generate = spy
    reply = hf_chat_fn(model, recording, max_new_tokens=6)(MESSAGES)
    assert isinstance(reply, str)
    assert reply == reply.strip()
    assert len(seen_ids) == 1  # one generate call; the tokenizer also sees a probe of whether it adds BOS
    reaching_model = tokenizer.decode(seen_ids[0][0], skip_special_tokens=True)
    return recording.texts[0], reaching_model


def test_hf_chat_fn_plain_transcript() -> None:
    model, tokenizer = _tiny_model_and_tokenizer(CORPUS)
    assert not getattr(tokenizer, "chat_template", None)
    prompt, reaching_model = _run_adapter(tokenizer, model)
    # the Vicuna v1.1 transcript: system text, then USER:/ASSISTANT: turns, each answer closed by </s>
    assert prompt == ("You are an inspection expert. USER: Describe an abnormal metal nut. ASSISTANT: It may have "
                      "scratches.</s>USER: List the defect keywords of the nut. ASSISTANT:")
    for word in "List the defect keywords of the nut".split():
        assert word in reaching_model.split()


def test_hf_chat_fn_chat_template() -> None:
    model, tokenizer = _tiny_model_and_tokenizer(CORPUS)
    tokenizer.chat_template = (
        "{% for m in messages %}<| {{ m['role'] }} |> {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<| assistant |>{% endif %}")
    prompt, reaching_model = _run_adapter(tokenizer, model)
    assert "<| user |> List the defect keywords of the nut." in prompt
    assert prompt.endswith("<| assistant |>")
    assert "List the defect keywords of the nut" in reaching_model
