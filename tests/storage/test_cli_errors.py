"""The command line says one sentence and exits non-zero for a user error, never a traceback; concurrent
batches never store an image twice; concurrent creation of a fresh database is safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from iadgpt.errors import ImageLoadError, WeightsError
from iadgpt.imageio import load_image
from iadgpt.weights import resolve_checkpoint
from iadgpt_desktop.cli import main
from iadgpt_desktop.storage import repository
from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.storage.records import InspectionFilter
from tests.storage.test_postgresql import postgres_server, postgres_url  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[2]


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"part_{i:02d}.png"), (rng.random((40, 48)) * 255).astype(np.uint8))
    return folder


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["inspect", *argv, "--no-answer"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def test_out_onto_a_file_is_one_sentence(tmp_path, capsys) -> None:
    images = _images(tmp_path / "in", 1)
    (tmp_path / "taken").write_text("a file")
    code, _, err = _run(capsys, str(images), "--out", str(tmp_path / "taken"))
    assert code == 2 and err.startswith("error: --out") and "give a folder you can write to" in err
    assert len(err.strip().splitlines()) == 1


def test_a_very_wide_image_fails_alone_and_the_batch_goes_on(tmp_path, capsys) -> None:
    images = _images(tmp_path / "in", 2)
    Image.new("L", (5_000_000, 1), 128).save(images / "wide.png")  # valid, but no PNG map can hold it
    code, out, err = _run(capsys, str(images), "--out", str(tmp_path / "out"), "--json")
    assert code == 1
    assert "wide.png" in out and '"error"' in out
    assert out.count('"verdict"') == 2  # both other images inspected


@pytest.mark.parametrize("spec, words", [("foo://bar", "cannot be used"),
                                         ("corrupt", "is not an IAD-GPT database or is damaged")])
def test_bad_databases_are_one_sentence(tmp_path, capsys, spec, words) -> None:
    images = _images(tmp_path / "in", 1)
    if spec == "corrupt":
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "iadgpt.sqlite3").write_bytes(b"not a database at all" * 300)
        spec = str(tmp_path / "data")
    code, _, err = _run(capsys, str(images), "--db", spec, "--out", str(tmp_path / "out"))
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_a_postgresql_server_that_refuses_connections_has_its_own_sentence(tmp_path, capsys) -> None:
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    images = _images(tmp_path / "in", 1)
    code, _, err = _run(capsys, str(images), "--db", f"postgresql+psycopg://station@127.0.0.1:{port}/history",
                        "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"))
    assert code == 2 and "cannot reach" in err and "not an IAD-GPT database" not in err


def test_a_class_name_cannot_forge_the_image_placeholder(tmp_path, capsys) -> None:
    images = _images(tmp_path / "in", 1)
    code, out, _ = _run(capsys, str(images), "--class", "a<image>b", "--out", str(tmp_path / "out"), "--json")
    assert code == 0 and '"verdict"' in out


def test_a_chat_question_cannot_forge_the_image_placeholder(tmp_path) -> None:
    from iadgpt.inspector import Inspector

    image = _images(tmp_path / "in", 1) / "part_00.png"
    inspector = Inspector("tiny-test", device="cpu")
    history = [{"role": "user", "content": "<image> is there an anomaly?"}, {"role": "assistant", "content": "No."}]
    answer = "".join(inspector.chat(image, history, "and here <image><image>?", max_new_tokens=4))
    assert isinstance(answer, str)


def test_broken_pipe_is_quiet(tmp_path) -> None:
    images = _images(tmp_path / "in", 6)
    proc = subprocess.Popen([sys.executable, "-m", "iadgpt_desktop.cli", "inspect", str(images), "--no-answer",
                             "--json", "--out", str(tmp_path / "out")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.stdout.readline().startswith("{")
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=300) != 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_decode_budget_refuses_from_the_header_and_says_how_to_raise_it(tmp_path, monkeypatch) -> None:
    big = tmp_path / "deep.png"
    cv2.imwrite(str(big), np.full((600, 600, 3), 30000, np.uint16))  # 2.16 MB decoded
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.full((100, 100), 7, np.uint8))
    monkeypatch.setenv("IADGPT_MAX_DECODE_BYTES", "1000000")
    with pytest.raises(ImageLoadError, match=r"600x600 with 3 channel\(s\) of 16 bits.*IADGPT_MAX_DECODE_BYTES"):
        load_image(big)
    assert load_image(small).shape == (100, 100, 3)
    monkeypatch.setenv("IADGPT_MAX_DECODE_BYTES", "3000000")
    assert load_image(big).shape == (600, 600, 3)


def test_a_float_tiff_is_called_a_tiff_it_cannot_read(tmp_path) -> None:
    path = tmp_path / "float.tiff"
    cv2.imwrite(str(path), np.random.default_rng(0).random((8, 8, 3)).astype(np.float32))
    try:
        load_image(path)
    except ImageLoadError as exc:
        assert "is not TIFF" not in str(exc) and "not PNG" not in str(exc) and "TIFF" in str(exc)


def test_weights_pointing_at_a_device_are_not_called_missing(tmp_path) -> None:
    link = tmp_path / "model.safetensors"
    link.symlink_to("/dev/zero")
    with pytest.raises(WeightsError, match="is not a regular file"):
        resolve_checkpoint(str(link), filenames=["model.safetensors"], what="clip", fix="fix it")


# ---- concurrency ---------------------------------------------------------------------------------

_CREATE = """
import sys
from pathlib import Path
from iadgpt_desktop.storage.db import Database
Database.open(Path(sys.argv[1]), sys.argv[2] or None).close()
print("ok")
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_create_a_fresh_database_at_once(tmp_path, backend, request) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else ""
    procs = [subprocess.Popen([sys.executable, "-c", _CREATE, str(tmp_path / "data"), url], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in results]
    with Database.open(tmp_path / "data", url or None) as db, db.Session() as s:
        assert repository.count_inspections(s, InspectionFilter()) >= 0


def test_two_batches_over_one_folder_store_each_image_once(tmp_path) -> None:
    images = _images(tmp_path / "in", 16)
    data = tmp_path / "station"
    Database.open(data).close()
    cmd = [sys.executable, "-m", "iadgpt_desktop.cli", "inspect", str(images), "--db", str(data), "--no-answer",
           "--out", str(tmp_path / "out")]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    with Database.open(data) as db, db.Session() as s:
        rows = repository.query_inspections(s, InspectionFilter(), limit=100)
    assert len(rows) == 16 and len({r.image_sha256 for r in rows}) == 16


class _ReadOnly:
    """Make a file or folder read-only even for root (`chattr +i`; chmod for other users); skip if impossible."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Path:
        if os.geteuid() != 0:
            self.mode = self.path.stat().st_mode
            self.path.chmod(0o555 if self.path.is_dir() else 0o444)
            return self.path
        done = subprocess.run(["chattr", "+i", str(self.path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make {self.path} read-only for root (chattr: {done.stderr.decode().strip()})")
        return self.path

    def __exit__(self, *exc) -> None:
        if os.geteuid() != 0:
            self.path.chmod(self.mode)
        else:
            subprocess.run(["chattr", "-i", str(self.path)], check=True)


def test_out_onto_a_read_only_folder_is_one_sentence(tmp_path, capsys) -> None:
    images = _images(tmp_path / "in", 1)
    (tmp_path / "out").mkdir()
    with _ReadOnly(tmp_path / "out"):
        code, _, err = _run(capsys, str(images), "--out", str(tmp_path / "out"))
    assert code == 2 and err.startswith("error: --out") and len(err.strip().splitlines()) == 1, err
    assert "give a folder you can write to" in err


def test_a_read_only_database_file_is_one_sentence(tmp_path, capsys) -> None:
    images = _images(tmp_path / "in", 1)
    code, _, _ = _run(capsys, str(images), "--db", str(tmp_path / "data"), "--product", "p",
                      "--out", str(tmp_path / "out1"))
    assert code == 0
    database = next((tmp_path / "data").glob("*.sqlite3"))
    more = _images(tmp_path / "in2", 2)
    with _ReadOnly(database):
        code, _, err = _run(capsys, str(more), "--db", str(tmp_path / "data"), "--product", "p",
                            "--out", str(tmp_path / "out2"))
    errors = [line for line in err.strip().splitlines() if not line.startswith("warning:")]  # no --class
    assert code == 2 and len(errors) == 1, err
    assert "read-only" in err and str(database) in err
