"""Results made by hand, for view tests that need no model."""

from __future__ import annotations

import numpy as np

from iadgpt.inspector import InspectionResult
from iadgpt_desktop.workers.inference import InspectionOutcome


def make_outcome(inspection_id: int | None, verdict: str = "defective", file_name: str = "part.png",
                 answer: str = "Yes, there is a defect at the top left.", seed: int = 0) -> InspectionOutcome:
    rng = np.random.default_rng(seed)
    image = (rng.random((60, 80, 3)) * 200).astype(np.uint8)
    amap = np.zeros((60, 80), np.float32)
    amap[5:20, 5:25] = 0.9
    result = InspectionResult(
        image=f"/line/{file_name}", image_size=(60, 80), class_name="screw", score=0.9, score_top1=0.8,
        verdict=verdict, p_yes=0.9 if verdict == "defective" else 0.1, answer=answer,
        position="top left" if verdict == "defective" else None, regions=[],
        defect_types=[("pitting", 0.99)] if verdict == "defective" else [], anomaly_map=amap,
        mode="few-shot", model_id="tiny-test@untrained", timings_ms={"encoder": 12.0})
    return InspectionOutcome(result, image, "folder:/line", 0, inspection_id, 1, file_name=file_name,
                             image_path=f"/data/images/{file_name}")
