"""Model administration for offline machines: `iadgpt models import` and `models verify` against a preset.

Import
------
Weights copied from an online machine (USB stick, network share) are placed into the local Hugging
Face cache in the layout the hub itself writes (``models--org--name/snapshots/<hash>/...`` plus
``refs/main``), so the presets resolve them through the unchanged lookups of :mod:`iadgpt.weights`.
A preset whose CLIP or LLM entry is a local path instead of a hub id gets the files copied to that path.

The import folder holds::

    DIR/clip/<open_clip_model.safetensors | open_clip_pytorch_model.bin | model.safetensors>
    DIR/llm/config.json, tokenizer files, *.safetensors ...     (the LLM's Hugging Face folder)
    DIR/SHA256SUMS                                                (optional, `sha256sum` format)

(the CLIP file may also lie in DIR itself). When ``SHA256SUMS`` is present every file it lists must
exist and match; nothing is put in place unless all of them do.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from iadgpt.errors import IADGPTError, WeightsError

SUMS_FILE = "SHA256SUMS"
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(.+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------
# import


@dataclass
class _Group:
    """One destination: a CLIP file or an LLM folder, with the files that go into it."""

    what: str  # "clip" or "llm"
    spec: str  # the preset's entry (hf-hub:org/name, org/name or a local path)
    target: Path  # final folder (an HF snapshot folder or a local folder)
    files: list[tuple[Path, str]] = field(default_factory=list)  # (source, path relative to target)
    refs: Path | None = None  # HF refs/<revision> file to write, or None
    revision: str = "main"


def read_sha256sums(path: Path) -> dict[str, str]:
    """``{relative path: hex digest}`` from a `sha256sum`-style file; raises WeightsError on a bad line."""
    sums: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SUM_LINE.match(line)
        if not match:
            raise WeightsError(f"{path} line {number} is not '<sha256>  <file>': {raw!r}; "
                               "write it with `sha256sum FILES > SHA256SUMS`")
        name = match.group(2).strip().replace("\\", "/")
        name = name[2:] if name.startswith("./") else name
        if name.startswith("/") or ".." in Path(name).parts:
            raise WeightsError(f"{path} line {number} names {name!r}, which is not inside the import folder")
        sums[name] = match.group(1).lower()
    return sums


CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib", ".sh", ".exe")


def _check_plain_file(path: Path, root: Path) -> None:
    """Refuse what an import must never copy: dangling links, paths leading out of the folder, and code.

    A link to a file inside the folder is followed (a Hugging Face cache folder copied whole links its
    snapshot's files to its blobs)."""
    resolved = path.resolve()
    if path.is_symlink() and not resolved.exists():
        raise WeightsError(f"{path} is a symbolic link to {os.readlink(path)}, which is not there: the folder was "
                           f"copied from a Hugging Face cache with `cp -r`, which copies the cache's links but not "
                           f"the files they point to; copy it again with `cp -rL SOURCE DEST` (follow the links) or "
                           f"copy the whole models--org--name folder (nothing was imported)")
    if path.is_symlink() and not resolved.is_relative_to(root.resolve()):
        raise WeightsError(f"{path} is a symbolic link to {resolved}, outside the import folder {root}; an import "
                           f"copies only files inside it, so replace the link with the file itself (nothing was "
                           f"imported)")
    if not resolved.is_relative_to(root.resolve()):
        raise WeightsError(f"{path} leads outside the import folder {root} (to {resolved}); copy the file into "
                           f"the folder (nothing was imported)")
    if path.suffix.lower() in CODE_SUFFIXES:
        raise WeightsError(f"{path} is program code ({path.suffix}); IAD-GPT never runs code from a model "
                           f"folder, so remove it from the import folder (nothing was imported)")
    if not path.is_file():
        raise WeightsError(f"{path} is not a regular file; remove it from the import folder (nothing was imported)")


def _files_under(folder: Path, root: Path) -> list[Path]:
    """The files to copy from `folder`, each checked against the import folder `root`."""
    files = []
    for p in sorted(folder.rglob("*")):
        if p.name.startswith("."):
            continue
        if p.is_symlink() or not p.is_dir():
            _check_plain_file(p, root)
            files.append(p)
    return files


def _content_folder(folder: Path) -> Path:
    """The folder itself, or, for a Hugging Face cache repo folder copied whole (blobs/, snapshots/<commit>/,
    refs/main), the snapshot refs/main names (or its only snapshot)."""
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return folder
    ref = folder / "refs" / "main"
    named = ref.read_text(encoding="utf-8").strip() if ref.is_file() else ""
    if named and (snapshots / named).is_dir():
        return snapshots / named
    found = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(found) == 1:
        return found[0]
    raise WeightsError(f"{folder} is a Hugging Face cache folder with {len(found)} snapshots and no refs/main naming "
                       f"one; copy only the snapshot to import into {folder.parent} (nothing was imported)")


def _plan(source: Path, preset) -> list[_Group]:
    from iadgpt.encoders import CLIP_FILENAMES
    from iadgpt.weights import PICKLE_SUFFIXES, expand_path, hf_cache_dir, hub_repo

    groups: list[_Group] = []

    def hub_group(what: str, spec: str, repo: str, revision: str) -> _Group:
        repo_dir = hf_cache_dir() / f"models--{repo.replace('/', '--')}"
        if _COMMIT.match(revision):  # a pinned commit: the snapshot folder carries its name, no ref
            return _Group(what, spec, repo_dir / "snapshots" / revision, revision=revision)
        return _Group(what, spec, repo_dir / "snapshots", refs=repo_dir / "refs" / revision, revision=revision)

    clip_spec = preset.clip_weights
    if clip_spec:
        clip_dir = _content_folder(source / "clip" if (source / "clip").is_dir() else source)
        clip_file = next((clip_dir / n for n in CLIP_FILENAMES if (clip_dir / n).is_file()
                          or (clip_dir / n).is_symlink()), None)
        if clip_file is not None:
            _check_plain_file(clip_file, source)
        if clip_file is None:
            repo = clip_spec.removeprefix("hf-hub:").split("@")[0].replace("/", "--")
            raise WeightsError(f"preset '{preset.name}' needs a CLIP checkpoint, but {clip_dir} holds none of "
                               f"{', '.join(CLIP_FILENAMES)}; copy the file from the online machine's Hugging "
                               f"Face cache (models--{repo}) into {source / 'clip'}")
        hub = hub_repo(clip_spec)
        if hub:
            group = hub_group("clip", clip_spec, *hub)
            group.files.append((clip_file, clip_file.name))
        else:
            dest = expand_path(clip_spec)
            if dest.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES):
                group = _Group("clip", clip_spec, dest.parent, [(clip_file, dest.name)])
            else:
                group = _Group("clip", clip_spec, dest, [(clip_file, clip_file.name)])
        groups.append(group)

    llm_spec = preset.llm.path
    if llm_spec:
        llm_dir = _content_folder(source / "llm") if (source / "llm").is_dir() else source / "llm"
        if (llm_dir / "config.json").is_symlink():
            _check_plain_file(llm_dir / "config.json", source)
        if not (llm_dir / "config.json").is_file():
            raise WeightsError(f"preset '{preset.name}' needs the language model {llm_spec}, but {llm_dir} "
                               f"has no config.json; copy the model's Hugging Face folder (config.json, "
                               f"tokenizer files, *.safetensors) into {llm_dir}")
        hub = hub_repo(llm_spec)
        group = hub_group("llm", llm_spec, *hub) if hub else _Group("llm", llm_spec, expand_path(llm_spec))
        group.files.extend((p, p.relative_to(llm_dir).as_posix()) for p in _files_under(llm_dir, source))
        groups.append(group)
    if not groups:
        raise WeightsError(f"preset '{preset.name}' uses no downloaded weights (random towers); nothing to import")
    return groups


