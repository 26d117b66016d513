"""IAD-GPT: the model library of IAD-GPT Desktop (no Qt, no database)."""

import os

# torch's OpenMP threads spin while they wait for work. When other programs keep the cores busy (a
# camera driver, a second station), the spinning threads and they take turns, and an inspection of
# about 50 ms took 2.3 s (median, two busy processes on 2 cores); threads that sleep at once took 80
# ms there, for 14 % more on an idle CPU (benchmarks/cpu_contention.py). So sleeping is the default;
# a value the user set wins. It takes effect only if torch is imported after this package.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from iadgpt.errors import (
    CancelledError,
    ConfigError,
    IADGPTError,
    ImageLoadError,
    MemoryBankError,
    PromptBankError,
    WeightsError,
)

__all__ = [
    "CancelledError",
    "ConfigError",
    "IADGPTError",
    "ImageLoadError",
    "MemoryBankError",
    "PromptBankError",
    "WeightsError",
]
