"""The coreset phase of a large memory bank reports progress and can be cancelled (issue 12, problem 8:
the bar sat at 100 % for ~100 s with no Cancel)."""

from __future__ import annotations

import pytest
import torch

from iadgpt.errors import CancelledError
from iadgpt.memory_bank import MemoryBank, greedy_coreset


def _features(rows: int = 3000) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(rows, 32, generator=gen), torch.randn(rows, 48, generator=gen)]


def test_coreset_reports_progress_up_to_k() -> None:
    seen: list[tuple[int, int]] = []
    keep = greedy_coreset(_features(), 500, progress=lambda done, total: seen.append((done, total)))
    assert len(keep) == 500
    assert 50 <= len(seen) <= 120 and all(total == 500 for _, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] >= 495


def test_coreset_stops_when_asked_and_the_bank_is_unchanged() -> None:
    bank = MemoryBank([32, 48])
    tokens = [f.reshape(1, 3000, -1) for f in _features()]
    bank.add(tokens)
    calls = {"n": 0}

    def stop_after_a_while() -> bool:
        calls["n"] += 1
        return calls["n"] > 10

    with pytest.raises(CancelledError, match="cancelled"):
        bank.subsample(500, should_stop=stop_after_a_while)
    assert len(bank) == 3000, "a cancelled coreset leaves the bank as it was"