def _copy_hashing(src: Path, dst: Path, bar) -> str:
    digest = hashlib.sha256()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(_CHUNK):
            digest.update(block)
            fout.write(block)
            bar.update(len(block))
        fout.flush()
        os.fsync(fout.fileno())
    shutil.copystat(src, dst)
    return digest.hexdigest()


def _hash_with_bar(src: Path, bar) -> str:
    digest = hashlib.sha256()
    with open(src, "rb") as fin:
        while block := fin.read(_CHUNK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def _mismatch(rel: str, got: str, want: str, sums: Path) -> WeightsError:
    return WeightsError(f"sha256 mismatch for {rel}: the file hashes to {got}, but {sums} says {want}; "
                        f"the copy is corrupt or incomplete - copy {rel} again (nothing was imported)")


def import_weights(source: str | os.PathLike[str], preset_name: str | None = None, *,
                   progress: bool | None = None, log: Callable[[str], None] = print) -> list[tuple[str, Path]]:
    """Import a preset's weights from ``source`` (see the module doc); returns [(what, resolved path)].

    Raises WeightsError (naming the file) when SHA256SUMS does not match, a listed file is missing,
    or the folder lacks what the preset needs; nothing is put in place then.
    """
    from tqdm import tqdm

    from iadgpt.config import builtin_presets, load_preset

    src = Path(os.path.expanduser(str(source))).resolve()
    if not src.is_dir():
        raise WeightsError(f"import folder {src} does not exist or is not a folder; give the folder the "
                           f"weights were copied to")
    if preset_name is None:
        if src.name not in builtin_presets():
            raise WeightsError(f"which preset are these weights for? give --preset "
                               f"({', '.join(builtin_presets())}) or name the folder after the preset")
        preset_name = src.name
    preset = load_preset(preset_name)
    groups = _plan(src, preset)

    sums_path = src / SUMS_FILE
    sums = read_sha256sums(sums_path) if sums_path.is_file() else None
    copied = {s.resolve(): None for g in groups for s, _ in g.files}
    verify_only: list[Path] = []
    if sums is not None:
        for rel in sums:
            if (src / rel).is_symlink() or (src / rel).exists():
                _check_plain_file(src / rel, src)
        missing = [rel for rel in sums if not (src / rel).is_file()]
        if missing:
            raise WeightsError(f"{sums_path} lists {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                               f"missing from {src}; copy {'it' if len(missing) == 1 else 'them'} again "
                               f"(nothing was imported)")
        verify_only = [src / rel for rel in sums if (src / rel).resolve() not in copied]
        unlisted = [s.relative_to(src).as_posix() for s in copied if s.relative_to(src).as_posix() not in sums]
        if unlisted:
            raise WeightsError(f"{', '.join(unlisted)} {'is' if len(unlisted) == 1 else 'are'} not listed in "
                               f"{sums_path}, so {'its' if len(unlisted) == 1 else 'their'} content cannot be "
                               f"checked; add {'it' if len(unlisted) == 1 else 'them'} to {SUMS_FILE} "
                               f"(`sha256sum FILES > {SUMS_FILE}`) or remove {'it' if len(unlisted) == 1 else 'them'}"
                               f" (nothing was imported)")
    else:
        log(f"note: no {SUMS_FILE} in {src}; files are copied without a checksum check")

    total = sum(p.stat().st_size for g in groups for p, _ in g.files) + sum(p.stat().st_size for p in verify_only)
    staged: list[tuple[_Group, Path]] = []
    try:
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="import",
                  disable=(not progress) if progress is not None else None, file=sys.stderr) as bar:
            for path in verify_only:
                rel = path.relative_to(src).as_posix()
                got = _hash_with_bar(path, bar)
                if got != sums[rel]:
                    raise _mismatch(rel, got, sums[rel], sums_path)
            for group in groups:
                parent = group.target if group.refs is not None else group.target.parent
                parent.mkdir(parents=True, exist_ok=True)
                stage = parent / f".iadgpt-import-{group.what}-{os.getpid()}"
                shutil.rmtree(stage, ignore_errors=True)
                staged.append((group, stage))
                digests = []
                for file, rel_dest in group.files:
                    got = _copy_hashing(file, stage / rel_dest, bar)
                    rel = file.relative_to(src).as_posix()
                    if sums is not None and rel in sums and got != sums[rel]:
                        raise _mismatch(rel, got, sums[rel], sums_path)
                    digests.append(f"{rel_dest} {got}")
                if group.refs is not None:  # the snapshot folder is named by a hash of the content
                    group.target = group.target / hashlib.sha1("\n".join(sorted(digests)).encode()).hexdigest()
        # everything is verified: move into place
        for group, stage in staged:
            if group.refs is None:  # a local folder or a pinned snapshot: put the files in, keep the rest
                for rel_dest in (d for _, d in group.files):
                    (group.target / rel_dest).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(stage / rel_dest, group.target / rel_dest)
                continue
            if group.target.exists():  # the same content imported before (the folder is named by its hash)
                shutil.rmtree(group.target)
            os.replace(stage, group.target)
            group.refs.parent.mkdir(parents=True, exist_ok=True)
            group.refs.write_text(group.target.name, encoding="utf-8")
    finally:
        for _, stage in staged:
            shutil.rmtree(stage, ignore_errors=True)

    found = [(what, resolved) for what, resolved in resolve_preset(preset) if resolved is not None]
    for group in groups:
        log(f"imported {group.what} for preset '{preset.name}' ({group.spec}): {len(group.files)} file(s) "
            f"-> {group.target}")
    return found


