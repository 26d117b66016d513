"""Text prompts: the WinCLIP-style compositional ensemble (T_win) and the APG sentences (T_apg)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from iadgpt.encoders import ClipTowers
from iadgpt.prompt_bank import PromptBank

# State words: how a normal and an abnormal item of a class are named ({} = the class in words).
NORMAL_STATES = (
    "{}", "flawless {}", "perfect {}", "unblemished {}", "intact {}",
    "{} without flaw", "{} without defect", "{} without damage",
)
ABNORMAL_STATES = (
    "damaged {}", "broken {}", "defective {}", "{} with flaw", "{} with defect", "{} with damage",
)
# Templates: how an inspection photo is described ({} = a state phrase).
TEMPLATES = (
    "a photo of a {}.", "a close-up photo of a {}.", "a cropped photo of the {}.",
    "a bright photo of a {}.", "a dark photo of the {}.", "a blurry photo of a {}.",
    "a low resolution photo of the {}.", "a photo of a small {}.", "a photo of a large {}.",
    "a jpeg corrupted photo of a {}.", "an industrial photo of a {}.", "a photo of the {} for inspection.",
    "a photo of a {} on a production line.", "there is a {} in the scene.", "this is a {} in the image.",
)


def class_words(class_name: str) -> str:
    """'metal_nut' -> 'metal nut': the class as the text encoder should read it."""
    return class_name.replace("_", " ").strip()


def compositional_prompts(class_name: str) -> tuple[list[str], list[str]]:
    """All normal and abnormal sentences of the ensemble for a class."""
    words = class_words(class_name)
    normal = [t.format(s.format(words)) for s in NORMAL_STATES for t in TEMPLATES]
    abnormal = [t.format(s.format(words)) for s in ABNORMAL_STATES for t in TEMPLATES]
    return normal, abnormal


@dataclass
class TextPrompts:
    """Embedded prompts of one class, in the joint image-text space."""

    class_name: str
    win: torch.Tensor  # T_win (2, C): row 0 normal, row 1 abnormal, L2-normalised
    apg: torch.Tensor  # T_apg (K, C): one abnormal sentence per defect kind, L2-normalised
    apg_names: list[str]

    @property
    def decoder_classes(self) -> torch.Tensor:
        """F_text for the decoder (1 + 1 + K, C): class 0 is normal, every other class abnormal."""
        return torch.cat([self.win, self.apg], dim=0)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TextPrompts:
        return TextPrompts(self.class_name, self.win.to(device, dtype), self.apg.to(device, dtype),
                           self.apg_names)


def _ensemble(towers: ClipTowers, sentences: list[str]) -> torch.Tensor:
    embeddings = towers.encode_text(sentences, normalize=True)  # (S, C)
    return F.normalize(embeddings.mean(dim=0), dim=-1)  # (C,)


def build_text_prompts(towers: ClipTowers, bank: PromptBank) -> TextPrompts:
    """Embed T_win (averaged, normalised ensembles) and T_apg (one embedding per sentence)."""
    normal, abnormal = compositional_prompts(bank.class_name)
    win = torch.stack([_ensemble(towers, normal), _ensemble(towers, abnormal)])  # (2, C)
    apg = towers.encode_text(bank.sentences, normalize=True)  # (K, C)
    return TextPrompts(bank.class_name, win, apg, bank.names)


def defect_type_probabilities(global_embedding: torch.Tensor, prompts: TextPrompts,
                              logit_scale: float = 100.0) -> torch.Tensor:
    """Fig. 8: how likely each APG defect kind is, from F_img against the T_apg embeddings.

    global_embedding (B, C) -> probabilities (B, K) over the bank's defect kinds.
    """
    image = F.normalize(global_embedding.float(), dim=-1)  # (B, C)
    logits = logit_scale * image @ prompts.apg.float().T  # (B, K)
    return logits.softmax(dim=-1)
