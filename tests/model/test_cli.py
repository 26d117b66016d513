"""`iadgpt inspect` keeps the JSON contract other tools rely on."""

from __future__ import annotations

import json

import cv2
import numpy as np

from iadgpt.cli import main

KEYS = {"image", "score", "verdict", "answer", "position", "defect_types", "mask", "latency_ms"}


def _write(path, seed: int, size=(96, 140)) -> None:
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), cv2.GaussianBlur((rng.random(size) * 255).astype(np.uint8), (0, 0), 2))


def test_inspect_json_contract_and_bad_file(tmp_path, capsys) -> None:
    folder = tmp_path / "batch"
    (folder / "sub").mkdir(parents=True)
    _write(folder / "a.png", 0)
    _write(folder / "sub" / "b.png", 1)
    (folder / "c.png").write_text("not an image")
    ref = tmp_path / "good.png"
    _write(ref, 2)
    out = tmp_path / "out"
    code = main(["inspect", str(folder), "--json", "--out", str(out), "--reference", str(ref),
                 "--class", "magnetic_tile"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1, "a failed image makes the exit status non-zero"
    assert [r["image"].rsplit("/", 1)[-1] for r in lines] == ["a.png", "c.png", "b.png"]
    bad = lines[1]
    assert set(bad) == {"image", "error"} and "c.png" in bad["error"]
    for record in (lines[0], lines[2]):
        assert KEYS <= set(record)
        assert record["verdict"] in ("defective", "good")
        assert all(isinstance(n, str) and 0 <= p <= 1 for n, p in record["defect_types"])
        mask = cv2.imread(record["mask"], cv2.IMREAD_UNCHANGED)
        assert mask is not None and mask.shape == (96, 140) and mask.dtype == np.uint8
        assert record["mask"].startswith(str(out))
        assert record["latency_ms"] > 0


def test_inspect_all_good_files_exit_zero_and_text_output(tmp_path, capsys) -> None:
    _write(tmp_path / "x.png", 3)
    code = main(["inspect", str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--no-answer"])
    out = capsys.readouterr().out
    assert code == 0 and "x.png" in out and ("GOOD" in out or "DEFECTIVE" in out)


def test_unknown_preset_is_a_clear_error(tmp_path, capsys) -> None:
    _write(tmp_path / "x.png", 3)
    code = main(["inspect", str(tmp_path / "x.png"), "--preset", "nope"])
    assert code == 2 and "unknown preset 'nope'" in capsys.readouterr().err


def test_models_verify_reports_a_corrupt_file(tmp_path, capsys) -> None:
    from iadgpt.inspector import Inspector
    from iadgpt.weights import save_trainable

    # A complete folder of the preset's own parts (verify also compares names and shapes with it).
    model = Inspector("tiny-test", device="cpu").model
    folder = save_trainable(tmp_path / "w", model.trainable_state(), preset="tiny-test",
                            base_models={"clip": "c", "llm": "l"})
    assert main(["models", "verify", str(folder)]) == 0
    path = folder / "decoder.safetensors"
    path.write_bytes(path.read_bytes()[:-3])
    assert main(["models", "verify", str(folder)]) == 1
    assert "decoder.safetensors" in capsys.readouterr().out


def test_models_download_offline_says_why(capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    code = main(["models", "download", "workstation"])
    err = capsys.readouterr().err
    assert code == 1 and "workstation" in err and "offline" in err


def test_inspect_without_class_or_references_warns_that_the_built_in_model_does_not_know_the_part(
        tmp_path, capsys) -> None:
    """With no --class the prompts speak of a generic part the shipped weights never saw: good ball
    screws came back "defective" with no word why."""
    _write(tmp_path / "x.png", 3)
    assert main(["inspect", str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--no-answer"]) == 0
    err = capsys.readouterr().err
    assert "trained on ball_screw_drive only, not on 'generic'" in err and "--class ball_screw_drive" in err
    assert main(["inspect", str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--no-answer",
                 "--class", "ball_screw_drive"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_models_list_starts_every_description_in_one_column(capsys) -> None:
    assert main(["models", "list"]) == 0
    heads = [line for line in capsys.readouterr().out.splitlines() if line and not line.startswith(" ")]
    columns = {len(line.split(" ", 1)[0]) + len(line.split(" ", 1)[1]) - len(line.split(" ", 1)[1].lstrip())
               for line in heads}
    assert len(heads) >= 4 and len(columns) == 1, heads
