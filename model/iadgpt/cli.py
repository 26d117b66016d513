"""`iadgpt`: headless inspection, APG prompt-bank generation and model management."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iadgpt.config import DEFAULT_PRESET
from iadgpt.errors import IADGPTError, ImageLoadError
from iadgpt.precision import PRECISIONS

log = logging.getLogger("iadgpt")


class UsageError(IADGPTError):
    """A command-line argument that cannot work (a file where a folder is needed, ...)."""


def add_weights_args(p: argparse.ArgumentParser) -> None:
    """--clip and --llm: pretrained weights elsewhere than the preset says (inspect, train, eval)."""
    p.add_argument("--clip", dest="clip_weights",
                   help="open_clip checkpoint file, or the folder holding it (overrides the preset)")
    p.add_argument("--llm", help="local folder of the language model, or a cached repo id (overrides the preset)")


def add_precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="auto: fp32 on the CPU; on a GPU bf16 where it and the LLM support it, else fp16")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"built-in preset name or preset .json (default: {DEFAULT_PRESET}, the built-in model)")
    p.add_argument("--weights", help="folder of trained decoder/TGE/MMF weights (safetensors + manifest.json)")
    add_weights_args(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_precision_arg(p)
    p.add_argument("--class", dest="class_name", default="generic",
                   help="product class the prompts speak about (a shipped APG bank, else the generic one)")
    p.add_argument("--prompt-bank", help="a prompt bank .json to use instead of the shipped one")


def _make_inspector(args: argparse.Namespace):
    from iadgpt.inspector import Inspector
    from iadgpt.prompt_bank import PromptBank

    bank = PromptBank.load(args.prompt_bank) if args.prompt_bank else None
    return Inspector(args.preset, device=args.device, precision=args.precision, weights=args.weights,
                     llm_path=args.llm, clip_weights=args.clip_weights, class_name=args.class_name,
                     prompt_bank=bank)


def _mask_path(out: Path, image: Path, used: set[Path]) -> Path:
    candidate = out / f"{image.stem}_anomaly_map.png"
    n = 1
    while candidate in used:
        n += 1
        candidate = out / f"{image.stem}_{n}_anomaly_map.png"
    used.add(candidate)
    return candidate


def cmd_inspect(args: argparse.Namespace) -> int:
    import cv2

    from iadgpt.imageio import iter_image_files, save_anomaly_map_png

    images = iter_image_files(args.paths)
    if not images:
        print("no images found in " + ", ".join(args.paths), file=sys.stderr)
        return 1
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".iadgpt-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out} cannot hold the anomaly maps ({exc.strerror or exc}); give a folder "
                         f"you can write to") from exc
    inspector = _make_inspector(args)
    if args.reference:
        references = iter_image_files(args.reference)
        inspector.build_memory_bank(references)
        log.info("few-shot memory bank from %d reference image(s)", len(references))
    elif inspector.trained_products and inspector.class_name not in inspector.trained_products:
        known = sorted(inspector.trained_products)
        print(f"warning: no --reference images, and the weights were trained on {', '.join(known)} only, not on "
              f"'{inspector.class_name}': the verdicts are unreliable. Pass --class {known[0]} for "
              f"those parts, or --reference DIR (good images of this product) for another one.", file=sys.stderr)
    used: set[Path] = set()
    failures = 0
    skip = getattr(args, "skip", None)  # e.g. images the history database already holds (`--db`)
    skipped = 0
    for path in images:
        if skip is not None and skip(path):
            skipped += 1
            continue
        try:
            result = inspector.inspect(path, generate_answer=not args.no_answer)
        except ImageLoadError as exc:
            failures += 1
            if args.json:
                print(json.dumps({"image": str(path), "error": str(exc)}, ensure_ascii=False), flush=True)
            else:
                print(f"{path}: ERROR {exc}", file=sys.stderr, flush=True)
            continue
        try:
            mask = save_anomaly_map_png(_mask_path(out, path, used), result.anomaly_map)
        except (ValueError, OSError, cv2.error) as exc:  # e.g. a 1 x 5,000,000 map PNG cannot hold
            failures += 1
            message = f"cannot write the anomaly map of {path}: {exc}"
            if args.json:
                print(json.dumps({"image": str(path), "error": message}, ensure_ascii=False), flush=True)
            else:
                print(f"{path}: ERROR {message}", file=sys.stderr, flush=True)
            continue
        sink = getattr(args, "on_result", None)
        if sink is not None:  # e.g. the desktop app's history database (`--db`)
            try:
                sink(path, result, mask)
            except (ValueError, cv2.error) as exc:  # this image only (its mask cannot be kept)
                failures += 1
                print(f"{path}: ERROR not stored: {exc}", file=sys.stderr, flush=True)
                continue
        record = {
            "image": str(path), "score": round(result.score, 6), "verdict": result.verdict,
            "answer": result.answer, "position": result.position,
            "defect_types": [[name, p] for name, p in result.defect_types],
            "mask": str(mask), "latency_ms": round(result.latency_ms, 2),
            "p_yes": round(result.p_yes, 6), "score_top1": round(result.score_top1, 6),
            "mode": result.mode, "model": result.model_id,
        }
        if args.json:
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            where = f" at {result.position}" if result.position else ""
            kinds = ", ".join(f"{n} {p:.0%}" for n, p in result.defect_types)
            print(f"{path}: {result.verdict.upper()}{where} score={result.score:.3f} "
                  f"{('[' + kinds + '] ') if kinds else ''}{result.latency_ms:.0f} ms  mask={mask}", flush=True)
    if skipped:
        print(f"skipped {skipped} already inspected", file=sys.stderr, flush=True)
    return 1 if failures else 0


def cmd_apg_generate(args: argparse.Namespace) -> int:
    from iadgpt.apg import generate_bank, hf_chat_fn
    from iadgpt.llm import LanguageModel
    from iadgpt.precision import checkpoint_dtype, pick_device, pick_dtype
    from iadgpt.prompt_bank import default_bank_dir, normalise_class_name
    from iadgpt.weights import resolve_model_folder

    device = pick_device(args.device)
    folder = resolve_model_folder(args.llm, what="LLM for the Abnormal Prompt Generator",
                                  fix="give --llm the folder of a local instruction-tuned model")
    llm = LanguageModel.load(folder, device, pick_dtype("auto", device, checkpoint_dtype(folder)))
    chat = hf_chat_fn(llm.model, llm.tokenizer, max_new_tokens=args.max_new_tokens)
    is_object = {"object": True, "texture": False, None: None}[args.kind]
    bank = generate_bank(args.class_name, chat, model_name=folder.name, is_object=is_object,
                         max_keywords=args.max_keywords)
    out = Path(args.out) if args.out else default_bank_dir() / f"{normalise_class_name(args.class_name)}.json"
    bank.save(out)
    print(f"wrote {len(bank.attributes)} defect sentences for '{bank.class_name}' to {out}")
    for a in bank.attributes:
        print("  " + a.sentence)
    return 0


_FETCH_FIX = "download it on an online machine or import it from a local folder"


def cmd_models_list(args: argparse.Namespace) -> int:
    from iadgpt.config import builtin_presets, load_preset
    from iadgpt.encoders import CLIP_FILENAMES
    from iadgpt.inspector import shipped_weights
    from iadgpt.weights import resolve_checkpoint, resolve_model_folder

    names = builtin_presets()
    width = max(len(n) for n in names)  # "unified-lite0" pushed its description out of line
    for name in names:
        preset = load_preset(name)
        found = []
        if preset.efficientnet is not None and preset.efficientnet.pretrained:
            from iadgpt.efficientnet import wheel_file

            try:
                found.append(f"image tower: ImageNet EfficientNet-{preset.efficientnet.variant} from "
                             f"{wheel_file(preset.efficientnet.variant)}")
            except IADGPTError as exc:
                found.append(f"image tower: MISSING ({exc})")
        for what, spec, resolve in (
            ("clip", preset.clip_weights,
             lambda s: resolve_checkpoint(s, filenames=CLIP_FILENAMES, what="clip", fix=_FETCH_FIX)),
            ("llm", preset.llm.path, lambda s: resolve_model_folder(s, what="llm", fix=_FETCH_FIX)),
        ):
            if spec is None:
                if what == "clip" and preset.efficientnet is not None:
                    continue  # the EfficientNet tower has no open_clip part
                trained = shipped_weights(name) if what == "llm" else None
                found.append(f"llm: trained, shipped in {trained}" if trained
                             else f"{what}: random (no download needed)")
                continue
            try:
                found.append(f"{what}: {resolve(spec)}")
            except IADGPTError:
                found.append(f"{what}: MISSING {spec}")
        print(f"{name:{width}s} {preset.description}")
        for line in found:
            print(f"{'':{width}s}   {line}")
    return 0


def cmd_models_download(args: argparse.Namespace) -> int:
    """Fetch a preset's pretrained towers and LLM into the Hugging Face cache (online machines only)."""
    from iadgpt.config import load_preset
    from iadgpt.download import download_preset

    preset = load_preset(args.preset)
    try:
        download_preset(preset)
    except IADGPTError:
        raise
    except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
        print(f"error: downloading the weights of preset '{preset.name}' failed: {exc}. This needs a machine "
              f"that reaches the Hugging Face hub (HF_HUB_OFFLINE must be unset); on an offline machine copy "
              f"the files into the Hugging Face cache or point --llm / the preset at local folders",
              file=sys.stderr)
        return 1
    print(f"preset '{preset.name}' is ready: its weights are in the local Hugging Face cache")
    return 0


