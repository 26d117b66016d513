"""Errors raised by the model library.

Every message names the thing, the cause and the fix, so the desktop app and the command line can
show it to a person unchanged.
"""

from __future__ import annotations


class IADGPTError(Exception):
    """Base class of every error the library raises on purpose."""


class ConfigError(IADGPTError):
    """A preset or configuration file is missing, malformed or inconsistent."""


class WeightsError(IADGPTError):
    """Weights are missing, truncated, corrupt, mismatched or in a refused format."""


class ImageLoadError(IADGPTError):
    """An image could not be read: missing, empty, truncated, not an image, or too large."""


class PromptBankError(IADGPTError):
    """A prompt bank (APG) file is missing or malformed, or an LLM reply could not be parsed."""


class MemoryBankError(IADGPTError):
    """A few-shot memory bank is empty, does not match the model, or its file is unusable."""


class CancelledError(IADGPTError):
    """A long operation (generation, memory-bank build) was cancelled by the user."""


class DatasetError(IADGPTError):
    """A training or evaluation dataset is laid out wrongly, incomplete, or cannot be synthesised from."""
