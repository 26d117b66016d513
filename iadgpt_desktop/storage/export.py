"""Exports of the inspection history: a CSV for spreadsheets and a self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import html
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from sqlalchemy.orm import Session

from iadgpt.atomic import atomic_open
from iadgpt.imageio import shrink_to_side
from iadgpt_desktop.storage.errors import StorageError, translate
from iadgpt_desktop.storage.files import FileStore
from iadgpt_desktop.storage.records import DECISIONS, UNDECIDED, InspectionFilter, InspectionRow, utc_now
from iadgpt_desktop.storage.repository import (
    defect_rate_trend,
    get_conversation,
    iter_inspections,
    summarize_inspections,
)
from iadgpt_desktop.storage.wording import (
    DECISION_LABELS,
    describe_decision,
    describe_defect_types,
    describe_nearest_reference,
    format_defect_types,
)

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "id", "created_at", "product", "file_name", "source", "image_path", "image_sha256", "width", "height", "score",
    "score_top1", "p_yes", "verdict", "answer", "position", "defect_types", "mask_path", "model_id", "mode",
    "latency_ms", "operator_decision", "operator", "decided_at", "note", "reference_name", "reference_path",
    "reference_similarity",
)
THUMBNAIL_PX = 160
JPEG_QUALITY = 75
# Measured: 452x184 spindle images as 160 px JPEG overlays make 6.4 MB for 1,000 rows (0.9 MB for
# 137; the report with full PNG thumbnails and a separate map was 2.7 MB for 137). Said in the report.
TYPICAL_ROW_KB = 6.5


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula (= + - @, tab, CR first) gets a leading
    apostrophe, so it is shown as the text it is; numbers are written as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def local_time(value: datetime | None) -> str:
    """A stored UTC time in the computer's time zone, to the second: "2026-12-01 09:14:03"."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def export_csv(s: Session, flt: InspectionFilter, path: Path) -> int:
    """Write the selected inspections, oldest first, as UTF-8 CSV with a header row; returns the row count.

    Text cells are neutralised against formula injection (see `csv_cell`): an operator's note or a
    product name such as `=HYPERLINK(...)` is written as text, never evaluated by a spreadsheet.
    """
    rows = 0
    with _replacing(Path(path), newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in iter_inspections(s, flt):
            writer.writerow([csv_cell(v) for v in (
                r.id, _iso(r.created_at), r.product_name or "", r.file_name or "", r.source, r.image_path,
                r.image_sha256, r.width, r.height, r.score, r.score_top1, r.p_yes, r.verdict, r.answer,
                r.position or "",
                format_defect_types(r.defect_types), r.mask_path or "", r.model_id, r.mode, round(r.latency_ms, 1),
                r.operator_decision or "", r.operator or "", _iso(r.decided_at), r.note or "",
                r.reference_name or "", r.reference_path or "",
                "" if r.reference_similarity is None else r.reference_similarity,
            )])
            rows += 1
    return rows


def export_html(s: Session, flt: InspectionFilter, path: Path, files: FileStore, max_rows: int = 5000) -> int:
    """Write a single-file HTML report: a summary, the defect-rate trend, then one row per inspection
    (local time, file name, types in words, the anomaly map drawn over a JPEG thumbnail of the image,
    the conversation); at most `max_rows` rows, oldest first. Returns the number of rows written."""
    summary = summarize_inspections(s, flt)
    trend = defect_rate_trend(s, flt, "day")
    rows = 0
    with _replacing(Path(path)) as f:
        f.write(_head(flt, summary, max_rows, trend))
        for r in iter_inspections(s, flt, limit=max_rows):
            f.write(_html_row(r, files, get_conversation(s, r.id)))
            rows += 1
        f.write("</tbody></table>\n</body>\n</html>\n")
    return rows


# ---- HTML pieces ---------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #666; font-size: 13px; margin-bottom: 16px; }
.summary { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 20px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 90px; }
.card b { display: block; font-size: 20px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 6px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.answer { max-width: 360px; white-space: pre-wrap; }
.defective { color: #b00020; font-weight: 600; }
.good { color: #1b7f3b; font-weight: 600; }
img { display: block; max-width: 160px; max-height: 160px; }
.missing { color: #999; font-style: italic; }
.chat { margin-top: 6px; color: #444; }
.chat b { color: #1565c0; }
svg.trend { border: 1px solid #ddd; border-radius: 6px; margin-bottom: 20px; }
"""


def _head(flt: InspectionFilter, summary: dict[str, int], max_rows: int,
          trend: list[tuple[datetime, int, int]] | None = None) -> str:
    total, defective = summary["total"], summary["defective"]
    rate = f"{defective / total:.1%}" if total else "–"
    cards = [("Inspections", str(total)), ("Defective", str(defective)), ("Good", str(summary["good"])),
             ("Defect rate", rate), ("Defective after decisions", str(summary["final_defective"]))]
    cards += [(DECISION_LABELS[d], str(summary[d])) for d in (*DECISIONS, UNDECIDED)]
    card_html = "".join(f'<div class="card">{html.escape(k)}<b>{html.escape(v)}</b></div>' for k, v in cards)
    shown = f"; showing the first {max_rows} (oldest first)" if total > max_rows else ""
    header = "".join(f"<th>{h}</th>" for h in ("#", "Time", "File", "Product", "Verdict", "Score", "Position",
                                                "Defect types", "Reference", "Decision",
                                                "Answer and conversation",
                                                "Image with anomaly map"))
    zone = datetime.now().astimezone().strftime("%Z (UTC%z)")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>IAD-GPT inspection report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>IAD-GPT inspection report</h1>\n"
        f'<div class="meta">Generated {html.escape(local_time(utc_now()))}; times are local, {html.escape(zone)}. '
        f"Filter: {html.escape(_describe_filter(flt))}{html.escape(shown)}. Thumbnails are {THUMBNAIL_PX} px "
        f"JPEGs with the anomaly map drawn over them: about {TYPICAL_ROW_KB} kB a row, "
        f"{TYPICAL_ROW_KB:.1f} MB for 1,000 rows.</div>\n"
        f'<div class="summary">{card_html}</div>\n'
        f"{_trend_svg(trend or [])}"
        f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n"
    )


def _html_row(r: InspectionRow, files: FileStore, messages: list | None = None) -> str:
    decision = describe_decision(r.operator_decision) if r.operator_decision else "—"
    if r.operator:
        decision += f" ({r.operator})"
    cells = [
        str(r.id), local_time(r.created_at), r.file_name or "", r.product_name or "", r.verdict, f"{r.score:.3f}",
        r.position or "", describe_defect_types(r.defect_types),
        describe_nearest_reference(r.reference_name, r.reference_similarity) if r.reference_name else "",
        decision,
    ]
    out = "<tr>" + "".join(
        f'<td class="{html.escape(r.verdict)}">{html.escape(c)}</td>' if i == 4 else f"<td>{html.escape(c)}</td>"
        for i, c in enumerate(cells)
    )
    answer = r.answer + (f"\nNote: {r.note}" if r.note else "")
    chat = "".join(f'<div class="chat"><b>{"Q" if m.role == "user" else "A"}:</b> {html.escape(m.content)}</div>'
                   for m in messages or [])
    out += f'<td class="answer">{html.escape(answer)}{chat}</td>'
    out += f"<td>{_thumbnail(files, r.image_path, r.mask_path)}</td></tr>\n"
    return out


def _read(files: FileStore, relative: str, flags: int) -> np.ndarray | None:
    try:
        data = np.frombuffer(files.read_bytes(relative), np.uint8)
    except (StorageError, ValueError, OSError):
        return None
    return cv2.imdecode(data, flags)


def _thumbnail(files: FileStore, image_rel: str | None, mask_rel: str | None) -> str:
    """The image as a small JPEG with the anomaly map blended over it (as the Live view's heat map)."""
    if not image_rel:
        return '<span class="missing">none</span>'
    image = _read(files, image_rel, cv2.IMREAD_COLOR)
    if image is None:
        return f'<span class="missing">missing: {html.escape(image_rel)}</span>'
    image = shrink_to_side(image, THUMBNAIL_PX)
    mask = _read(files, mask_rel, cv2.IMREAD_GRAYSCALE) if mask_rel else None
    alt = "inspected image"
    if mask is not None:
        mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        colours = cv2.applyColorMap(mask, cv2.COLORMAP_JET)  # BGR, like the decoded image
        alpha = (0.45 * (0.35 + 0.65 * mask.astype(np.float32) / 255))[..., None]
        image = (image * (1 - alpha) + colours * alpha).astype(np.uint8)
        alt = "inspected image with its anomaly map"
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        return '<span class="missing">could not encode</span>'
    return f'<img alt="{alt}" src="data:image/jpeg;base64,{base64.b64encode(buf.tobytes()).decode("ascii")}">'


def _trend_svg(trend: list[tuple[datetime, int, int]], width: int = 640, height: int = 140) -> str:
    """The defect rate per day as a small inline SVG line chart (no script, no external file)."""
    if not trend:
        return ""
    pad = 28
    n = len(trend)
    xs = [pad + (width - 2 * pad) * (i / max(1, n - 1)) for i in range(n)]
    ys = [height - pad - (height - 2 * pad) * (bad / total if total else 0.0) for _, total, bad in trend]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#c62828"><title>'
                   f'{html.escape(day.astimezone().strftime("%Y-%m-%d"))}: {bad} of {total} defective</title></circle>'
                   for (day, total, bad), x, y in zip(trend, xs, ys, strict=True))
    first, last = (html.escape(trend[i][0].astimezone().strftime("%Y-%m-%d")) for i in (0, -1))
    return (f'<svg class="trend" width="{width}" height="{height}" role="img" '
            f'aria-label="defect rate per day">'
            f'<text x="{pad}" y="16" font-size="12">Defect rate per day</text>'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
            f'<text x="4" y="{pad + 4}" font-size="10">100%</text>'
            f'<text x="4" y="{height - pad}" font-size="10">0%</text>'
            f'<polyline fill="none" stroke="#c62828" stroke-width="2" points="{points}"/>{dots}'
            f'<text x="{pad}" y="{height - 8}" font-size="10">{first}</text>'
            f'<text x="{width - pad}" y="{height - 8}" font-size="10" text-anchor="end">{last}</text></svg>\n')


def _describe_filter(flt: InspectionFilter) -> str:
    parts = []
    if flt.start or flt.end:
        parts.append(f"time {_iso(flt.start) or '…'} to {_iso(flt.end) or '…'}")
    if flt.product_id is not None:
        parts.append(f"product #{flt.product_id}")
    if flt.verdict:
        parts.append(f"verdict {flt.verdict}")
    if flt.decision:
        parts.append(f"decision {flt.decision}")
    if flt.text:
        parts.append(f'text "{flt.text}"')
    return ", ".join(parts) or "all inspections"


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


@contextmanager
def _replacing(path: Path, newline: str | None = None) -> Iterator[IO[str]]:
    """A text file written beside `path` and renamed over it at the end (`atomic_open`), so a failed
    export never leaves a truncated file where a good one was, nor a temporary file beside it."""
    created = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w", encoding="utf-8", newline=newline) as f:
            created = True
            yield f
    except OSError as exc:
        where = f"the export file {path}" if created else f"the export folder {path.parent}"
        raise translate(exc, where) or StorageError(
            f"could not write the export {path}: {_os_cause(exc)}; choose another folder") from exc


def _os_cause(exc: OSError) -> str:
    """ "no such file or directory (/proc/nope)" rather than "[Errno 2] No such file or directory: '/proc/nope'"."""
    if not exc.strerror:
        return str(exc)
    return exc.strerror[:1].lower() + exc.strerror[1:] + (f" ({exc.filename})" if exc.filename else "")
