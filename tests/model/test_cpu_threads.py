"""Small models on one CPU thread (decision 0012): same answers, and the caller's thread count restored."""

from __future__ import annotations

import pytest
import torch

from iadgpt import cpu_threads
from iadgpt.config import DEFAULT_PRESET
from iadgpt.cpu_threads import one_thread_if
from iadgpt.grounding import consistent, position_agrees
from iadgpt.inspector import Inspector
from iadgpt.llm import LanguageModel
from iadgpt.prompt_bank import default_bank_dir

PITTED = default_bank_dir().parent / "samples" / "ball_screw_drive" / "inspect" / "pitting_080.png"


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_small_block_runs_on_one_thread_and_gives_the_threads_back_even_when_it_fails(two_threads):
    with one_thread_if(True, "cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), one_thread_if(True, torch.device("cpu")):
        raise RuntimeError("the forward pass failed")
    assert torch.get_num_threads() == 2


def test_large_models_and_other_devices_keep_every_thread(two_threads):
    for small, device in ((False, "cpu"), (True, "cuda"), (True, "mps")):
        with one_thread_if(small, device):
            assert torch.get_num_threads() == 2


def test_the_size_rule_sees_a_7b_llm_as_large_and_the_builtin_parts_as_small(monkeypatch):
    big = torch.nn.Linear(1, 1)
    monkeypatch.setattr(cpu_threads, "parameter_count", lambda *modules: 7_000_000_000)
    assert not cpu_threads.is_small(big)
    monkeypatch.undo()
    assert cpu_threads.is_small(big)


@pytest.fixture(scope="module")
def builtin() -> Inspector:
    return Inspector(DEFAULT_PRESET, class_name="ball_screw_drive")


def test_the_builtin_model_answers_alike_on_one_thread_and_on_all(builtin, two_threads):
    assert builtin._small_heads and builtin.llm.small
    one = builtin.inspect(PITTED)
    question = "How big is it?"
    one_chat = "".join(builtin.chat(PITTED, [], question))
    assert torch.get_num_threads() == 2, "an inspection must hand the caller's threads back"
    builtin._small_heads = builtin.llm.small = False
    try:
        every = builtin.inspect(PITTED)
        every_chat = "".join(builtin.chat(PITTED, [], question))
    finally:
        builtin._small_heads = builtin.llm.small = True
    assert one.verdict == every.verdict == "defective"
    assert one.p_yes == pytest.approx(every.p_yes, abs=1e-3)
    for answer, chat in ((one.answer, one_chat), (every.answer, every_chat)):
        assert answer.startswith("Yes") and position_agrees(answer.lower(), one.evidence), answer
        assert consistent("size", chat, True, one.evidence), chat


def test_a_language_model_wrapper_measures_its_own_size(builtin, monkeypatch):
    monkeypatch.setattr(cpu_threads, "SMALL_MODEL_PARAMETERS", 10)
    llm = LanguageModel(builtin.llm.model, builtin.llm.tokenizer, "built-in")
    assert not llm.small
