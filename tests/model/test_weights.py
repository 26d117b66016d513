"""Tests of weight finding and loading: manifests, sha256 checks, pickle refusal, HF cache lookup."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from iadgpt.errors import WeightsError
from iadgpt.weights import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    load_state_dict_file,
    load_trainable,
    resolve_checkpoint,
    resolve_hf_file,
    resolve_model_folder,
    save_trainable,
    sha256_file,
    verify_trainable,
)


class Gadget:
    """A custom class: pickling it means unpickling would have to import and build it."""

    def __init__(self) -> None:
        self.value = 3


def _parts() -> dict[str, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    big = torch.randn(6, 8, generator=gen)
    return {
        "decoder": {"conv.weight": torch.randn(4, 3, 3, 3, generator=gen), "conv.bias": torch.zeros(4)},
        "tge": {"proj.weight": big.t(), "scale": torch.tensor(2.5)},  # non-contiguous view
        "mmf": {"a": big[:2], "b": big[2:].to(torch.float16)},  # views sharing one storage
    }


def _save(folder: Path, preset: str = "paper") -> Path:
    return save_trainable(
        folder,
        _parts(),
        preset=preset,
        base_models={"clip": "hf-hub:org/clip", "llm": "org/llm"},
        extra={"epochs": 3},
    )


def _assert_equal_parts(a, b) -> None:
    assert a.keys() == b.keys()
    for part in a:
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            torch.testing.assert_close(a[part][key], b[part][key], atol=0, rtol=0)


# ------------------------------------------------------------------ trained folders


def test_save_load_roundtrip(tmp_path):
    folder = _save(tmp_path / "run1")
    assert folder == tmp_path / "run1"
    manifest, parts = load_trainable(folder, expect_preset="paper")
    _assert_equal_parts(parts, _parts())
    assert manifest["preset"] == "paper" and manifest["extra"] == {"epochs": 3}
    assert not [p for p in folder.iterdir() if "tmp" in p.name]


def test_manifest_content(tmp_path):
    folder = _save(tmp_path / "run1")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["base_models"] == {"clip": "hf-hub:org/clip", "llm": "org/llm"}
    assert set(manifest["files"]) == {"decoder.safetensors", "tge.safetensors", "mmf.safetensors"}
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() == sha256_file(folder / name)
        assert entry["bytes"] == len(data)
        assert entry["part"] == name.removesuffix(".safetensors")
    assert manifest["created"].endswith("+00:00")


def test_truncated_file_raises_naming_it(tmp_path):
    folder = _save(tmp_path / "run1")
    path = folder / "decoder.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(WeightsError, match=r"decoder\.safetensors.*truncated or corrupt.*copy the weights"):
        load_trainable(folder)


def test_flipped_byte_raises_sha_mismatch(tmp_path):
    folder = _save(tmp_path / "run1")
    path = folder / "tge.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"tge\.safetensors does not match the sha256"):
        load_trainable(folder)
    # without verification the damaged tensor data still parses
    _, parts = load_trainable(folder, verify=False)
    assert set(parts) == {"decoder", "tge", "mmf"}


def test_missing_manifest_and_folder(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    with pytest.raises(WeightsError, match=r"has no manifest\.json; it was not written by `iadgpt train`"):
        load_trainable(folder)
    with pytest.raises(WeightsError, match="does not exist; point Settings > Model"):
        load_trainable(tmp_path / "nowhere")


def test_invalid_manifest_and_unknown_version(tmp_path):
    folder = _save(tmp_path / "run1")
    manifest_path = folder / MANIFEST_NAME
    good = json.loads(manifest_path.read_text())
    manifest_path.write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_trainable(folder)
    manifest_path.write_text(json.dumps({**good, "format_version": 99}))
    with pytest.raises(WeightsError, match="format version 99.*update IAD-GPT or retrain"):
        load_trainable(folder)
    manifest_path.write_text(
        json.dumps({**good, "files": {"../evil.safetensors": good["files"]["tge.safetensors"]}})
    )
    with pytest.raises(WeightsError, match="not a plain .safetensors file name"):
        load_trainable(folder)


def test_preset_mismatch_names_both(tmp_path):
    folder = _save(tmp_path / "run1", preset="paper")
    with pytest.raises(WeightsError, match="trained for preset 'paper', but preset 'tiny-test' is loaded"):
        load_trainable(folder, expect_preset="tiny-test")


def test_listed_file_missing(tmp_path):
    folder = _save(tmp_path / "run1")
    (folder / "mmf.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"mmf\.safetensors listed in manifest\.json is missing"):
        load_trainable(folder)


def test_unparsable_safetensors_with_matching_sha(tmp_path):
    folder = _save(tmp_path / "run1")
    bad = folder / "decoder.safetensors"
    bad.write_bytes(b"garbage that is not safetensors")
    manifest_path = folder / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["decoder.safetensors"].update(sha256=sha256_file(bad), bytes=bad.stat().st_size)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match=r"decoder\.safetensors does not parse as safetensors"):
        load_trainable(folder)


def test_verify_trainable_lists_problems(tmp_path):
    folder = _save(tmp_path / "run1")
    assert verify_trainable(folder) == []
    (folder / "mmf.safetensors").unlink()
    path = folder / "decoder.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    problems = verify_trainable(folder)
    assert len(problems) == 2
    assert any("decoder.safetensors" in p and "truncated" in p for p in problems)
    assert any("mmf.safetensors" in p and "missing" in p for p in problems)
    (folder / MANIFEST_NAME).unlink()
    assert len(verify_trainable(folder)) == 1 and "no manifest.json" in verify_trainable(folder)[0]


def test_resave_overwrites_cleanly(tmp_path):
    folder = _save(tmp_path / "run1", preset="paper")
    _save(folder, preset="tiny-test")
    manifest, _ = load_trainable(folder, expect_preset="tiny-test")
    assert manifest["preset"] == "tiny-test"


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_trained_weights_are_readable_by_another_account(tmp_path, umask):
    """Trained on one account, loaded by the station's: no 0o600 parts (safetensors 0.8 creates them so)."""
    umask(0o022)
    folder = _save(tmp_path / "run")
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {
        name: 0o644 for name in ("decoder.safetensors", "tge.safetensors", "mmf.safetensors", MANIFEST_NAME)}


