"""The built-in model's recipe (`python -m iadgpt.training.recipe`): every step is a valid `iadgpt train`
run, each starts from the step before it, and stage 0 continues with the slots of the first stage 0."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from iadgpt.cli import build_parser
from iadgpt.training.cli import config_from_args
from iadgpt.training.pretext import PRETEXT_PART
from iadgpt.training.recipe import command, main, steps, with_slots
from iadgpt.weights import load_trainable, save_trainable


def test_every_step_is_a_valid_train_run_starting_where_the_last_ended(tmp_path: Path) -> None:
    out, data = tmp_path / "runs", tmp_path / "bsdata"
    plan = steps(out / "textures")
    produced: set[str] = set()
    for step in plan:
        argv = command(step, data, out)
        args = build_parser().parse_args(argv[argv.index("train"):])
        cfg = config_from_args(args)
        cfg.check()
        assert cfg.preset == "unified-lite0" and cfg.product == "ball_screw_drive" and cfg.out_dir == out / step.name
        if step.init is not None:
            assert step.init.split("/")[0] in produced, f"{step.name} starts from a step that has not run"
        produced.add(step.name)
    assert plan[-1].name == "final" and [s.name for s in plan].index("s0b") > [s.name for s in plan].index("s3d")
    stage0 = [config_from_args(build_parser().parse_args(command(s, data, out)[3:])) for s in plan
              if s.args[s.args.index("--stage") + 1] == "0"]
    assert sum(c.stage_epochs(0) for c in stage0) == 188 + 100 + 200 + 150 + 100 + 60 + 90
    assert [c.flip_slots for c in stage0] == [0.0] * 4 + [0.5] * 3, "the last three stage 0 flip slots"
    assert [c.copy_weight for c in stage0] == [1.0] * 5 + [5.0, 20.0]
    tuned = [config_from_args(build_parser().parse_args(command(s, data, out)[3:])) for s in plan
             if "--tune-llm" in s.args]
    assert [c.copy_weight for c in tuned] == [1.0, 20.0]
    for c in tuned:
        assert c.tune_llm and c.replay > 0 and c.llm_lr < c.lr and not c.tune_embeddings
    by_name = {s.name: s for s in plan}
    assert by_name["s3h"].slots_from == "s0e/checkpoints/last", "the replay reads the slots of the last stage 0"
    assert plan[-1].init == "s0g/checkpoints/last", "the last step replays through the slots of the stage 0 before"


def test_dry_run_prints_every_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert "iadgpt.data.textures" in lines[0]
    assert len(lines) == 1 + len(steps(tmp_path / "o" / "textures"))
    assert not (tmp_path / "o").exists(), "a dry run writes nothing"


def test_stage_zero_continues_with_the_first_stage_zeros_slots(tmp_path: Path) -> None:
    base = {"base_models": {"image": "x"}, "preset": "unified-lite0"}
    slots = {"state": torch.arange(4.0).reshape(2, 2)}
    save_trainable(tmp_path / "ckpt", {"llm": {"w": torch.zeros(2)}, PRETEXT_PART: slots}, **base)
    save_trainable(tmp_path / "weights", {"llm": {"w": torch.ones(2)}, "tge": {"w": torch.ones(3)}}, **base,
                   extra={"products": {"bsdata": "ball_screw_drive"}})
    manifest, parts = load_trainable(with_slots(tmp_path / "weights", tmp_path / "ckpt", tmp_path / "init"))
    assert torch.equal(parts["llm"]["w"], torch.ones(2)), "the later weights are kept"
    assert torch.equal(parts[PRETEXT_PART]["state"], slots["state"])
    assert manifest["extra"]["products"] == {"bsdata": "ball_screw_drive"}
    with pytest.raises(SystemExit, match="no stage-0 slots"):
        with_slots(tmp_path / "weights", tmp_path / "weights", tmp_path / "again")
