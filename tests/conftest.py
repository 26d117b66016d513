"""Test settings shared by every test: offline, offscreen, and a private cache for built tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tiny models are built into a per-run cache, never into the user's home."""
    if "IADGPT_CACHE" not in os.environ:
        os.environ["IADGPT_CACHE"] = str(tmp_path_factory.mktemp("iadgpt-cache"))


def shared_dataset(name: str) -> Path:
    """A dataset under ../shared/datasets, or skip the test saying what is missing."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"dataset {path} is absent: these tests read the shared MVTec-layout datasets "
                    f"from ../shared/datasets beside the checkout")
    return path