def test_extra_must_be_json(tmp_path):
    with pytest.raises(TypeError):
        save_trainable(tmp_path / "x", _parts(), preset="p", base_models={}, extra={"obj": object()})
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ single files


def test_plain_torch_save_loads(tmp_path):
    state = OrderedDict(w=torch.randn(3, 4), b=torch.zeros(3))
    path = tmp_path / "model.pt"
    torch.save(state, path)
    loaded = load_state_dict_file(path)
    assert loaded.keys() == state.keys()
    torch.testing.assert_close(loaded["w"], state["w"])


def test_state_dict_and_model_wrappers_unwrapped(tmp_path):
    state = {"w": torch.randn(2, 2)}
    path = tmp_path / "ckpt.ckpt"
    torch.save({"state_dict": state, "epoch": 4, "optimizer_name": "adamw"}, path)
    assert list(load_state_dict_file(path)) == ["w"]
    path = tmp_path / "model.pth"
    torch.save({"model": state}, path)
    assert list(load_state_dict_file(path)) == ["w"]


def test_custom_pickle_refused(tmp_path):
    path = tmp_path / "evil.bin"
    torch.save({"w": torch.zeros(2), "gadget": Gadget()}, path)
    with pytest.raises(
        WeightsError, match=r"evil\.bin contains pickled Python objects.*could run code"
    ) as err:
        load_state_dict_file(path)
    assert "convert it to safetensors" in str(err.value).lower()


def test_safetensors_loads_and_truncated_raises(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(10, 10)}, str(path))
    torch.testing.assert_close(load_state_dict_file(path)["w"], torch.ones(10, 10))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(WeightsError, match=r"m\.safetensors is truncated or corrupt.*download or copy"):
        load_state_dict_file(path)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("empty.pt", b"", "is empty"),
        ("text.pt", b"hello world\n", "text.pt is truncated, corrupt or not a PyTorch checkpoint"),
        ("weird.onnx", b"abc", "unsupported extension"),
    ],
)
def test_bad_files_raise(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=pattern):
        load_state_dict_file(path)


