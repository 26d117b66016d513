"""Finding and loading weights without ever unpickling untrusted data.

* Pretrained checkpoints are read as safetensors, or as PyTorch files with ``weights_only=True``;
  a file that needs arbitrary unpickling is refused.
* Trained parts (decoder, TGE, MMF, ...) live in a folder of ``<part>.safetensors`` files plus a
  ``manifest.json`` with their sha256, so truncated or swapped files are caught before use.
* Hugging Face models are looked up in the local cache only; nothing is downloaded here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from iadgpt.atomic import atomic_path
from iadgpt.config import HF_PREFIX
from iadgpt.errors import WeightsError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")

_TRAINED_FIX = "point Settings > Model at a trained weights folder or train one with `iadgpt train`"
_COPY_FIX = "copy the weights folder again or retrain"
_PART_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------
# single files


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a PyTorch file (``weights_only`` unpickling only).

    A top-level ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped; non-tensor
    entries (epoch counters and the like) are dropped with a warning.
    """
    source = Path(path)
    _check_file_present(source)
    suffix = source.suffix.lower()
    if suffix == ".safetensors":
        try:
            loaded: Any = load_file(str(source), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(
                f"weights file {source} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                "download or copy it again"
            ) from exc
    elif suffix in PICKLE_SUFFIXES:
        loaded = _torch_load_weights_only(source)
    else:
        raise WeightsError(
            f"weights file {source} has the unsupported extension '{source.suffix}'; use a .safetensors "
            f"file (or {', '.join(PICKLE_SUFFIXES)} saved with torch.save of a plain state dict)"
        )
    return _as_state_dict(source, loaded)


def _check_file_present(source: Path) -> None:
    if not source.exists():
        raise WeightsError(
            f"weights file {source} does not exist; download it or point the setting at the right file"
        )
    if not source.is_file():
        raise WeightsError(f"weights path {source} is not a file; point the setting at the weights file")
    if source.stat().st_size == 0:
        raise WeightsError(
            f"weights file {source} is empty (0 bytes); the download or copy was interrupted - "
            "download or copy it again"
        )


def tensor_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """{name: shape} of a weights file without reading its data: the safetensors header, or a PyTorch
    file memory-mapped with ``weights_only`` unpickling (its tensors are not read into memory)."""
    from safetensors import safe_open

    source = Path(path)
    _check_file_present(source)
    if source.suffix.lower() == ".safetensors":
        try:
            with safe_open(str(source), "pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(f"weights file {source} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                               "download or copy it again") from exc
    if source.suffix.lower() in PICKLE_SUFFIXES:
        state = _as_state_dict(source, _torch_load_weights_only(source, mmap=True))
        return {k: tuple(v.shape) for k, v in state.items()}
    raise WeightsError(f"weights file {source} has the unsupported extension '{source.suffix}'; use a "
                       f".safetensors file (or {', '.join(PICKLE_SUFFIXES)} holding a plain state dict)")


def convert_to_safetensors(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Write the PyTorch weights file `source` (read with ``weights_only``) as the safetensors file `target`.

    Tensors that share memory (tied embeddings) are stored once each as their own copy, as
    safetensors requires."""
    state = load_state_dict_file(source)
    seen: set[int] = set()
    tensors = {}
    for name, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr()
        tensors[name] = tensor.contiguous() if ptr not in seen else tensor.clone().contiguous()
        seen.add(ptr)
    out = Path(target)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    return out


def _torch_load_weights_only(source: Path, mmap: bool = False) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only load failed" not in text.lower():
            raise WeightsError(
                f"weights file {source} is truncated or corrupt ({_first_line(exc)}); "
                "download or copy it again"
            ) from exc
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" (it needs {found.group(1)})" if found else ""
        raise WeightsError(
            f"weights file {source} contains pickled Python objects{what}, which could run code when "
            "loaded; IAD-GPT refuses to unpickle it. Convert it to safetensors on a machine you trust "
            "(load it there and call safetensors.torch.save_file(state_dict, 'model.safetensors')) and "
            "point the setting at the .safetensors file; if it should hold plain tensors, it may be "
            "truncated - download it again"
        ) from exc
    except Exception as exc:  # zip reader errors, EOFError, KeyError from garbage, ...
        raise WeightsError(
            f"weights file {source} is truncated, corrupt or not a PyTorch checkpoint ({_first_line(exc)}); "
            "download or copy it again"
        ) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _as_state_dict(source: Path, loaded: Any) -> dict[str, Tensor]:
    for _ in range(2):  # {"state_dict": ...}, {"model": ...}, or one inside the other
        if isinstance(loaded, Mapping):
            inner = next(
                (loaded[k] for k in ("state_dict", "model") if isinstance(loaded.get(k), Mapping)), None
            )
            if inner is not None:
                loaded = inner
    if not isinstance(loaded, Mapping):
        raise WeightsError(
            f"weights file {source} holds a {type(loaded).__name__}, not a state dict of tensors; "
            "save the model's state_dict() instead"
        )
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, Tensor)}
    dropped = sorted(str(k) for k, v in loaded.items() if not isinstance(v, Tensor))
    if not tensors:
        raise WeightsError(
            f"weights file {source} holds no tensors (keys: {dropped[:8]}); save the model's state_dict() "
            "instead"
        )
    if dropped:
        log.warning("weights file %s: ignoring %d non-tensor entries %s", source, len(dropped), dropped[:8])
    return tensors


# ---------------------------------------------------------------------------------------------
# trained weights folders


def save_trainable(
    folder: str | os.PathLike[str],
    parts: Mapping[str, Mapping[str, Tensor]],
    *,
    preset: str,
    base_models: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<part>.safetensors`` for each part plus ``manifest.json``; return the folder.

    Every file goes to a temporary name first and is moved into place with ``os.replace``; the
    manifest is written last, so an interrupted save never leaves a half-written file under a real
    name.
    """
    target = Path(os.path.expandvars(os.path.expanduser(str(folder))))
    if not parts:
        raise ValueError("save_trainable needs at least one part")
    for name in parts:
        if not _PART_NAME.match(name):
            raise ValueError(f"part name {name!r} is not a plain file-name stem (letters, digits, _ . -)")
    extra_json = dict(extra or {})
    json.dumps(extra_json)  # fail before writing anything if `extra` is not JSON-serialisable
    target.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for name, state in parts.items():
        tensors = {str(k): v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
        file_name = f"{name}.safetensors"
        metadata = {"part": name, "preset": preset, "format_version": str(FORMAT_VERSION)}
        with atomic_path(target / file_name) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
            files[file_name] = {"sha256": sha256_file(tmp), "bytes": tmp.stat().st_size, "part": name}
    manifest = {
        "format_version": FORMAT_VERSION,
        "preset": preset,
        "base_models": dict(base_models),
        "files": files,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "extra": extra_json,
    }
    with atomic_path(target / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("saved trained weights %s (parts %s, preset %s)", target, sorted(parts), preset)
    return target


def load_trainable(
    folder: str | os.PathLike[str], *, expect_preset: str | None = None, verify: bool = True
) -> tuple[dict[str, Any], dict[str, dict[str, Tensor]]]:
    """Read a folder written by :func:`save_trainable`: returns (manifest, {part: state dict}).

    With ``verify`` each file's size and sha256 are checked against the manifest before loading.
    """
    source = Path(os.path.expandvars(os.path.expanduser(str(folder))))
    manifest = _read_manifest(source)
    if expect_preset is not None and manifest["preset"] != expect_preset:
        raise WeightsError(
            f"weights folder {source} was trained for preset '{manifest['preset']}', but preset "
            f"'{expect_preset}' is loaded; choose preset '{manifest['preset']}' or point Settings > Model "
            f"at weights trained for '{expect_preset}'"
        )
    parts: dict[str, dict[str, Tensor]] = {}
    for file_name, entry in manifest["files"].items():
        problem = _file_problem(source, file_name, entry, verify=verify)
        if problem:
            raise WeightsError(problem)
        path = source / file_name
        try:
            parts[entry["part"]] = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(
                f"weights file {path} does not parse as safetensors ({type(exc).__name__}: {exc}); "
                f"{_COPY_FIX}"
            ) from exc
    log.info("loaded trained weights %s (parts %s)", source, sorted(parts))
    return manifest, parts


def verify_trainable(folder: str | os.PathLike[str]) -> list[str]:
    """Every problem with a trained weights folder, as sentences; an empty list means it is fine."""
    source = Path(os.path.expandvars(os.path.expanduser(str(folder))))
    try:
        manifest = _read_manifest(source)
    except WeightsError as exc:
        return [str(exc)]
    problems = []
    for file_name, entry in manifest["files"].items():
        problem = _file_problem(source, file_name, entry, verify=True)
        if problem is None:
            try:
                tensors = load_file(str(source / file_name), device="cpu")
            except Exception as exc:  # safetensors raises its own error types
                problem = (
                    f"weights file {source / file_name} does not parse as safetensors "
                    f"({type(exc).__name__}: {exc}); {_COPY_FIX}"
                )
            else:
                problems.extend(tensor_problems(source / file_name, tensors))
        if problem:
            problems.append(problem)
    return problems


def tensor_problems(path: Path, tensors: Mapping[str, Tensor]) -> list[str]:
    """What is wrong with a loaded weights file's tensors: none at all, non-float, or NaN/infinity."""
    if not tensors:
        return [f"weights file {path} holds no tensors; {_COPY_FIX}"]
    problems = []
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            continue  # integer buffers (counters, indices) cannot be NaN
        if not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            problems.append(f"weights file {path}: tensor '{name}' has {bad} NaN or infinite value(s) of "
                            f"{tensor.numel()}; the weights are damaged - {_COPY_FIX}")
    return problems


def _read_manifest(source: Path) -> dict[str, Any]:
    if not source.is_dir():
        where = "is a file, not a folder" if source.exists() else "does not exist"
        raise WeightsError(f"weights folder {source} {where}; {_TRAINED_FIX}")
    path = source / MANIFEST_NAME
    if not path.is_file():
        raise WeightsError(
            f"weights folder {source} has no {MANIFEST_NAME}; it was not written by `iadgpt train` - "
            f"{_TRAINED_FIX}"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path} is unreadable or not valid JSON ({exc}); {_COPY_FIX}") from exc
    if not isinstance(manifest, dict):
        raise WeightsError(f"{path} is not a JSON object; {_COPY_FIX}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{path} has format version {version!r}, but this version of IAD-GPT reads version "
            f"{FORMAT_VERSION}; update IAD-GPT or retrain the weights with this version"
        )
    problems = list(_manifest_shape_problems(manifest))
    if problems:
        raise WeightsError(f"{path} is malformed ({'; '.join(problems)}); {_COPY_FIX}")
    return manifest


def _manifest_shape_problems(manifest: Mapping[str, Any]) -> Iterator[str]:
    if not isinstance(manifest.get("preset"), str):
        yield "'preset' is not a string"
    if not isinstance(manifest.get("base_models", {}), dict):
        yield "'base_models' is not an object"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        yield "'files' is missing or empty"
        return
    for file_name, entry in files.items():
        if not _PART_NAME.match(file_name) or not file_name.endswith(".safetensors"):
            yield f"file entry {file_name!r} is not a plain .safetensors file name"
        elif not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("part"), str)
        ):
            yield f"file entry {file_name!r} lacks sha256/bytes/part"


def _file_problem(source: Path, file_name: str, entry: Mapping[str, Any], *, verify: bool) -> str | None:
    path = source / file_name
    if not path.is_file():
        return f"weights file {path} listed in {MANIFEST_NAME} is missing; {_COPY_FIX}"
    if not verify:
        return None
    size = path.stat().st_size
    if size != entry["bytes"]:
        return (
            f"weights file {path} has {size} bytes, but {MANIFEST_NAME} records {entry['bytes']} "
            f"(truncated or corrupt); {_COPY_FIX}"
        )
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        return (
            f"weights file {path} does not match the sha256 in {MANIFEST_NAME} (corrupt or replaced); "
            f"{_COPY_FIX}"
        )
    return None


# ---------------------------------------------------------------------------------------------
# locating files and folders


def hf_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face hub cache folder, read from the environment now (not at import time)."""
    if cache_dir is not None:
        return expand_path(str(cache_dir))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return expand_path(os.environ[var])
    if os.environ.get("HF_HOME"):
        return expand_path(os.environ["HF_HOME"]) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return expand_path(xdg) / "huggingface" / "hub"


def resolve_hf_file(
    repo_id: str,
    filenames: Sequence[str],
    revision: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path | None:
    """The first of ``filenames`` present in the local Hugging Face cache for ``repo_id``; never downloads."""
    cache = hf_cache_dir(cache_dir)
    for name in filenames:
        try:
            found = huggingface_hub.try_to_load_from_cache(
                repo_id, name, cache_dir=str(cache), revision=revision
            )
        except ValueError:  # malformed repo id or file name
            log.debug("HF cache lookup of %s/%s failed", repo_id, name, exc_info=True)
            return None
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def resolve_checkpoint(
    spec: str,
    *,
    filenames: Sequence[str],
    what: str,
    fix: str,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Find a weights file from a local file, a local folder holding one of ``filenames``, or
    ``hf-hub:org/name[@revision]`` in the Hugging Face cache."""
    spec = (spec or "").strip()
    if not spec:
        raise WeightsError(f"{what} weights not found: no path or hf-hub:org/name is set; {fix}")
    if spec.startswith(HF_PREFIX):
        repo_id, _, revision = spec[len(HF_PREFIX) :].partition("@")
        found = resolve_hf_file(repo_id, filenames, revision or None, cache_dir=cache_dir)
        if found is not None:
            return found
        repo_dir = hf_cache_dir(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        raise WeightsError(
            f"{what} weights not found: looked in the Hugging Face cache {repo_dir} for "
            f"{', '.join(filenames)}; {fix}"
        )
    path = expand_path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        for name in filenames:
            if (path / name).is_file():
                return path / name
        raise WeightsError(
            f"{what} weights not found: looked in folder {path} for {', '.join(filenames)}; {fix}"
        )
    if path.exists():  # a device, a pipe, or a link to one (e.g. /dev/zero): there, but not weights
        raise WeightsError(f"{what} weights {path} is not a regular file (it is {path.resolve()}); point the "
                           f"setting at the weights file itself; {fix}")
    raise WeightsError(f"{what} weights not found: looked for {path} (does not exist); {fix}")


def resolve_model_folder(
    spec: str, *, what: str, fix: str, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Find a model folder with ``config.json``: a local folder, or ``org/name`` (optionally with
    ``hf-hub:``) already in the Hugging Face cache; never downloads."""
    spec = (spec or "").strip()
    if not spec:
        raise WeightsError(f"{what} not found: no folder or Hugging Face repo id is set; {fix}")
    repo_id = spec[len(HF_PREFIX) :] if spec.startswith(HF_PREFIX) else None
    places = []
    if repo_id is None:
        path = expand_path(spec)
        if path.is_dir():
            if (path / "config.json").is_file():
                return path
            raise WeightsError(f"{what} not found: folder {path} has no config.json; {fix}")
        places.append(f"folder {path} (does not exist)")
        if _REPO_ID.match(spec):
            repo_id = spec
    if repo_id is not None:
        cache = hf_cache_dir(cache_dir)
        try:
            snapshot = Path(
                huggingface_hub.snapshot_download(repo_id, cache_dir=str(cache), local_files_only=True)
            )
        except Exception:  # not cached, malformed id, offline errors: all mean "not here"
            log.debug("HF cache lookup of %s failed", repo_id, exc_info=True)
        else:
            if (snapshot / "config.json").is_file():
                return snapshot
        places.append(f"the Hugging Face cache {cache} for {repo_id}")
    raise WeightsError(f"{what} not found: looked in {' and '.join(places)}; {fix}")


def expand_path(text: str) -> Path:
    """A setting's path with ~ and $VARIABLES expanded."""
    return Path(os.path.expandvars(os.path.expanduser(text)))


def hub_repo(spec: str) -> tuple[str, str] | None:
    """(repo_id, revision) when a weights setting names a Hugging Face hub repo (``hf-hub:org/name[@rev]``,
    or ``org/name`` that is not a local folder); None for a local path."""
    if spec.startswith(HF_PREFIX):
        repo, _, rev = spec[len(HF_PREFIX):].partition("@")
        return repo, rev or "main"
    if _REPO_ID.match(spec) and not expand_path(spec).exists():
        return spec, "main"
    return None
