"""Small models run on one CPU thread (decision 0012).

torch's CPU threads sleep between parallel regions (OMP_WAIT_POLICY=PASSIVE, decision 0011), so each
operation that runs on several threads first wakes them. For the built-in model's heads and its
small LLM an operation's work is a few microseconds to a few tens, the wake-up about a hundred:
on one thread they run two to seven times faster, and nothing waits on the other cores. Large
models (a 7B LLM on a workstation CPU) keep every thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# Below this many parameters a forward pass is made of operations too small to share across cores;
# the built-in LLM has 0.6 M, its heads 0.7 M, the `paper` preset's LLM 7 B.
SMALL_MODEL_PARAMETERS = 50_000_000


def parameter_count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def is_small(*modules: nn.Module) -> bool:
    return parameter_count(*modules) <= SMALL_MODEL_PARAMETERS


@contextmanager
def one_thread_if(small: bool, device: torch.device | str) -> Iterator[None]:
    """Run the block on one CPU thread when `small` and on the CPU; restore the thread count after."""
    before = torch.get_num_threads()
    if not small or torch.device(device).type != "cpu" or before <= 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
