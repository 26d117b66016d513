"""A model folder's own Python never runs: not with auto_map in config.json, not when "y" is typed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from iadgpt.config import load_preset
from iadgpt.tiny import ensure_tiny_llm

EVIL = """from pathlib import Path
Path({marker!r}).write_text("the model folder's code ran")
from transformers import LlamaConfig as EvilConfig, LlamaForCausalLM as EvilModel  # noqa: E402
"""

LOAD = """
import sys
from iadgpt.errors import WeightsError
from iadgpt.llm import LanguageModel
try:
    LanguageModel.load(sys.argv[1])
except WeightsError as exc:
    print("refused:", exc)
else:
    print("loaded without its code")
"""


def _hostile_folder(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "llm"
    shutil.copytree(ensure_tiny_llm(load_preset("tiny-test").llm.tiny), folder)
    marker = tmp_path / "code-ran.txt"
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    config["model_type"] = "evil-custom"
    (folder / "config.json").write_text(json.dumps(config))
    tok_config = folder / "tokenizer_config.json"
    tok = json.loads(tok_config.read_text()) if tok_config.is_file() else {}
    tok["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    tok_config.write_text(json.dumps(tok))
    return folder, marker


def test_auto_map_code_does_not_run_even_when_the_user_types_yes(tmp_path: Path) -> None:
    folder, marker = _hostile_folder(tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", LOAD, str(folder)], input="y\ny\ny\n", text=True,
                          capture_output=True, env=env, timeout=300)
    assert not marker.exists(), "the folder's Python ran"
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("refused:") and str(folder) in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout
