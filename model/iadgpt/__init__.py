"""IAD-GPT: the model library of IAD-GPT Desktop (no Qt, no database)."""

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
