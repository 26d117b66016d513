"""Benchmark evaluation: inspect a dataset's test split class by class and report the metrics.

`evaluate(EvalConfig(...))` runs an `Inspector` over the test images of an MVTec-AD style or VisA
dataset, in zero-shot mode (``reference_shots=0``: the prompts and, when trained, the decoder) or
k-shot mode (``reference_shots=K``: a memory bank from K seeded-chosen train/good images per
class), and computes I-AUROC, P-AUROC, AUPRO, F1-max and answer accuracy per class with
`iadgpt.metrics`. Pixel metrics are computed on maps and masks resized to ``map_size`` (area for
maps, nearest for masks) so that memory stays bounded on large test sets.

`write_report(result, out_dir)` writes ``metrics.json``, ``report.md``, one ROC curve
``roc_<class>.png`` per class and a few example overlays ``example_<class>_<i>.png`` (image | heat
map overlay | ground-truth outline), all drawn with OpenCV.
"""

from __future__ import annotations

import json
import logging
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from iadgpt.data.datasets import Sample, load_sample, mvtec_samples, product_for, visa_samples
from iadgpt.errors import ConfigError, DatasetError
from iadgpt.imageio import resize_map
from iadgpt.metrics import (
    ClassMetrics,
    answer_accuracy,
    aupro,
    auroc,
    evaluate_class,
    f1_max,
    pixel_auroc,
    pixel_f1_max,
    roc_curve,
    summarise,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]  # (images done, images in all, message)

DATASET_FORMATS = ("auto", "mvtec", "visa")
_METRIC_FIELDS = ("i_auroc", "p_auroc", "aupro", "f1_max", "pixel_f1_max", "answer_accuracy")
_IMAGE_FIELDS = ("i_auroc", "f1_max")
GROUNDING_FIELDS = ("good_answered_no", "defective_answered_yes", "balanced_accuracy", "type_top1_accuracy",
                    "type_precision", "types_shown", "answer_position_agreement")


@dataclass
class EvalConfig:
    """What to evaluate and how. ``data`` is a dataset root (or one MVTec-layout class folder)."""

    data: Path
    preset: str = "tiny-test"
    weights: Path | None = None
    dataset_format: str = "auto"  # "auto" (split_csv/ present -> visa), "mvtec" or "visa"
    classes: list[str] | None = None
    product: str | None = None  # inspect a one-class dataset as this product; None: the weights' record
    reference_shots: int = 0  # 0: zero-shot / self-supervised; K > 0: memory bank of K good images
    limit: int | None = None  # at most this many test images per class (stratified, seeded)
    device: str = "auto"
    precision: str = "auto"
    llm_path: str | None = None  # --llm: the LLM folder instead of the preset's
    clip_weights: str | None = None  # --clip: the open_clip checkpoint instead of the preset's
    out_dir: Path = Path("iadgpt-eval")
    seed: int = 0
    map_size: int | None = 256  # pixel metrics on (map_size, map_size); None: each image's resolution
    generate_answer: bool = False  # False: the verdict comes from the fast Yes/No path only
    examples_per_class: int = 2  # overlays: the top-scoring defective image, then the top normal one
    chat_images: int = 0  # per class: ask the scripted chat questions about this many defective images
    # (and half as many good ones) and check the answers against verdict and evidence

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.out_dir = Path(self.out_dir)
        if self.weights is not None:
            self.weights = Path(self.weights)
        if self.dataset_format not in DATASET_FORMATS:
            raise ConfigError(f"dataset format '{self.dataset_format}' is not one of {', '.join(DATASET_FORMATS)}")
        if self.reference_shots < 0:
            raise ConfigError(f"reference_shots must be 0 (zero-shot) or a positive K, got {self.reference_shots}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of test images per class, got {self.limit}")
        if self.map_size is not None and self.map_size < 8:
            raise ConfigError(f"map_size must be at least 8 pixels (or None), got {self.map_size}")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("data", "out_dir", "weights"):
            out[key] = None if out[key] is None else str(out[key])
        out["dataset_format"] = resolve_format(self.data, self.dataset_format)
        return out


