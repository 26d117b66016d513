"""`iadgpt models download`: a preset's pretrained weights into the Hugging Face cache, in safe formats.

Only safetensors are fetched where a repo has them. A repo that has only PyTorch `.bin` files gets
them converted to safetensors right after the download (read with ``weights_only=True``, which never
runs pickled code), and the `.bin` files are removed again; a repo with neither is refused. For open_clip
only its own file names are fetched: laion's `model.safetensors` is transformers' format, not open_clip's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from iadgpt.config import Preset
from iadgpt.errors import WeightsError
from iadgpt.weights import convert_to_safetensors, hub_repo

log = logging.getLogger(__name__)

OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
LLM_SIDE_FILES = ["*.json", "tokenizer*", "*.model", "*.tiktoken", "*.txt"]


def download_preset(preset: Preset, out: Callable[[str], None] = print) -> None:
    """Fetch the preset's open_clip checkpoint and LLM (hub repos only) into the local cache."""
    import huggingface_hub

    clip = hub_repo(preset.clip_weights) if preset.clip_weights else None
    if clip is not None:
        repo, revision = clip
        files = set(huggingface_hub.list_repo_files(repo, revision=revision))
        name = next((n for n in OPEN_CLIP_FILES if n in files), None)
        if name is None:
            raise WeightsError(f"the hub repo {repo} holds no open_clip checkpoint ({' or '.join(OPEN_CLIP_FILES)}); "
                               f"point the preset's clip.weights at a repo made for open_clip")
        path = Path(huggingface_hub.hf_hub_download(repo, name, revision=revision))
        for extra in ("open_clip_config.json",):
            if extra in files:
                huggingface_hub.hf_hub_download(repo, extra, revision=revision)
        if path.suffix == ".bin":
            path = _convert_in_snapshot(path, path.with_name("open_clip_model.safetensors"))
        out(f"{repo}: {path}")
    llm = hub_repo(preset.llm.path) if preset.llm.path else None
    if llm is not None:
        repo, revision = llm
        files = huggingface_hub.list_repo_files(repo, revision=revision)
        if any(f.endswith(".safetensors") for f in files):
            patterns = [*LLM_SIDE_FILES, "*.safetensors"]
        elif any(f.startswith("pytorch_model") and f.endswith(".bin") for f in files):
            patterns = [*LLM_SIDE_FILES, "pytorch_model*.bin"]
        else:
            raise WeightsError(f"the hub repo {repo} holds no weights in safetensors or PyTorch .bin files; choose "
                               f"another LLM for preset '{preset.name}' (--llm or Settings > Model)")
        folder = Path(huggingface_hub.snapshot_download(repo, revision=revision, allow_patterns=patterns))
        converted = convert_bin_shards(folder)
        out(f"{repo}: {folder}" + (f" ({converted} .bin file(s) converted to safetensors)" if converted else ""))


def convert_bin_shards(folder: Path) -> int:
    """Convert a model folder's pytorch_model*.bin (and their index) to model*.safetensors; returns how many."""
    bins = sorted(folder.glob("pytorch_model*.bin"))
    names = {b.name: b.name.replace("pytorch_model", "model").removesuffix(".bin") + ".safetensors" for b in bins}
    for b in bins:
        _convert_in_snapshot(b, folder / names[b.name])
    index = folder / "pytorch_model.bin.index.json"
    if index.exists():
        data = json.loads(index.read_text(encoding="utf-8"))
        data["weight_map"] = {k: names.get(v, v) for k, v in data.get("weight_map", {}).items()}
        (folder / "model.safetensors.index.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        _remove_with_blob(index)
    return len(bins)


def _convert_in_snapshot(source: Path, target: Path) -> Path:
    """Write `target` as safetensors from the PyTorch file `source`, then remove `source` (and its cache blob)."""
    convert_to_safetensors(source, target)
    _remove_with_blob(source)
    log.info("converted %s to %s", source, target)
    return target


def _remove_with_blob(path: Path) -> None:
    blob = path.resolve()
    path.unlink()
    if blob != path and blob.exists():
        os.remove(blob)
