"""Model administration for offline machines: `iadgpt models import` and `iadgpt doctor`.

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

Doctor
------
:func:`doctor` prints what is installed and found (Python, torch/CUDA, libraries, presets' weights,
resources, data folder and database, Qt platforms) and ends with a ``missing:`` list, each with its fix.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from iadgpt.config import DEFAULT_PRESET
from iadgpt.errors import IADGPTError, WeightsError

SUMS_FILE = "SHA256SUMS"
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(.+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20
ESSENTIAL_PRESETS = ("tiny-test", DEFAULT_PRESET)  # the ones that must work with no downloaded weights

QT_DEBS = ("libegl1", "libgl1", "libxkbcommon0", "libxkbcommon-x11-0", "libfontconfig1", "libdbus-1-3",
           "libglib2.0-0")


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
    """Refuse what an import must never copy: links, paths leading out of the folder, and code."""
    if path.is_symlink():
        raise WeightsError(f"{path} is a symbolic link; an import copies only plain files inside {root}, "
                           f"so replace the link with the file itself (nothing was imported)")
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise WeightsError(f"{path} leads outside the import folder {root} (to {resolved}); copy the file into "
                           f"the folder (nothing was imported)")
    if path.suffix.lower() in CODE_SUFFIXES:
        raise WeightsError(f"{path} is program code ({path.suffix}); IAD-GPT never runs code from a model "
                           f"folder, so remove it from the import folder (nothing was imported)")
    if not path.is_file():
        raise WeightsError(f"{path} is not a regular file; remove it from the import folder (nothing was imported)")


def _files_under(folder: Path) -> list[Path]:
    files = []
    for p in sorted(folder.rglob("*")):
        if p.name.startswith("."):
            continue
        if p.is_symlink() or not p.is_dir():
            _check_plain_file(p, folder)
            files.append(p)
    return files


def _hub_repo(spec: str) -> tuple[str, str] | None:
    """(repo_id, revision) for a hub spec, None for a local path."""
    from iadgpt.weights import _REPO_ID, HF_PREFIX, _expand

    if spec.startswith(HF_PREFIX):
        repo, _, rev = spec[len(HF_PREFIX):].partition("@")
        return repo, rev or "main"
    if _REPO_ID.match(spec) and not _expand(spec).exists():
        return spec, "main"
    return None


def _plan(source: Path, preset) -> list[_Group]:
    from iadgpt.encoders import CLIP_FILENAMES
    from iadgpt.weights import PICKLE_SUFFIXES, _expand, hf_cache_dir

    groups: list[_Group] = []

    def hub_group(what: str, spec: str, repo: str, revision: str) -> _Group:
        repo_dir = hf_cache_dir() / f"models--{repo.replace('/', '--')}"
        if _COMMIT.match(revision):  # a pinned commit: the snapshot folder carries its name, no ref
            return _Group(what, spec, repo_dir / "snapshots" / revision, revision=revision)
        return _Group(what, spec, repo_dir / "snapshots", refs=repo_dir / "refs" / revision, revision=revision)

    clip_spec = preset.clip_weights
    if clip_spec:
        clip_dir = source / "clip" if (source / "clip").is_dir() else source
        clip_file = next((clip_dir / n for n in CLIP_FILENAMES if (clip_dir / n).is_file()
                          or (clip_dir / n).is_symlink()), None)
        if clip_file is not None:
            _check_plain_file(clip_file, source)
        if clip_file is None:
            repo = clip_spec.removeprefix("hf-hub:").split("@")[0].replace("/", "--")
            raise WeightsError(f"preset '{preset.name}' needs a CLIP checkpoint, but {clip_dir} holds none of "
                               f"{', '.join(CLIP_FILENAMES)}; copy the file from the online machine's Hugging "
                               f"Face cache (models--{repo}) into {source / 'clip'}")
        hub = _hub_repo(clip_spec)
        if hub:
            group = hub_group("clip", clip_spec, *hub)
            group.files.append((clip_file, clip_file.name))
        else:
            dest = _expand(clip_spec)
            if dest.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES):
                group = _Group("clip", clip_spec, dest.parent, [(clip_file, dest.name)])
            else:
                group = _Group("clip", clip_spec, dest, [(clip_file, clip_file.name)])
        groups.append(group)

    llm_spec = preset.llm.path
    if llm_spec:
        llm_dir = source / "llm"
        if not (llm_dir / "config.json").is_file():
            raise WeightsError(f"preset '{preset.name}' needs the language model {llm_spec}, but {llm_dir} "
                               f"has no config.json; copy the model's Hugging Face folder (config.json, "
                               f"tokenizer files, *.safetensors) into {llm_dir}")
        hub = _hub_repo(llm_spec)
        group = hub_group("llm", llm_spec, *hub) if hub else _Group("llm", llm_spec, _expand(llm_spec))
        group.files.extend((p, p.relative_to(llm_dir).as_posix()) for p in _files_under(llm_dir))
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

    found = [(what, resolved) for what, resolved in _resolve_preset(preset) if resolved is not None]
    for group in groups:
        log(f"imported {group.what} for preset '{preset.name}' ({group.spec}): {len(group.files)} file(s) "
            f"-> {group.target}")
    return found


def _resolve_preset(preset) -> list[tuple[str, Path | None]]:
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


# ---------------------------------------------------------------------------------------------
# doctor


@dataclass
class _Report:
    out: Callable[[str], None]
    missing: list[tuple[str, str, bool]] = field(default_factory=list)  # (what, fix, essential)

    def section(self, title: str) -> None:
        self.out(f"\n== {title}")

    def line(self, text: str) -> None:
        self.out(f"  {text}")

    def problem(self, what: str, fix: str, *, essential: bool) -> None:
        self.missing.append((what, fix, essential))


def _version(module: str, dist: str | None = None) -> str | None:
    try:
        return importlib.metadata.version(dist or module)
    except importlib.metadata.PackageNotFoundError:
        return None


def _try_import(name: str):
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # noqa: BLE001 - ImportError, OSError from missing shared libraries, ...
        return None, f"{type(exc).__name__}: {exc}"


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _check_libraries(r: _Report) -> object | None:
    r.section("Python and libraries")
    r.line(f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}")
    if sys.version_info[:2] != (3, 11):
        r.problem(f"Python 3.11 (this is {platform.python_version()})",
                  "install Python 3.11 and re-run the installer with it", essential=False)
    torch = None
    libs = [("torch", "torch", True), ("torchvision", "torchvision", True),
            ("open_clip", "open_clip_torch", True), ("transformers", "transformers", True),
            ("safetensors", "safetensors", True), ("cv2", "opencv-python-headless", True),
            ("PySide6", "PySide6-Essentials", True), ("sqlalchemy", "SQLAlchemy", True),
            ("alembic", "alembic", True), ("psycopg", "psycopg", False)]
    for module, dist, essential in libs:
        mod, error = _try_import(module)
        version = getattr(mod, "__version__", None) or _version(module, dist)
        if mod is None:
            r.line(f"{module:13s} MISSING ({error})")
            fix = (f"pip install '{dist}' into this environment (re-run the installer)" if essential else
                   "only for a PostgreSQL history: pip install 'psycopg[binary]'")
            r.problem(f"{dist} (python module {module})", fix, essential=essential)
        else:
            r.line(f"{module:13s} {version}")
            if module == "torch":
                torch = mod
    return torch


def _check_gpu(r: _Report, torch) -> None:
    r.section("CUDA")
    if torch is None:
        r.line("torch is missing, so no CUDA check")
        return
    r.line(f"torch build: {'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU only'}")
    try:
        available = torch.cuda.is_available()
    except Exception as exc:  # noqa: BLE001
        available = False
        r.line(f"CUDA check failed: {exc}")
    if not available:
        r.line("no CUDA device: inspection runs on the CPU (fine for tiny-test and demo, slow for paper)")
        if shutil.which("nvidia-smi"):
            r.problem("CUDA in torch (nvidia-smi works, but torch sees no GPU)",
                      "re-run the installer so it installs torch's CUDA build, or update the NVIDIA driver",
                      essential=False)
        return
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        try:
            free, total = torch.cuda.mem_get_info(i)
            mem = f"{_gib(total)} total, {_gib(free)} free"
        except Exception:  # noqa: BLE001
            mem = f"{_gib(props.total_memory)} total"
        r.line(f"cuda:{i} {props.name}, {mem}, compute capability {props.major}.{props.minor}")


def _check_presets(r: _Report, *, smoke: bool) -> None:
    r.section("Presets and weights")
    try:
        from iadgpt.config import builtin_presets, load_preset
        from iadgpt.inspector import shipped_weights
        from iadgpt.weights import hf_cache_dir
    except Exception as exc:  # noqa: BLE001
        r.line(f"cannot load the model library: {exc}")
        r.problem("the iadgpt model library", "re-run the installer", essential=True)
        return
    r.line(f"Hugging Face cache: {hf_cache_dir()}")
    names = builtin_presets()
    for name in names:
        essential = name in ESSENTIAL_PRESETS
        try:
            preset = load_preset(name)
        except IADGPTError as exc:
            r.line(f"{name}: BROKEN preset ({exc})")
            r.problem(f"preset {name}", "reinstall IAD-GPT (the preset file is damaged)", essential=essential)
            continue
        parts = _resolve_preset(preset)
        random = [w for w, spec in (("clip", preset.clip_weights), ("llm", preset.llm.path))
                  if not spec and not (w == "clip" and preset.efficientnet is not None)]
        ready = all(p is not None for _, p in parts)
        r.line(f"{name}: {'ready' if ready else 'weights missing'}")
        trained = shipped_weights(name)
        for what in random:
            r.line(f"    {what}: trained, shipped in {trained}" if trained and what == "llm"
                   else f"    {what}: random (no download needed)")
        for what, path in parts:
            spec = {"clip": preset.clip_weights, "llm": preset.llm.path}.get(what, "its Python package")
            r.line(f"    {what}: {path}" if path else f"    {what}: MISSING {spec}")
        if not ready:
            r.problem(f"weights of preset {name}",
                      f"`iadgpt models download {name}` on an online machine, then copy them here and "
                      f"`iadgpt models import DIR --preset {name}`", essential=essential)
        elif essential and smoke:
            _smoke_test(r, name)


def _smoke_test(r: _Report, name: str) -> None:
    try:
        import numpy as np

        from iadgpt.inspector import Inspector

        inspector = Inspector(name, device="cpu")
        yy, xx = np.mgrid[0:96, 0:96]
        image = np.stack([(xx * 2) % 256, (yy * 2) % 256, np.full_like(xx, 128)], -1).astype(np.uint8)
        result = inspector.inspect(image, generate_answer=False)
        r.line(f"    smoke test on the CPU: ok (verdict {result.verdict}, {result.latency_ms:.0f} ms)")
    except Exception as exc:  # noqa: BLE001 - report any failure as a sentence
        r.line(f"    smoke test on the CPU: FAILED ({type(exc).__name__}: {exc})")
        r.problem(f"a working {name} preset ({exc})", "re-run the installer; if it persists, report this output",
                  essential=True)


def _check_resources(r: _Report) -> None:
    r.section("Resources")
    try:
        from iadgpt.data.answers import default_templates_path
        from iadgpt.prompt_bank import default_bank_dir
    except Exception as exc:  # noqa: BLE001
        r.line(f"cannot load the model library: {exc}")
        return
    banks = default_bank_dir()
    count = len(list(banks.glob("*.json"))) if banks.is_dir() else 0
    r.line(f"prompt banks: {banks} ({count} file(s))")
    if not (banks / "generic.json").is_file():
        r.problem(f"prompt banks (generic.json) in {banks}",
                  "reinstall IAD-GPT, or set IADGPT_RESOURCES to the folder holding apg/", essential=True)
    templates = default_templates_path()
    r.line(f"answer templates: {templates} ({'found' if templates.is_file() else 'MISSING'})")
    if not templates.is_file():
        r.problem(f"answer templates {templates}",
                  "reinstall IAD-GPT, or set IADGPT_RESOURCES to the folder holding answer_templates.json",
                  essential=True)


def _existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_data(r: _Report) -> None:
    r.section("Data folder and database")
    try:
        settings_mod = importlib.import_module("iadgpt_desktop.settings")
    except Exception as exc:  # noqa: BLE001 - the library may be installed without the app
        r.line(f"the desktop app's settings are not importable ({type(exc).__name__}: {exc})")
        r.problem("the desktop app (iadgpt_desktop)", "install the whole project (installer/install-linux.sh)",
                  essential=False)
        return
    try:
        settings = settings_mod.load_settings()
    except Exception as exc:  # noqa: BLE001
        r.line(f"settings unreadable ({exc}); using defaults")
        settings = settings_mod.Settings()
    data = settings.data_path
    r.line(f"settings file: {settings_mod.config_dir() / 'settings.json'}")
    r.line(f"data folder: {data} ({'exists' if data.is_dir() else 'will be created'})")
    if settings.database_url:
        from urllib.parse import urlsplit

        parts = urlsplit(settings.database_url)
        shown = settings.database_url.replace(f":{parts.password}@", ":***@") if parts.password else \
            settings.database_url
        r.line(f"database: {shown}")
    else:
        r.line(f"database: SQLite file {data / 'iadgpt.sqlite3'}")
    base = _existing_parent(data)
    if not os.access(base, os.W_OK):
        r.problem(f"write access to the data folder {data}",
                  "choose another folder in Settings > Storage or fix the folder's permissions", essential=True)
    usage = shutil.disk_usage(base)
    r.line(f"free disk space there: {_gib(usage.free)} of {_gib(usage.total)}")
    if usage.free < 1 << 30:
        r.problem(f"free disk space in {base} (only {_gib(usage.free)})",
                  "free some space or move the data folder (Settings > Storage)", essential=False)


_QT_PROBE = ("import sys\nfrom PySide6.QtGui import QGuiApplication\n"
             "app = QGuiApplication(sys.argv[:1])\nprint(app.platformName())\n")


def _probe_qt(platform_name: str | None) -> tuple[bool, str]:
    env = dict(os.environ)
    if platform_name:
        env["QT_QPA_PLATFORM"] = platform_name
    try:
        proc = subprocess.run([sys.executable, "-c", _QT_PROBE], env=env, capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    if proc.returncode == 0:
        return True, proc.stdout.strip()
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    return False, (lines[-1] if lines else f"exit status {proc.returncode}")


def _check_qt(r: _Report) -> None:
    r.section("Qt")
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        r.line("PySide6 is missing")
        return
    plugins = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms"
    names = sorted(p.name.removeprefix("libq").split(".")[0] for p in plugins.glob("*")) if plugins.is_dir() else []
    r.line(f"platform plugins: {', '.join(names) or 'none found'}")
    display = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
    r.line(f"QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM', '(unset)')}, display: {display or 'none'}")
    ok, detail = _probe_qt("offscreen")
    r.line(f"offscreen (headless, --screenshot): {'ok' if ok else 'FAILED: ' + detail}")
    if not ok:
        fix = f"sudo apt-get install {' '.join(QT_DEBS)}" if sys.platform.startswith("linux") else \
            "reinstall PySide6 (pip install --force-reinstall PySide6-Essentials)"
        r.problem(f"Qt libraries ({detail})", fix, essential=True)
    if os.environ.get("QT_QPA_PLATFORM", "") == "offscreen":
        return
    if sys.platform.startswith("linux") and not display:
        r.line("window platform: no display (start the app from a desktop session to see its window)")
        r.problem("a display for the window (no DISPLAY/WAYLAND_DISPLAY)",
                  "run from a desktop session, or QT_QPA_PLATFORM=offscreen for headless batches", essential=False)
        return
    ok, detail = _probe_qt(None)
    r.line(f"window platform: {detail if ok else 'FAILED: ' + detail}")
    if not ok:
        r.problem(f"the Qt window platform ({detail})",
                  f"sudo apt-get install {' '.join(QT_DEBS)} libxcb-cursor0" if sys.platform.startswith("linux")
                  else "update the graphics driver", essential=False)


def doctor(*, smoke: bool = True, out: Callable[[str], None] = print) -> int:
    """Print the installation report; 0 when the no-download presets work, 1 if something essential is missing."""
    r = _Report(out)
    out("IAD-GPT doctor")
    torch = _check_libraries(r)
    _check_gpu(r, torch)
    _check_resources(r)
    _check_presets(r, smoke=smoke and torch is not None)
    _check_data(r)
    _check_qt(r)
    r.section("Summary")
    if not r.missing:
        out("missing: nothing")
    else:
        out("missing:")
        for what, fix, essential in r.missing:
            out(f"  - {'[essential] ' if essential else ''}{what}\n      fix: {fix}")
    essential = [m for m in r.missing if m[2]]
    out("result: " + ("NOT READY (essential parts missing)" if essential else "ready"))
    return 1 if essential else 0


def format_found(found: Iterable[tuple[str, Path]]) -> list[str]:
    return [f"{what}: {path}" for what, path in found]
