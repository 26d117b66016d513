"""Broken weights fail closed: a NaN never becomes a "good" verdict, and `models verify` catches them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from iadgpt.cli import main
from iadgpt.errors import WeightsError
from iadgpt.inspector import Inspector
from iadgpt.model import TRAINABLE_PARTS
from iadgpt.weights import save_trainable, sha256_file, verify_trainable


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector("tiny-test", device="cpu")


def _weights(inspector: Inspector, folder: Path, poison: str | None = None) -> Path:
    parts = {name: {k: v.clone() for k, v in getattr(inspector.model, name).state_dict().items()}
             for name in TRAINABLE_PARTS}
    if poison:
        for tensor in parts[poison].values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    return save_trainable(folder, parts, preset="tiny-test", base_models=inspector.preset.base_model_ids())


def _image() -> np.ndarray:
    yy, xx = np.mgrid[0:64, 0:64]
    return np.stack([(xx * 4) % 256, (yy * 4) % 256, np.full_like(xx, 90)], -1).astype(np.uint8)


def test_nan_decoder_weights_raise_a_sentence_naming_the_weights(inspector, tmp_path) -> None:
    folder = _weights(inspector, tmp_path / "nan", poison="decoder")
    broken = Inspector("tiny-test", device="cpu", weights=folder)
    with pytest.raises(WeightsError, match=rf"not finite.*{folder}"):
        broken.inspect(_image(), generate_answer=False)


def test_cli_gives_no_nan_verdict_and_no_traceback(inspector, tmp_path, capsys) -> None:
    folder = _weights(inspector, tmp_path / "nan", poison="decoder")
    image = tmp_path / "part.png"
    import cv2

    cv2.imwrite(str(image), _image())
    code = main(["inspect", str(image), "--preset", "tiny-test", "--device", "cpu", "--weights", str(folder),
                 "--json", "--no-answer", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err and "not finite" in err
    assert '"verdict": "good"' not in out and "NaN" not in out
    for line in out.splitlines():
        json.loads(line)  # whatever is printed is valid JSON


def test_models_verify_finds_nan_tensors(inspector, tmp_path, capsys) -> None:
    good = _weights(inspector, tmp_path / "good")
    assert verify_trainable(good) == []
    bad = _weights(inspector, tmp_path / "bad", poison="tge")
    problems = verify_trainable(bad)
    assert problems and all("NaN or infinite" in p and "tge.safetensors" in p for p in problems)
    assert main(["models", "verify", str(bad)]) == 1
    assert "PROBLEM" in capsys.readouterr().out


def test_models_verify_fails_a_decoder_file_with_no_tensors(inspector, tmp_path) -> None:
    folder = _weights(inspector, tmp_path / "empty")
    path = folder / "decoder.safetensors"
    save_file({}, str(path))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["decoder.safetensors"].update(sha256=sha256_file(path), bytes=path.stat().st_size)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_trainable(folder)
    assert any("holds no tensors" in p for p in problems), problems


def test_non_finite_logits_are_an_error_not_a_good_verdict(inspector) -> None:
    llm = inspector.llm
    embeds = torch.full((1, 4, llm.hidden_size), float("nan"))
    with pytest.raises(WeightsError, match="non-finite logits"):
        llm.verdict(embeds, torch.ones(1, 4, dtype=torch.long))


def test_models_verify_compares_names_shapes_and_dtypes_with_the_preset(inspector, tmp_path, capsys) -> None:
    good = _weights(inspector, tmp_path / "good")
    assert main(["models", "verify", str(good)]) == 0
    assert "names, shapes and dtypes fit the preset" in capsys.readouterr().out
    parts = {name: {k: v.clone() for k, v in getattr(inspector.model, name).state_dict().items()}
             for name in TRAINABLE_PARTS}
    key = next(iter(parts["decoder"]))
    parts["decoder"][key] = torch.zeros(3, 3)  # a tensor of another shape
    reshaped = save_trainable(tmp_path / "reshaped", parts, preset="tiny-test",
                              base_models=inspector.preset.base_model_ids())
    assert main(["models", "verify", str(reshaped)]) == 1
    assert "does not fit preset 'tiny-test'" in capsys.readouterr().out
    parts["decoder"][key] = inspector.model.decoder.state_dict()[key].double()
    wrong_dtype = save_trainable(tmp_path / "f64", parts, preset="tiny-test",
                                 base_models=inspector.preset.base_model_ids())
    assert main(["models", "verify", str(wrong_dtype)]) == 1
    assert "is F64, but preset 'tiny-test' holds float32" in capsys.readouterr().out