@dataclass
class Example:
    """One image kept for the report's overlays: the full-resolution map and mask."""

    class_name: str
    image: Path
    label: int
    defect: str
    score: float
    anomaly_map: np.ndarray = field(repr=False)  # (H, W) float32
    mask: np.ndarray = field(repr=False)  # (H, W) bool


# --------------------------------------------------------------------------------------------
# Dataset selection
# --------------------------------------------------------------------------------------------

def resolve_format(root: Path, dataset_format: str = "auto") -> str:
    """"visa" when ``root/split_csv`` exists (for "auto"), else "mvtec"; explicit formats pass through."""
    if dataset_format != "auto":
        return dataset_format
    return "visa" if (Path(root) / "split_csv").is_dir() else "mvtec"


def _list(cfg: EvalConfig, split: str) -> list[Sample]:
    if resolve_format(cfg.data, cfg.dataset_format) == "visa":
        return visa_samples(cfg.data, split, classes=cfg.classes)
    return mvtec_samples(cfg.data, split, classes=cfg.classes)


def _rng(seed: int, class_name: str, purpose: str) -> np.random.Generator:
    """A generator that depends only on the seed, the class and the purpose (not on the run order)."""
    return np.random.default_rng([seed, zlib.crc32(class_name.encode()), zlib.crc32(purpose.encode())])


def limit_samples(samples: Sequence[Sample], limit: int | None, seed: int = 0) -> list[Sample]:
    """At most ``limit`` samples of one class, seeded and stratified by label.

    Good and anomalous images keep their proportion (rounded), but each label that is present
    keeps at least one image when ``limit >= 2``. The listing order of the input is preserved.
    """
    samples = list(samples)
    if limit is None or len(samples) <= limit:
        return samples
    class_name = samples[0].class_name if samples else ""
    good = [i for i, s in enumerate(samples) if s.label == 0]
    bad = [i for i, s in enumerate(samples) if s.label == 1]
    n_bad = int(round(limit * len(bad) / len(samples)))
    if limit >= 2:
        if bad and n_bad == 0:
            n_bad = 1
        if good and n_bad == limit:
            n_bad = limit - 1
    n_bad = min(n_bad, len(bad))
    n_good = min(limit - n_bad, len(good))
    n_bad = min(limit - n_good, len(bad))  # hand unused good slots back to the anomalous images
    rng = _rng(seed, class_name, "limit")
    keep = set(rng.permutation(good)[:n_good].tolist()) | set(rng.permutation(bad)[:n_bad].tolist())
    return [s for i, s in enumerate(samples) if i in keep]


def choose_references(train: Sequence[Sample], shots: int, seed: int = 0) -> list[Sample]:
    """``shots`` train/good samples of one class, the first ``shots`` of a seeded permutation."""
    good = [s for s in train if s.label == 0]
    if not good:
        raise DatasetError("k-shot evaluation needs train/good images, but the class has none")
    if shots > len(good):
        log.warning("class '%s' has only %d train/good images; using all of them instead of %d",
                    good[0].class_name, len(good), shots)
    order = _rng(seed, good[0].class_name, "references").permutation(len(good))[:shots]
    return [good[i] for i in sorted(order.tolist())]


def _group(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.class_name, []).append(s)
    return groups


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def _resize_map(amap: np.ndarray, size: int | None) -> np.ndarray:
    return amap.astype(np.float32, copy=False) if size is None else resize_map(amap, size, size)


