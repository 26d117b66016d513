"""`iadgpt doctor`: every section of the installation report, and presets ready only when weights fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from iadgpt_desktop.cli import main


@pytest.fixture
def app_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("IADGPT_DESKTOP_CONFIG", str(tmp_path / "config"))
    monkeypatch.setenv("IADGPT_DESKTOP_DATA", str(data))
    return data


def test_doctor_prints_every_section_and_passes(hf_cache: Path, app_dirs: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for section in ("== Python and libraries", "== CUDA", "== Resources", "== Presets and weights",
                    "== Data folder and database", "== Qt", "== Summary"):
        assert section in out
    for name in ("torch", "open_clip", "transformers", "PySide6", "sqlalchemy"):
        assert f"  {name} " in out
    assert "tiny-test: ready" in out and "smoke test on the CPU: ok" in out
    assert f"data folder: {app_dirs}" in out and "iadgpt.sqlite3" in out and "free disk space" in out
    assert "offscreen (headless, --screenshot): ok" in out
    # the paper preset's weights are not in the (empty) cache: listed with their fix, but not essential
    assert "missing:" in out and "weights of preset paper" in out and "iadgpt models import" in out
    assert "result: ready" in out


def test_doctor_fails_when_something_essential_is_missing(hf_cache: Path, app_dirs: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IADGPT_RESOURCES", str(tmp_path / "no-resources"))
    assert main(["doctor", "--quick"]) == 1
    out = capsys.readouterr().out
    assert "[essential] prompt banks" in out and "IADGPT_RESOURCES" in out
    assert "result: NOT READY" in out