def test_truncated_torch_file_raises(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.randn(50, 50)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match=r"model\.pt is truncated"):
        load_state_dict_file(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(WeightsError, match=r"gone\.safetensors does not exist"):
        load_state_dict_file(tmp_path / "gone.safetensors")


# ------------------------------------------------------------------ locating


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty HF cache under tmp_path, selected through the environment; offline."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _fake_repo(cache: Path, repo_id: str, files: dict[str, bytes], sha: str = "0123abcd" * 5) -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return snapshot


def test_resolve_hf_file_from_fake_cache(hf_cache):
    snapshot = _fake_repo(hf_cache, "org/clip", {"open_clip_model.safetensors": b"x"})
    found = resolve_hf_file("org/clip", ["open_clip_pytorch_model.bin", "open_clip_model.safetensors"])
    assert found == snapshot / "open_clip_model.safetensors"
    assert resolve_hf_file("org/clip", ["other.bin"]) is None
    assert resolve_hf_file("org/none", ["open_clip_model.safetensors"]) is None
    assert resolve_hf_file("org/clip", ["open_clip_model.safetensors"], cache_dir=hf_cache) == found


def test_resolve_checkpoint_local_file_and_folder(tmp_path, monkeypatch):
    weights = tmp_path / "ckpts" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"x")
    kwargs = dict(filenames=["model.bin", "model.safetensors"], what="CLIP", fix="download it")
    assert resolve_checkpoint(str(weights), **kwargs) == weights
    assert resolve_checkpoint(str(weights.parent), **kwargs) == weights
    monkeypatch.setenv("IADGPT_TEST_WEIGHTS", str(tmp_path))
    assert resolve_checkpoint("$IADGPT_TEST_WEIGHTS/ckpts", **kwargs) == weights
    with pytest.raises(
        WeightsError, match=r"CLIP weights not found: looked in folder .*model\.bin.*; fix it"
    ):
        resolve_checkpoint(str(tmp_path), filenames=["model.bin"], what="CLIP", fix="fix it")
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "missing.pt"), **kwargs)


def test_resolve_checkpoint_hf_hub(hf_cache):
    snapshot = _fake_repo(hf_cache, "org/clip", {"open_clip_model.safetensors": b"x"})
    found = resolve_checkpoint(
        "hf-hub:org/clip", filenames=["open_clip_model.safetensors"], what="CLIP", fix="run setup"
    )
    assert found == snapshot / "open_clip_model.safetensors"
    fix = "run `iadgpt models download` on a machine with internet access"
    with pytest.raises(WeightsError) as err:
        resolve_checkpoint(
            "hf-hub:org/missing", filenames=["open_clip_model.safetensors"], what="CLIP", fix=fix
        )
    text = str(err.value)
    assert text.startswith("CLIP weights not found: looked in")
    assert "models--org--missing" in text and fix in text


def test_resolve_model_folder_local(tmp_path, hf_cache):
    folder = tmp_path / "llm"
    folder.mkdir()
    with pytest.raises(WeightsError, match="has no config.json; get the LLM"):
        resolve_model_folder(str(folder), what="LLM", fix="get the LLM")
    (folder / "config.json").write_text("{}")
    assert resolve_model_folder(str(folder), what="LLM", fix="get the LLM") == folder


def test_resolve_model_folder_from_cache_and_missing(tmp_path, hf_cache):
    snapshot = _fake_repo(hf_cache, "org/llm", {"config.json": b"{}", "model.safetensors": b"x"})
    assert resolve_model_folder("org/llm", what="LLM", fix="get it") == snapshot
    assert resolve_model_folder("hf-hub:org/llm", what="LLM", fix="get it") == snapshot
    with pytest.raises(WeightsError) as err:
        resolve_model_folder("org/absent", what="LLM", fix="download it with `iadgpt models download`")
    text = str(err.value)
    assert "org/absent" in text and str(hf_cache) in text
    assert text.endswith("download it with `iadgpt models download`")
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_model_folder(str(tmp_path / "nowhere"), what="LLM", fix="get it")