def _resize_mask(mask: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or mask.shape == (size, size):
        return mask
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0


def class_metrics(class_name: str, labels: Sequence[int], scores: Sequence[float], masks: Sequence[np.ndarray],
                  maps: Sequence[np.ndarray], verdicts: Sequence[bool]) -> tuple[ClassMetrics, list[str]]:
    """`evaluate_class`, or, when a metric cannot be computed (one label only), that metric as None
    and a note saying why."""
    try:
        return evaluate_class(class_name, labels, scores, masks, maps, verdicts), []
    except ValueError as first:
        log.info("%s", first)
    notes: list[str] = []
    y = np.asarray(labels, dtype=int)

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ValueError as exc:
            notes.append(f"{name}: {exc}")
            return None

    n_bad = int(y.sum())
    both = 0 < n_bad < y.size
    if not both:
        notes.append(f"only {'anomalous' if n_bad else 'good'} images in this (limited) subset: "
                     "image-level metrics (I-AUROC, F1-max) need both labels")
    metrics = ClassMetrics(
        class_name=class_name, n_images=int(y.size), n_anomalous=n_bad,
        i_auroc=attempt("I-AUROC", lambda: auroc(y, scores)) if both else None,
        p_auroc=attempt("P-AUROC", lambda: pixel_auroc(masks, maps)),
        aupro=attempt("AUPRO", lambda: aupro(masks, maps)),
        f1_max=attempt("F1-max", lambda: f1_max(y, scores)[0]) if both else None,
        pixel_f1_max=attempt("pixel F1-max", lambda: pixel_f1_max(masks, maps)[0]),
        answer_accuracy=attempt("answer accuracy", lambda: answer_accuracy(y, verdicts)),
    )
    return metrics, notes


def _summary(per_class: list[ClassMetrics]) -> tuple[dict[str, float | None], list[str]]:
    """`summarise`'s mean; a metric missing for some classes is averaged over the others, with a note."""
    summary = summarise(per_class)
    mean = dict(summary["mean"])
    notes = [summary["notes"]]
    for name in _METRIC_FIELDS:
        values = [getattr(m, name) for m in per_class]
        have = [v for v in values if v is not None]
        if mean.get(name) is None and have:
            mean[name] = float(np.mean(have))
            missing = [m.class_name for m, v in zip(per_class, values, strict=True) if v is None]
            notes.append(f"mean {name} over {len(have)} of {len(values)} classes (missing: {', '.join(missing)})")
    return mean, notes


def _make_inspector(cfg: EvalConfig):
    from iadgpt.inspector import Inspector

    return Inspector(cfg.preset, device=cfg.device, precision=cfg.precision, weights=cfg.weights,
                     llm_path=cfg.llm_path, clip_weights=cfg.clip_weights)


def product_names(cfg: EvalConfig, classes: Sequence[str], inspector) -> dict[str, str]:
    """The product (prompt bank, name in the prompts) each dataset class is inspected as: --product for a
    one-class dataset, else what the weights were trained as (manifest extra.products), else the class."""
    if cfg.product:
        return product_for(cfg.data, classes, cfg.product)
    trained = ((getattr(inspector, "weights_manifest", None) or {}).get("extra") or {}).get("products") or {}
    return {c: trained.get(c, c) for c in classes}


def evaluate(cfg: EvalConfig, progress: ProgressFn | None = None, *, inspector=None) -> dict[str, Any]:
    """Evaluate every class of ``cfg.data``; returns config, per-class rows, mean, timing.

    The result also holds "images" (per-image records: path, label, defect, score, verdict, p_yes),
    and "examples" (`Example` objects for the report, not JSON). ``inspector`` reuses a loaded one.
    """
    started = time.perf_counter()
    test = _group(_list(cfg, "test"))
    train = _group(_list(cfg, "train")) if cfg.reference_shots > 0 else {}
    selected = {name: limit_samples(samples, cfg.limit, cfg.seed) for name, samples in sorted(test.items())}
    total = sum(len(v) for v in selected.values())

    t0 = time.perf_counter()
    if inspector is None:
        inspector = _make_inspector(cfg)
    load_s = time.perf_counter() - t0

    products = product_names(cfg, list(selected), inspector)
    rows: list[dict[str, Any]] = []
    per_class: list[ClassMetrics] = []
    records: list[dict[str, Any]] = []
    examples: list[Example] = []
    bank_s = 0.0
    inspect_s = 0.0
    stage_ms: dict[str, float] = {}
    done = 0
    for class_name, samples in selected.items():
        inspector.set_product(products[class_name])
        references: list[Sample] = []
        if cfg.reference_shots > 0:
            if class_name not in train:
                raise DatasetError(f"class '{class_name}' has no train split; k-shot evaluation needs "
                                   "train/good images (or use reference_shots 0)")
            references = choose_references(train[class_name], cfg.reference_shots, cfg.seed)
            t0 = time.perf_counter()
            inspector.build_memory_bank([s.image for s in references])
            bank_s += time.perf_counter() - t0
        else:
            inspector.set_memory_bank(None)
        labels: list[int] = []
        scores: list[float] = []
        maps: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        verdicts: list[bool] = []
        outcomes: list[tuple[Sample, Any]] = []  # (sample, InspectionResult without its map)
        best: dict[int, Example] = {}  # label -> highest-scoring example so far
        mode = inspector.mode
        for sample in samples:
            rgb, mask = load_sample(sample)
            t0 = time.perf_counter()
            result = inspector.inspect(rgb, generate_answer=cfg.generate_answer)
            inspect_s += time.perf_counter() - t0
            for stage, ms in result.timings_ms.items():
                stage_ms[stage] = stage_ms.get(stage, 0.0) + ms
            labels.append(sample.label)
            scores.append(float(result.score))
            maps.append(_resize_map(result.anomaly_map, cfg.map_size))
            masks.append(_resize_mask(mask, cfg.map_size))
            verdicts.append(result.verdict == "defective")
            outcomes.append((sample, result))
            records.append({"class": class_name, "image": str(sample.image), "label": sample.label,
                            "defect": sample.defect, "score": round(float(result.score), 6),
                            "verdict": result.verdict, "p_yes": round(float(result.p_yes), 6),
                            "position": result.position, "defect_types": [t for t, _ in result.defect_types],
                            **({"answer": result.answer} if cfg.generate_answer else {})})
            if sample.label not in best or result.score > best[sample.label].score:
                best[sample.label] = Example(class_name, sample.image, sample.label, sample.defect,
                                             float(result.score), result.anomaly_map, mask)
            done += 1
            if progress:
                progress(done, total, f"{class_name}: {sample.image.name}")
        metrics, notes = class_metrics(class_name, labels, scores, masks, maps, verdicts)
        per_class.append(metrics)
        row = asdict(metrics)
        row.update(mode=mode, product=products[class_name], references=[str(s.image) for s in references],
                   notes=notes)
        row.update(grounding_metrics(outcomes, inspector.prompts.apg_names, cfg.generate_answer))
        if cfg.chat_images > 0:
            row["chat"] = chat_consistency(inspector, outcomes, cfg.chat_images)
        for _, result in outcomes:
            result.anomaly_map = None  # the maps are kept resized in `maps`; free the full-size ones
        rows.append(row)
        examples.extend([best[label] for label in (1, 0) if label in best][:cfg.examples_per_class])
        log.info("%s: %s", class_name, {k: row[k] for k in _METRIC_FIELDS})
        del maps, masks

    if not per_class:
        raise DatasetError(f"dataset {cfg.data} has no test images to evaluate")
    mean, notes = _summary(per_class)
    for key in GROUNDING_FIELDS:
        values = [row[key] for row in rows if row.get(key) is not None]
        mean[key] = float(np.mean(values)) if values else None
    chats = [row["chat"] for row in rows if "chat" in row]
    if chats:
        mean["chat"] = {k: float(np.mean([c[k] for c in chats if k in c])) for k in chats[0]}
    seconds = time.perf_counter() - started
    return {
        "config": cfg.to_json(),
        "model_id": inspector.model_id,
        "classes": rows,
        "mean": mean,
        "n_classes": len(rows),
        "n_images": total,
        "n_anomalous": sum(m.n_anomalous for m in per_class),
        "notes": notes,
        "timing": {
            "seconds": round(seconds, 3),
            "model_load_seconds": round(load_s, 3),
            "memory_bank_seconds": round(bank_s, 3),
            "inspect_seconds": round(inspect_s, 3),
            "images_per_second": round(total / inspect_s, 3) if inspect_s > 0 else None,
            "mean_stage_ms": {k: round(v / max(total, 1), 3) for k, v in stage_ms.items()},
            "device": str(inspector.device),
            "dtype": str(inspector.dtype).removeprefix("torch."),
        },
        "images": records,
        "examples": examples,
    }


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def grounding_metrics(outcomes: Sequence[tuple[Sample, Any]], bank_names: Sequence[str],
                      answers: bool) -> dict[str, Any]:
    """Verdict balance, defect types against the test folder names, and (with answers) whether the
    answer names the Position row's place."""
    from iadgpt.grounding import position_agrees, type_label

    good = [r for s, r in outcomes if s.label == 0]
    bad = [(s, r) for s, r in outcomes if s.label == 1]
    good_no = _rate(sum(r.verdict == "good" for r in good), len(good))
    bad_yes = _rate(sum(r.verdict == "defective" for _, r in bad), len(bad))
    labelled = [(type_label(s.defect, bank_names), r) for s, r in bad]
    labelled = [(t, r) for t, r in labelled if t is not None]
    shown = [(t, r) for t, r in labelled if r.defect_types]
    right = sum(r.defect_types[0][0] == t for t, r in shown)
    out: dict[str, Any] = {
        "good_answered_no": good_no, "defective_answered_yes": bad_yes,
        "balanced_accuracy": None if good_no is None or bad_yes is None else (good_no + bad_yes) / 2,
        "type_top1_accuracy": _rate(right, len(labelled)), "type_precision": _rate(right, len(shown)),
        "types_shown": _rate(len(shown), len(labelled)), "type_labelled_images": len(labelled),
    }
    if answers:
        said = [r for _, r in bad if r.verdict == "defective" and r.evidence is not None]
        out["answer_position_agreement"] = _rate(sum(position_agrees(r.answer, r.evidence) for r in said),
                                                 len(said))
    return out


def chat_consistency(inspector, outcomes: Sequence[tuple[Sample, Any]], n_images: int) -> dict[str, float | None]:
    """Per question kind, the share of scripted chat answers consistent with verdict and evidence, on the
    first n_images defective and n_images // 2 good images (all asked every scripted question)."""
    bad = [(str(s.image), r) for s, r in outcomes if s.label == 1][:n_images]
    good = [(str(s.image), r) for s, r in outcomes if s.label == 0][:max(1, n_images // 2)]
    return scripted_chat(inspector, bad + good)


def scripted_chat(inspector, inspected: Sequence[tuple[Any, Any]]) -> dict[str, float]:
    """Per question kind, the share of consistent answers when every scripted question is asked after the
    first answer about each (image, result) pair (the image as `Inspector.chat` takes it)."""
    from iadgpt.grounding import consistent, scripted_questions
    from iadgpt.llm import inspection_messages

    hits: dict[str, list[bool]] = {}
    for image, result in inspected:
        first = inspection_messages("", result.class_name)[1]["content"]
        answer = result.answer or "".join(inspector.chat(image, [], "")).strip()
        history = [{"role": "user", "content": first}, {"role": "assistant", "content": answer}]
        for kind, question in scripted_questions():
            reply = "".join(inspector.chat(image, history, question)).strip()
            hits.setdefault(kind, []).append(consistent(kind, reply, result.verdict == "defective", result.evidence,
                                                       result.class_name))
    return {kind: sum(v) / len(v) for kind, v in hits.items()}


def json_summary(result: dict[str, Any], *, images: bool = False) -> dict[str, Any]:
    """The JSON-safe part of an `evaluate` result (without examples; per-image records on request)."""
    skip = {"examples"} | (set() if images else {"images"})
    return {k: v for k, v in result.items() if k not in skip}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

_TABLE_COLUMNS = (("class", "class_name"), ("images", "n_images"), ("anomalous", "n_anomalous"),
                  ("I-AUROC", "i_auroc"), ("P-AUROC", "p_auroc"), ("AUPRO", "aupro"), ("F1-max", "f1_max"),
                  ("answer accuracy", "answer_accuracy"))


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{100 * value:.1f}"
    return str(value)


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """Header, one row per class and the mean row, as strings (metrics in percent)."""
    rows = [[title for title, _ in _TABLE_COLUMNS]]
    for row in result["classes"]:
        rows.append([_fmt(row[key]) for _, key in _TABLE_COLUMNS])
    mean = result["mean"]
    rows.append(["mean", str(result["n_images"]), str(result["n_anomalous"])]
                + [_fmt(mean.get(key)) for _, key in _TABLE_COLUMNS[3:]])
    return rows


def format_table(result: dict[str, Any]) -> str:
    """The per-class table as aligned plain text."""
    rows = table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"


def _write_png(path: Path, bgr: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def draw_roc(fpr: np.ndarray, tpr: np.ndarray, title: str, size: int = 480) -> np.ndarray:
    """A ROC plot (BGR uint8, (size, size, 3)): axes with ticks, the chance diagonal, the curve."""
    img = np.full((size, size, 3), 255, np.uint8)
    left, right, top, bottom = 60, 20, 50, 55
    w, h = size - left - right, size - top - bottom

    def px(x: float, y: float) -> tuple[int, int]:
        return int(round(left + x * w)), int(round(top + (1 - y) * h))

    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in np.linspace(0, 1, 6):
        gx, gy = px(t, 0)[0], px(0, t)[1]
        cv2.line(img, (gx, top), (gx, top + h), (235, 235, 235), 1)
        cv2.line(img, (left, gy), (left + w, gy), (235, 235, 235), 1)
        cv2.line(img, (gx, top + h), (gx, top + h + 5), (0, 0, 0), 1)
        cv2.line(img, (left - 5, gy), (left, gy), (0, 0, 0), 1)
        cv2.putText(img, f"{t:.1f}", (gx - 10, top + h + 20), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"{t:.1f}", (left - 35, gy + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + w, top + h), (0, 0, 0), 1)
    # chance diagonal, dashed
    for a in np.arange(0, 1, 0.04):
        cv2.line(img, px(a, a), px(min(a + 0.02, 1), min(a + 0.02, 1)), (150, 150, 150), 1, cv2.LINE_AA)
    pts = np.array([px(float(x), float(y)) for x, y in zip(fpr, tpr, strict=True)], np.int32)
    cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, (200, 80, 0), 2, cv2.LINE_AA)
    cv2.putText(img, "false positive rate", (left + w // 2 - 70, size - 12), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ylabel = np.full((20, 160, 3), 255, np.uint8)
    cv2.putText(ylabel, "true positive rate", (5, 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ylabel = cv2.rotate(ylabel, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = top + h // 2 - ylabel.shape[0] // 2
    img[y0:y0 + ylabel.shape[0], 2:2 + ylabel.shape[1]] = ylabel
    scale = 0.55
    while cv2.getTextSize(title, font, scale, 1)[0][0] > size - 20 and scale > 0.3:
        scale -= 0.05
    tw = cv2.getTextSize(title, font, scale, 1)[0][0]
    cv2.putText(img, title, ((size - tw) // 2, 30), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def draw_example(example: Example, vmax: float, height: int = 256) -> np.ndarray:
    """image | heat map overlay | ground-truth outline, side by side (BGR uint8)."""
    from iadgpt.imageio import load_image

    rgb = load_image(example.image)
    h, w = rgb.shape[:2]
    width = max(16, int(round(w * height / h)))
    bgr = cv2.cvtColor(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    amap = cv2.resize(example.anomaly_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(amap / max(vmax, 1e-6) * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    overlay = cv2.addWeighted(bgr, 0.5, heat, 0.5, 0)
    outline = bgr.copy()
    mask = cv2.resize(example.mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(outline, contours, -1, (0, 255, 0), 2)
    gap = np.full((height, 4, 3), 255, np.uint8)
    panel = np.hstack([bgr, gap, overlay, gap, outline])
    bar = np.full((24, panel.shape[1], 3), 255, np.uint8)
    label = "defective" if example.label else "good"
    text = f"{example.class_name} | {label} ({example.defect}) | score {example.score:.3f}"
    cv2.putText(bar, text, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, panel])


def write_report(result: dict[str, Any], out_dir: Path, examples: Sequence[Example] | None = None
                 ) -> dict[str, Path]:
    """metrics.json, report.md, roc_<class>.png and example_<class>_<i>.png under ``out_dir``.

    ``examples`` defaults to the result's own. Returns name -> path of every file written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if examples is None:
        examples = result.get("examples", [])
    written: dict[str, Path] = {}

    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(json_summary(result, images=True), indent=2) + "\n", encoding="utf-8")
    written["metrics.json"] = metrics_path

    by_class: dict[str, list[dict[str, Any]]] = {}
    for rec in result.get("images", []):
        by_class.setdefault(rec["class"], []).append(rec)
    roc_files: dict[str, str] = {}
    for row in result["classes"]:
        name = row["class_name"]
        recs = by_class.get(name, [])
        labels = [r["label"] for r in recs]
        if not recs or len(set(labels)) < 2:
            continue
        fpr, tpr, _ = roc_curve(labels, [r["score"] for r in recs])
        title = f"ROC {name}: I-AUROC = {auroc(labels, [r['score'] for r in recs]):.3f}"
        path = out_dir / f"roc_{_safe_name(name)}.png"
        _write_png(path, draw_roc(fpr, tpr, title))
        written[path.name] = path
        roc_files[name] = path.name

    example_files: dict[str, list[str]] = {}
    counters: dict[str, int] = {}
    vmax = {name: max((r["score"] for r in recs), default=1.0) for name, recs in by_class.items()}
    for ex in examples:
        i = counters.get(ex.class_name, 0)
        counters[ex.class_name] = i + 1
        path = out_dir / f"example_{_safe_name(ex.class_name)}_{i}.png"
        try:
            _write_png(path, draw_example(ex, vmax.get(ex.class_name, ex.score)))
        except Exception as exc:  # noqa: BLE001 - a missing example must not lose the report
            log.warning("example overlay for %s failed: %s", ex.image, exc)
            continue
        written[path.name] = path
        example_files.setdefault(ex.class_name, []).append(path.name)

    md = _markdown(result, roc_files, example_files)
    report_path = out_dir / "report.md"
    report_path.write_text(md, encoding="utf-8")
    written["report.md"] = report_path
    return written


def _markdown(result: dict[str, Any], roc_files: dict[str, str], example_files: dict[str, list[str]]) -> str:
    cfg = result["config"]
    rows = table_rows(result)
    mode = "zero-shot" if cfg["reference_shots"] == 0 else f"{cfg['reference_shots']}-shot (memory bank)"
    lines = [
        f"# IAD-GPT evaluation: {Path(cfg['data']).name}",
        "",
        f"Model `{result.get('model_id', cfg['preset'])}`, {mode}, {result['n_classes']} classes, "
        f"{result['n_images']} test images ({result['n_anomalous']} anomalous). Metrics in percent.",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(rows[0]) - 1)) + "|",
    ]
    for r in rows[1:-1]:
        lines.append("| " + " | ".join(r) + " |")
    lines.append("| " + " | ".join(f"**{c}**" for c in rows[-1]) + " |")
    lines.append("")
    notes = list(result.get("notes", []))
    for row in result["classes"]:
        notes.extend(f"{row['class_name']}: {n}" for n in row.get("notes", []))
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    modes = sorted({row.get("mode", "") for row in result["classes"]})
    if "untrained" in modes:
        lines += ["**Untrained model in zero-shot mode: the anomaly maps come from random decoder weights; "
                  "these numbers are not meaningful. Pass trained weights or use reference shots.**", ""]
    timing = result["timing"]
    lines += ["## Timing", ""]
    lines += [f"- total: {timing['seconds']:.1f} s (model load {timing['model_load_seconds']:.1f} s, "
              f"memory banks {timing['memory_bank_seconds']:.1f} s, inspection {timing['inspect_seconds']:.1f} s)",
              f"- throughput: {timing['images_per_second']} images/s on {timing['device']} ({timing['dtype']})"]
    if timing.get("mean_stage_ms"):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in timing["mean_stage_ms"].items())
        lines.append(f"- mean per image (ms): {stages}")
    lines += ["", "## Configuration", "", "```json", json.dumps(cfg, indent=2), "```", ""]
    if roc_files:
        lines += ["## ROC curves", ""]
        lines += [f"![ROC {name}]({file})" for name, file in roc_files.items()] + [""]
    if example_files:
        lines += ["## Examples", "", "Each: image | anomaly-map overlay | ground-truth outline "
                  "(the highest-scoring defective and normal image of each class).", ""]
        for name, files in example_files.items():
            lines += [f"![{name} example {i}]({f})" for i, f in enumerate(files)]
        lines.append("")
    return "\n".join(lines)
