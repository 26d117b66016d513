"""Evaluation on the tiny-test preset: k-shot metrics on a synthetic MVTec-layout set, the report
files, the --limit stratification, the `eval` command and one run on real data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from iadgpt.data.datasets import Sample
from iadgpt.eval_cli import add_eval_parser
from iadgpt.evaluation import (
    EvalConfig,
    choose_references,
    evaluate,
    format_table,
    json_summary,
    limit_samples,
    resolve_format,
    write_report,
)
from iadgpt.inspector import Inspector
from tests.conftest import shared_dataset

CLASSES = ("alpha", "beta")


def _texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    noise = cv2.GaussianBlur((rng.random(size) * 255).astype(np.uint8), (0, 0), 2)
    return np.dstack([noise] * 3)


def _stripes(size: tuple[int, int]) -> np.ndarray:
    yy, xx = np.indices(size)
    return np.dstack([((xx + yy) % 12 < 6).astype(np.uint8) * 255] * 3)


def _make_dataset(root: Path, n_train: int = 3, n_good: int = 3, n_bad: int = 4,
                  size: tuple[int, int] = (160, 160)) -> Path:
    """Per class: blurred-noise textures; defects are a pasted striped square with its mask."""
    for ci, name in enumerate(CLASSES):
        rng = np.random.default_rng(100 + ci)
        folder = root / name
        for sub in ("train/good", "test/good", "test/square", "ground_truth/square"):
            (folder / sub).mkdir(parents=True)
        for i in range(n_train):
            cv2.imwrite(str(folder / "train/good" / f"{i:03d}.png"), _texture(rng, size))
        for i in range(n_good):
            cv2.imwrite(str(folder / "test/good" / f"{i:03d}.png"), _texture(rng, size))
        for i in range(n_bad):
            image = _texture(rng, size)
            s = int(rng.integers(30, 50))
            y, x = int(rng.integers(0, size[0] - s)), int(rng.integers(0, size[1] - s))
            image[y:y + s, x:x + s] = _stripes((s, s))
            mask = np.zeros(size, np.uint8)
            mask[y:y + s, x:x + s] = 255
            cv2.imwrite(str(folder / "test/square" / f"{i:03d}.png"), image)
            cv2.imwrite(str(folder / "ground_truth/square" / f"{i:03d}_mask.png"), mask)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector("tiny-test", device="cpu")


@pytest.fixture(scope="module")
def two_shot(dataset: Path, inspector: Inspector) -> dict:
    return evaluate(EvalConfig(data=dataset, reference_shots=2, device="cpu"), inspector=inspector)


def test_k_shot_finds_pasted_squares(two_shot: dict) -> None:
    rows = {r["class_name"]: r for r in two_shot["classes"]}
    assert sorted(rows) == list(CLASSES)
    for row in rows.values():
        assert row["n_images"] == 7 and row["n_anomalous"] == 4
        assert row["mode"] == "few-shot" and len(row["references"]) == 2
        assert row["p_auroc"] > 0.9 and row["aupro"] > 0.8
        assert row["i_auroc"] > 0.9
        assert 0.0 <= row["answer_accuracy"] <= 1.0
    assert two_shot["mean"]["p_auroc"] > 0.9 and two_shot["mean"]["i_auroc"] > 0.9
    timing = two_shot["timing"]
    assert timing["images_per_second"] > 0 and timing["seconds"] >= timing["inspect_seconds"]
    json.dumps(json_summary(two_shot, images=True))  # everything but the examples is JSON


def test_one_shot_pixel_metrics(dataset: Path, inspector: Inspector) -> None:
    result = evaluate(EvalConfig(data=dataset, reference_shots=1, device="cpu"), inspector=inspector)
    for row in result["classes"]:
        assert row["p_auroc"] > 0.9, row  # image-level AUROC with one reference is 0.92-1.0 here


def test_report_files(two_shot: dict, tmp_path: Path) -> None:
    files = write_report(two_shot, tmp_path / "report")
    for name in ("metrics.json", "report.md", "roc_alpha.png", "roc_beta.png", "example_alpha_0.png",
                 "example_beta_1.png"):
        assert files[name].is_file(), name
    md = files["report.md"].read_text()
    assert "| alpha | 7 | 4 |" in md and "| beta | 7 | 4 |" in md and "| **mean** |" in md
    assert "(roc_alpha.png)" in md and "(example_beta_0.png)" in md and "images/s" in md
    metrics = json.loads(files["metrics.json"].read_text())
    assert [c["class_name"] for c in metrics["classes"]] == list(CLASSES)
    assert metrics["mean"]["p_auroc"] == pytest.approx(two_shot["mean"]["p_auroc"])
    assert len(metrics["images"]) == 14
    roc = cv2.imread(str(files["roc_alpha.png"]))
    assert roc is not None and roc.shape == (480, 480, 3)
    example = cv2.imread(str(files["example_alpha_0.png"]))
    assert example is not None and example.shape[1] > 2 * example.shape[0] - 24
    table = format_table(two_shot)
    assert table.splitlines()[-1].startswith("mean")


def _samples(n_good: int, n_bad: int) -> list[Sample]:
    good = [Sample(Path(f"g{i}.png"), "c", 0, "good", None, "test") for i in range(n_good)]
    bad = [Sample(Path(f"b{i}.png"), "c", 1, "crack", Path(f"m{i}.png"), "test") for i in range(n_bad)]
    return good + bad


@pytest.mark.parametrize(("n_good", "n_bad", "limit"), [(2, 40, 3), (40, 2, 5), (10, 10, 2), (30, 30, 12)])
def test_limit_is_stratified_and_deterministic(n_good: int, n_bad: int, limit: int) -> None:
    samples = _samples(n_good, n_bad)
    kept = limit_samples(samples, limit, seed=0)
    assert len(kept) == limit
    assert {s.label for s in kept} == {0, 1}
    assert kept == limit_samples(samples, limit, seed=0)
    assert kept == [s for s in samples if s in kept]  # listing order preserved
    assert limit_samples(samples, None) == samples and limit_samples(samples, 10_000) == samples


def test_references_are_seeded_good_images() -> None:
    train = _samples(10, 0)
    refs = choose_references(train, 3, seed=1)
    assert len(refs) == 3 and refs == choose_references(train, 3, seed=1)
    assert all(r.label == 0 for r in refs)


def test_limit_in_evaluation_keeps_both_labels(dataset: Path, inspector: Inspector) -> None:
    result = evaluate(EvalConfig(data=dataset, reference_shots=1, limit=3, device="cpu"), inspector=inspector)
    for row in result["classes"]:
        assert row["n_images"] == 3 and 0 < row["n_anomalous"] < 3
        assert row["i_auroc"] is not None


def test_single_label_subset_reports_none_with_note(dataset: Path, inspector: Inspector, tmp_path: Path) -> None:
    result = evaluate(EvalConfig(data=dataset, reference_shots=1, limit=1, classes=["alpha"], device="cpu"),
                      inspector=inspector)
    row = result["classes"][0]
    assert row["n_images"] == 1 and row["i_auroc"] is None and row["f1_max"] is None
    assert row["notes"] and "both labels" in row["notes"][0]
    assert result["mean"]["i_auroc"] is None
    files = write_report(result, tmp_path)
    assert "n/a" in files["report.md"].read_text() and "roc_alpha.png" not in files


def test_format_detection(tmp_path: Path) -> None:
    assert resolve_format(tmp_path) == "mvtec"
    (tmp_path / "split_csv").mkdir()
    assert resolve_format(tmp_path) == "visa" and resolve_format(tmp_path, "mvtec") == "mvtec"


def test_cli_json(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(["eval", "--data", str(dataset), "--reference-shots", "2", "--limit", "5",
                              "--classes", "beta", "--device", "cpu", "--out", str(out), "--json", "--seed", "3"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["limit"] == 5 and summary["config"]["seed"] == 3
    assert [c["class_name"] for c in summary["classes"]] == ["beta"]
    assert summary["classes"][0]["n_images"] == 5 and "images" not in summary
    assert (out / "report.md").is_file() and (out / "metrics.json").is_file()

    args = parser.parse_args(["eval", "--data", str(dataset), "--reference-shots", "1", "--device", "cpu",
                              "--out", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "alpha" in text and "beta" in text and "mean" in text


def test_real_data_bsdata(inspector: Inspector) -> None:
    root = shared_dataset("bsdata")
    result = evaluate(EvalConfig(data=root, reference_shots=4, limit=12, device="cpu"), inspector=inspector)
    row = result["classes"][0]
    assert row["n_images"] == 12 and 0 < row["n_anomalous"] < 12
    for key in ("i_auroc", "p_auroc", "aupro", "f1_max", "answer_accuracy"):
        assert 0.0 <= row[key] <= 1.0, key
    print(f"bsdata 4-shot, 12 images: {format_table(result)}")