def resolve_preset(preset) -> list[tuple[str, Path | None]]:
    """[(what, path or None if missing)] for a preset's CLIP and LLM; random parts are left out."""
    from iadgpt.encoders import CLIP_FILENAMES
    from iadgpt.weights import resolve_checkpoint, resolve_model_folder

    out: list[tuple[str, Path | None]] = []
    if preset.efficientnet is not None and preset.efficientnet.pretrained:
        from iadgpt.efficientnet import wheel_file

        try:
            out.append(("image tower", wheel_file(preset.efficientnet.variant)))
        except IADGPTError:
            out.append(("image tower", None))
    if preset.clip_weights:
        try:
            out.append(("clip", resolve_checkpoint(preset.clip_weights, filenames=CLIP_FILENAMES, what="clip",
                                                   fix="")))
        except IADGPTError:
            out.append(("clip", None))
    if preset.llm.path:
        try:
            out.append(("llm", resolve_model_folder(preset.llm.path, what="llm", fix="")))
        except IADGPTError:
            out.append(("llm", None))
    return out


# ---------------------------------------------------------------------------------------------
# verify against the preset


def check_against_preset(folder: str | os.PathLike[str]) -> tuple[list[str], str | None]:
    """(problems, note): do the folder's tensors have the names, shapes and dtypes its preset builds?

    The preset named in the manifest is built on the CPU (as the app builds it), then the folder is
    loaded into it strictly: a missing, extra or reshaped tensor is a problem, and every tensor's
    dtype must be the one the preset holds. When the
    preset itself cannot be built here (its pretrained towers or LLM are not downloaded), nothing can
    be compared and the note says so.
    """
    import json

    from safetensors import safe_open

    from iadgpt.inspector import Inspector
    from iadgpt.model import TRAINABLE_PARTS
    from iadgpt.weights import MANIFEST_NAME

    source = Path(os.path.expanduser(str(folder)))
    try:
        manifest = json.loads((source / MANIFEST_NAME).read_text(encoding="utf-8"))
        preset = manifest["preset"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{source / MANIFEST_NAME} cannot be read ({exc})"], None
    try:
        inspector = Inspector(preset, device="cpu", precision="fp32")
    except IADGPTError as exc:
        return [], f"names and shapes not compared: preset '{preset}' cannot be built here ({exc})"
    expected = {name: getattr(inspector.model, name).state_dict() for name in TRAINABLE_PARTS}
    try:
        inspector.load_weights(source)
    except WeightsError as exc:
        return [str(exc)], None
    problems = []
    for file_name, entry in manifest.get("files", {}).items():
        want = expected.get(entry.get("part"))
        if want is None:
            continue
        with safe_open(str(source / file_name), "pt") as f:
            for key in f.keys():
                got = f.get_slice(key).get_dtype()
                dtype = str(want[key].dtype).removeprefix("torch.") if key in want else None
                if dtype is not None and _SAFETENSORS_DTYPES.get(got) != dtype:
                    problems.append(f"weights file {source / file_name}: tensor '{key}' is {got}, but preset "
                                    f"'{preset}' holds {dtype}; retrain or convert the weights")
    return problems, None


_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def format_found(found: Iterable[tuple[str, Path]]) -> list[str]:
    return [f"{what}: {path}" for what, path in found]
