"""Test settings shared by every test: offline, offscreen, and a private cache for built tiny models."""

from __future__ import annotations

import builtins
import errno
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import huggingface_hub.constants as hub_constants
import pytest

from tests import standins

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


def use_hf_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face lookups at `cache` for one test."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads the variable once, at its first import: keep its constant in step, and
    # restored afterwards, so later tests never see this cache.
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache of this test's own."""
    return use_hf_cache(tmp_path / "hf-cache", monkeypatch)


# -- stand-ins for real pretrained weights (tests/standins.py), built once per run ---------------------


@pytest.fixture(scope="session")
def standin_llms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{family: Hugging Face model folder} for qwen2, llama, mistral (refuses a system turn), vicuna (no template)."""
    root = tmp_path_factory.mktemp("standin-llms")
    return {family: standins.write_llm_folder(root / family, family) for family in standins.FAMILIES}


@pytest.fixture(scope="session")
def standin_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A laion-style open_clip repo folder (open_clip_config.json with mean/std 0.5, open_clip_model.safetensors)."""
    folder = tmp_path_factory.mktemp("standin-clip")
    standins.write_open_clip_checkpoint(folder)
    return folder


@pytest.fixture(scope="session")
def standin_cache_dir(tmp_path_factory: pytest.TempPathFactory, standin_clip: Path,
                      standin_llms: dict[str, Path]) -> Path:
    """A Hugging Face cache (blobs, snapshot symlinks, refs/main) holding the workstation preset's repos
    as stand-ins: the small open_clip towers as laion's ViT-L-14 repo and the Qwen2 folder as Qwen2.5."""
    cache = tmp_path_factory.mktemp("standin-hf-cache")
    standins.put_in_hf_cache(cache, standins.LAION_L14, standin_clip)
    standins.put_in_hf_cache(cache, standins.QWEN, standin_llms["qwen2"])
    return cache


@pytest.fixture
def standin_cache(standin_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in Hugging Face cache, for one test (read only: tests that write get their own)."""
    return use_hf_cache(standin_cache_dir, monkeypatch)


@pytest.fixture(scope="session")
def standin_preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A preset .json shaped like workstation (hf-hub laion ViT-L-14 weights, Qwen2.5 from the cache), with the
    small towers the stand-in checkpoint holds."""
    return standins.write_preset(tmp_path_factory.mktemp("standin-preset") / "standin-workstation.json",
                                 clip_weights=f"hf-hub:{standins.LAION_L14}", llm=standins.QWEN)


# -- file writes (iadgpt.atomic) -------------------------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for one test (``umask(0o022)``); the old one comes back afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.fixture
def disk_fills_midway(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, every file written through `iadgpt.atomic.atomic_open` (text or bytes, so
    `atomic_write_bytes` too) puts half of its bytes on the disk and then fails with ENOSPC, as a full
    disk does partway through a file."""
    import iadgpt.atomic

    class FullDisk(io.FileIO):
        def write(self, data) -> int:  # type: ignore[override]
            super().write(bytes(memoryview(data))[: max(1, len(data) // 2)])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        if mode == "wb":
            return FullDisk(file, "w")
        if mode == "w":  # buffered as open() does: the bytes reach the disk when the buffer fills or closes
            return io.TextIOWrapper(io.BufferedWriter(FullDisk(file, "w")), encoding=kwargs.get("encoding"),
                                    newline=kwargs.get("newline"))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(iadgpt.atomic, "open", open_on_a_full_disk, raising=False)