def cmd_models_verify(args: argparse.Namespace) -> int:
    from iadgpt.models_admin import check_against_preset
    from iadgpt.weights import verify_trainable

    problems = verify_trainable(args.folder)
    note = None
    if not problems:
        problems, note = check_against_preset(args.folder)
    if problems:
        for p in problems:
            print(f"PROBLEM: {p}")
        return 1
    checked = "manifest, every file's sha256, every tensor loaded and finite"
    print(f"{args.folder}: ok ({checked}{'' if note else ', names, shapes and dtypes fit the preset'})")
    if note:
        print(f"note: {note}")
    return 0


def cmd_models_import(args: argparse.Namespace) -> int:
    """Copy weights from an offline folder into the local cache, checking SHA256SUMS when present."""
    from iadgpt.models_admin import import_weights

    found = import_weights(args.folder, args.preset, progress=None if args.progress == "auto" else
                           args.progress == "on")
    for what, path in found:
        print(f"{what}: {path}")
    print("import done: `iadgpt models list` shows the preset's weights as found")
    return 0


def build_parser(add_commands: Callable[[Any], None] | None = None) -> argparse.ArgumentParser:
    """The `iadgpt` parser; `add_commands(subparsers)` adds an application's own commands (the app's `doctor`)."""
    parser = argparse.ArgumentParser(prog="iadgpt", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="inspect image files and folders")
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    _add_model_args(p)
    p.add_argument("--reference", nargs="+", help="images of good parts: few-shot mode (memory bank)")
    p.add_argument("--out", default="iadgpt-results", help="folder for the anomaly-map PNGs")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.add_argument("--no-answer", action="store_true", help="skip the LLM's full answer (verdict only)")
    p.set_defaults(func=cmd_inspect)

    from iadgpt.eval_cli import add_eval_parser
    from iadgpt.training.cli import add_train_parser

    add_train_parser(sub)
    add_eval_parser(sub)

    apg = sub.add_parser("apg", help="Abnormal Prompt Generator").add_subparsers(dest="apg_command", required=True)
    g = apg.add_parser("generate", help="write a prompt bank for a class with a local LLM (three-turn QA)")
    g.add_argument("--class", dest="class_name", required=True)
    g.add_argument("--llm", required=True, help="local folder (or cached repo id) of a causal LM")
    g.add_argument("--out", help="output .json (default: resources/apg/<class>.json)")
    g.add_argument("--kind", choices=["object", "texture"], help="object on a background, or a texture")
    g.add_argument("--max-keywords", type=int, default=10)
    g.add_argument("--max-new-tokens", type=int, default=320)
    g.add_argument("--device", default="auto")
    g.set_defaults(func=cmd_apg_generate)

    models = sub.add_parser("models", help="model management").add_subparsers(dest="models_command", required=True)
    m = models.add_parser("list", help="presets and whether their weights are found locally")
    m.set_defaults(func=cmd_models_list)
    d = models.add_parser("download", help="fetch a preset's pretrained weights (online machines)")
    d.add_argument("preset")
    d.set_defaults(func=cmd_models_download)
    v = models.add_parser("verify", help="check a trained weights folder against its manifest")
    v.add_argument("folder")
    v.set_defaults(func=cmd_models_verify)
    i = models.add_parser("import", help="import weights copied from another machine (offline machines)",
                          description="Import a preset's weights from DIR (clip/<checkpoint>, llm/<HF model "
                                      "folder>, optional SHA256SUMS) into the local Hugging Face cache.")
    i.add_argument("folder", metavar="DIR")
    i.add_argument("--preset", help="the preset the weights are for (default: DIR's name, if it is a preset)")
    i.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar while copying (auto: when stderr is a terminal)")
    i.set_defaults(func=cmd_models_import)

    if add_commands is not None:
        add_commands(sub)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; library errors become one sentence on stderr and exit status 2."""
    try:
        return args.func(args)
    except IADGPTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `iadgpt inspect ... | head -1`: the reader has gone, stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:  # a file or folder the command was pointed at
        print(f"error: {exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}; check the "
              f"path and its permissions", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
