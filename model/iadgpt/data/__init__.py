"""Training and evaluation data: dataset listings, anomaly synthesis, and the answers the LLM learns."""

from iadgpt.data.answers import AnswerTemplates, answer_for_mask, load_answer_templates
from iadgpt.data.datasets import Sample, folder_samples, load_sample, mvtec_samples, visa_samples
from iadgpt.data.synthesis import cutpaste, draw, foreground_mask, nsa, synthesize

__all__ = [
    "AnswerTemplates",
    "Sample",
    "answer_for_mask",
    "cutpaste",
    "draw",
    "folder_samples",
    "foreground_mask",
    "load_answer_templates",
    "load_sample",
    "mvtec_samples",
    "nsa",
    "synthesize",
    "visa_samples",
]
