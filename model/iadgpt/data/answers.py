"""The answers the LLM is trained to give: "No, ..." for normal images, "Yes, ... at the <position>" otherwise.

Templates live in resources/answer_templates.json::

    {"normal": "No, there are no abnormalities in the image.",
     "abnormal": ["Yes, there is an anomaly in the image, at the {position} of the image.", ...]}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from iadgpt.errors import DatasetError
from iadgpt.position import grid_position, positions_phrase
from iadgpt.prompt_bank import default_bank_dir

logger = logging.getLogger(__name__)

TEMPLATES_FILE = "answer_templates.json"
PLACEHOLDER = "{position}"


@dataclass(frozen=True)
class AnswerTemplates:
    """The normal answer and the abnormal answer templates (each with one ``{position}``)."""

    normal: str
    abnormal: tuple[str, ...]


def default_templates_path() -> Path:
    """`$IADGPT_RESOURCES/answer_templates.json`, else the checkout's resources/answer_templates.json."""
    return default_bank_dir().parent / TEMPLATES_FILE


def load_answer_templates(path: Path | None = None) -> AnswerTemplates:
    """Read and check the answer templates; raises `DatasetError` naming the file and the fault."""
    path = Path(path) if path is not None else default_templates_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"answer templates {path} do not exist; reinstall the resources or set "
                           "IADGPT_RESOURCES to the folder holding answer_templates.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"answer templates {path} are not readable JSON ({exc}); fix or restore the file") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"answer templates {path} must be a JSON object with 'normal' and 'abnormal'; fix it")
    normal, abnormal = data.get("normal"), data.get("abnormal")
    if not isinstance(normal, str) or not normal.strip():
        raise DatasetError(f"answer templates {path} need a non-empty 'normal' string; add it")
    if not isinstance(abnormal, list) or not abnormal:
        raise DatasetError(f"answer templates {path} need a non-empty 'abnormal' list; add templates")
    for i, template in enumerate(abnormal):
        if not isinstance(template, str) or template.count(PLACEHOLDER) != 1:
            raise DatasetError(f"answer templates {path}: abnormal template {i} must be a string with exactly "
                               f"one {PLACEHOLDER}; fix it")
        try:
            template.format(position="center")
        except (KeyError, IndexError, ValueError) as exc:
            raise DatasetError(f"answer templates {path}: abnormal template {i} has a stray brace or "
                               f"placeholder ({exc}); only {PLACEHOLDER} is allowed") from exc
    return AnswerTemplates(normal=normal, abnormal=tuple(abnormal))


def mask_positions(mask: np.ndarray) -> list[str]:
    """The 3x3 grid position of each connected region of `mask`, largest region first."""
    binary = np.asarray(mask).astype(np.uint8)
    height, width = binary.shape
    count, _, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    order = sorted(range(1, count), key=lambda i: (-int(stats[i, cv2.CC_STAT_AREA]), i))
    return [grid_position(float(centroids[i][1]), float(centroids[i][0]), height, width) for i in order]


def answer_for_mask(mask: np.ndarray, templates: AnswerTemplates, rng: np.random.Generator) -> str:
    """The training answer for an image with this ground-truth mask.

    An empty mask gives the normal answer; otherwise a random abnormal template filled with the
    positions of the mask's regions ("bottom right", "top left and center", ...).
    """
    positions = mask_positions(mask)
    if not positions:
        return templates.normal
    template = templates.abnormal[int(rng.integers(len(templates.abnormal)))]
    return template.format(position=positions_phrase(positions))
