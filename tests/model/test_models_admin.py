"""`iadgpt models import`: offline weights into the local Hugging Face cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from iadgpt import models_admin
from iadgpt.cli import main
from iadgpt.config import load_preset
from iadgpt.errors import WeightsError


def _fake_weights(root: Path, *, sums: bool = True) -> Path:
    """A folder as copied from an online machine: clip/<checkpoint>, llm/<HF folder>, SHA256SUMS."""
    (root / "clip").mkdir(parents=True)
    (root / "llm" / "extra").mkdir(parents=True)
    files = {
        "clip/open_clip_model.safetensors": b"\x00clip-weights" * 5000,
        "llm/config.json": b'{"model_type": "qwen2"}',
        "llm/tokenizer.json": b'{"version": "1.0"}',
        "llm/model.safetensors": b"\x01llm-weights" * 3000,
        "llm/extra/generation_config.json": b"{}",
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    if sums:
        lines = [f"{hashlib.sha256(data).hexdigest()}  {rel}" for rel, data in files.items()]
        lines[1] = lines[1].replace("  llm/", " *./llm/")  # binary marker and ./ prefix are accepted
        (root / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _resolved(preset: str) -> dict[str, Path | None]:
    return dict(models_admin.resolve_preset(load_preset(preset)))


def test_import_with_good_sums_makes_the_preset_resolve(tmp_path: Path, hf_cache: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = _fake_weights(tmp_path / "usb")
    assert _resolved("workstation") == {"clip": None, "llm": None}

    assert main(["models", "import", str(src), "--preset", "workstation", "--progress", "off"]) == 0

    found = _resolved("workstation")
    clip = found["clip"]
    assert clip is not None and clip.read_bytes() == (src / "clip/open_clip_model.safetensors").read_bytes()
    assert found["clip"].is_relative_to(hf_cache / "models--laion--CLIP-ViT-L-14-laion2B-s32B-b82K")
    llm = found["llm"]
    assert llm is not None and llm.is_relative_to(hf_cache / "models--Qwen--Qwen2.5-1.5B-Instruct" / "snapshots")
    assert (llm / "model.safetensors").read_bytes() == (src / "llm/model.safetensors").read_bytes()
    assert (llm / "extra" / "generation_config.json").is_file()
    out = capsys.readouterr().out
    assert "import done" in out and str(llm) in out
    assert not list(hf_cache.rglob(".iadgpt-import-*"))  # no staging folder left behind

    # `models list` now reports the imported weights as found
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    workstation = listing[listing.index("workstation"):]
    assert "MISSING" not in workstation and str(llm) in workstation

    # importing the same folder again is fine (same content, same snapshot)
    assert main(["models", "import", str(src), "--preset", "workstation", "--progress", "off"]) == 0
    assert _resolved("workstation")["llm"] == llm


def test_import_with_a_bad_checksum_names_the_file_and_imports_nothing(
        tmp_path: Path, hf_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _fake_weights(tmp_path / "usb")
    with open(src / "llm" / "model.safetensors", "ab") as fh:  # a truncated/corrupt copy
        fh.write(b"garbage")

    assert main(["models", "import", str(src), "--preset", "workstation", "--progress", "off"]) == 2

    err = capsys.readouterr().err
    assert "sha256 mismatch for llm/model.safetensors" in err and "SHA256SUMS" in err
    assert _resolved("workstation") == {"clip": None, "llm": None}
    assert not [p for p in hf_cache.rglob("*") if p.is_file()]


def test_import_fails_when_a_listed_file_is_missing(tmp_path: Path, hf_cache: Path) -> None:
    src = _fake_weights(tmp_path / "usb")
    (src / "llm" / "tokenizer.json").unlink()
    with pytest.raises(WeightsError, match=r"llm/tokenizer\.json.*missing"):
        models_admin.import_weights(src, "workstation", progress=False, log=lambda _: None)
    assert _resolved("workstation") == {"clip": None, "llm": None}


def test_import_without_sums_copies_and_notes_it(tmp_path: Path, hf_cache: Path) -> None:
    src = _fake_weights(tmp_path / "workstation", sums=False)
    messages: list[str] = []
    found = dict(models_admin.import_weights(src, progress=False, log=messages.append))  # preset from DIR's name
    assert set(found) == {"clip", "llm"}
    assert any("no SHA256SUMS" in m for m in messages)


def test_import_reports_what_the_folder_lacks(tmp_path: Path, hf_cache: Path) -> None:
    src = _fake_weights(tmp_path / "usb")
    (src / "llm" / "config.json").unlink()
    with pytest.raises(WeightsError, match=r"config\.json"):
        models_admin.import_weights(src, "workstation", progress=False, log=lambda _: None)
    with pytest.raises(WeightsError, match="nothing to import"):
        models_admin.import_weights(src, "tiny-test", progress=False, log=lambda _: None)
    with pytest.raises(WeightsError, match="--preset"):
        models_admin.import_weights(src, None, progress=False, log=lambda _: None)


def test_read_sha256sums_rejects_paths_outside_the_folder(tmp_path: Path) -> None:
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'0' * 64}  ../etc/passwd\n", encoding="utf-8")
    with pytest.raises(WeightsError, match="not inside"):
        models_admin.read_sha256sums(sums)
    sums.write_text("not a checksum line\n", encoding="utf-8")
    with pytest.raises(WeightsError, match="line 1"):
        models_admin.read_sha256sums(sums)


def _import_refused(src: Path, hf_cache: Path, match: str) -> None:
    with pytest.raises(WeightsError, match=match):
        models_admin.import_weights(src, "workstation", progress=False, log=lambda _: None)
    assert _resolved("workstation") == {"clip": None, "llm": None}
    assert not [p for p in hf_cache.rglob("*") if p.is_file()], "nothing may be put in place"


@pytest.mark.parametrize("sums", [True, False])
def test_import_refuses_python_files_in_the_llm_folder(tmp_path: Path, hf_cache: Path, sums: bool) -> None:
    src = _fake_weights(tmp_path / "usb", sums=sums)
    (src / "llm" / "modeling_evil.py").write_text("import os; os.system('echo pwned')\n")
    _import_refused(src, hf_cache, r"modeling_evil\.py is program code")


@pytest.mark.parametrize("sums", [True, False])
def test_import_refuses_symlinks_to_files_outside_the_folder(tmp_path: Path, hf_cache: Path, sums: bool) -> None:
    src = _fake_weights(tmp_path / "usb", sums=sums)
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret\n")
    (src / "llm" / "vocab.txt").symlink_to(secret)
    _import_refused(src, hf_cache, r"vocab\.txt is a symbolic link")
    (src / "llm" / "vocab.txt").unlink()
    (src / "clip" / "open_clip_model.safetensors").unlink()
    (src / "clip" / "open_clip_model.safetensors").symlink_to(secret)  # the CLIP file too
    _import_refused(src, hf_cache, r"open_clip_model\.safetensors is a symbolic link")


def test_import_refuses_a_file_that_sha256sums_does_not_list(tmp_path: Path, hf_cache: Path) -> None:
    src = _fake_weights(tmp_path / "usb")
    (src / "llm" / "added_tokens.json").write_text("{}")
    _import_refused(src, hf_cache, r"llm/added_tokens\.json is not listed in .*SHA256SUMS")
