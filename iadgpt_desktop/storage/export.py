"""Exports of the inspection history: a CSV for spreadsheets and a self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import html
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO

import cv2
import numpy as np
from sqlalchemy.orm import Session

from iadgpt_desktop.storage.errors import StorageError, translate
from iadgpt_desktop.storage.files import FileStore
from iadgpt_desktop.storage.records import DECISIONS, UNDECIDED, InspectionFilter, InspectionRow, utc_now
from iadgpt_desktop.storage.repository import iter_inspections, summarize_inspections

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "id", "created_at", "product", "source", "image_path", "image_sha256", "width", "height", "score",
    "score_top1", "p_yes", "verdict", "answer", "position", "defect_types", "mask_path", "model_id", "mode",
    "latency_ms", "operator_decision", "operator", "decided_at", "note",
)
THUMBNAIL_PX = 160


def format_defect_types(defect_types: list[tuple[str, float]]) -> str:
    return "; ".join(f"{name}:{prob:.4f}" for name, prob in defect_types)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula (= + - @, tab, CR first) gets a leading
    apostrophe, so it is shown as the text it is; numbers are written as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


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
                r.id, _iso(r.created_at), r.product_name or "", r.source, r.image_path, r.image_sha256, r.width,
                r.height, r.score, r.score_top1, r.p_yes, r.verdict, r.answer, r.position or "",
                format_defect_types(r.defect_types), r.mask_path or "", r.model_id, r.mode, r.latency_ms,
                r.operator_decision or "", r.operator or "", _iso(r.decided_at), r.note or "",
            )])
            rows += 1
    return rows


def export_html(s: Session, flt: InspectionFilter, path: Path, files: FileStore, max_rows: int = 5000) -> int:
    """Write a single-file HTML report (summary, then one row per inspection with image and mask
    thumbnails embedded); at most `max_rows` rows, oldest first. Returns the number of rows written."""
    summary = summarize_inspections(s, flt)
    rows = 0
    with _replacing(Path(path)) as f:
        f.write(_head(flt, summary, max_rows))
        for r in iter_inspections(s, flt, limit=max_rows):
            f.write(_html_row(r, files))
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
"""


def _head(flt: InspectionFilter, summary: dict[str, int], max_rows: int) -> str:
    total, defective = summary["total"], summary["defective"]
    rate = f"{defective / total:.1%}" if total else "–"
    cards = [("Inspections", str(total)), ("Defective", str(defective)), ("Good", str(summary["good"])),
             ("Defect rate", rate)]
    cards += [(d.replace("_", " ").capitalize(), str(summary[d])) for d in (*DECISIONS, UNDECIDED)]
    card_html = "".join(f'<div class="card">{html.escape(k)}<b>{html.escape(v)}</b></div>' for k, v in cards)
    shown = f"; showing the first {max_rows} (oldest first)" if total > max_rows else ""
    header = "".join(f"<th>{h}</th>" for h in ("#", "Time (UTC)", "Product", "Verdict", "Score", "Position",
                                                "Defect types", "Decision", "Answer", "Image", "Mask"))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>IAD-GPT inspection report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>IAD-GPT inspection report</h1>\n"
        f'<div class="meta">Generated {html.escape(_iso(utc_now()))} UTC. Filter: '
        f"{html.escape(_describe_filter(flt))}{html.escape(shown)}.</div>\n"
        f'<div class="summary">{card_html}</div>\n'
        f"<table>\n<thead><tr>{header}</tr></thead>\n<tbody>\n"
    )


def _html_row(r: InspectionRow, files: FileStore) -> str:
    decision = r.operator_decision.replace("_", " ") if r.operator_decision else "—"
    if r.operator:
        decision += f" ({r.operator})"
    cells = [
        str(r.id), _iso(r.created_at), r.product_name or "", r.verdict, f"{r.score:.3f}", r.position or "",
        format_defect_types(r.defect_types), decision,
    ]
    out = "<tr>" + "".join(
        f'<td class="{html.escape(r.verdict)}">{html.escape(c)}</td>' if i == 3 else f"<td>{html.escape(c)}</td>"
        for i, c in enumerate(cells)
    )
    answer = r.answer + (f"\nNote: {r.note}" if r.note else "")
    out += f'<td class="answer">{html.escape(answer)}</td>'
    out += f"<td>{_thumbnail(files, r.image_path, mask=False)}</td>"
    out += f"<td>{_thumbnail(files, r.mask_path, mask=True)}</td></tr>\n"
    return out


def _thumbnail(files: FileStore, relative: str | None, *, mask: bool) -> str:
    if not relative:
        return '<span class="missing">none</span>'
    try:
        data = np.frombuffer(files.read_bytes(relative), np.uint8)
    except (StorageError, ValueError, OSError):
        return f'<span class="missing">missing: {html.escape(relative)}</span>'
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if mask else cv2.IMREAD_COLOR)
    if image is None:
        return f'<span class="missing">unreadable: {html.escape(relative)}</span>'
    h, w = image.shape[:2]
    scale = THUMBNAIL_PX / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    if mask:
        ok, buf = cv2.imencode(".png", cv2.applyColorMap(image, cv2.COLORMAP_JET))
        mime = "image/png"
    else:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        mime = "image/jpeg"
    if not ok:
        return '<span class="missing">could not encode</span>'
    alt = "anomaly map" if mask else "inspected image"
    return f'<img alt="{alt}" src="data:{mime};base64,{base64.b64encode(buf.tobytes()).decode("ascii")}">'


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
    """A text file written beside `path` and renamed over it at the end, so a failed export never
    leaves a truncated file where a good one was."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise translate(exc, f"the export folder {path.parent}") or StorageError(
            f"could not write the export {path}: {exc}; choose another folder") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise translate(exc, f"the export file {path}") or StorageError(
            f"could not write the export {path}: {exc}; choose another folder") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
