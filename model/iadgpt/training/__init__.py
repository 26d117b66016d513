"""Self-supervised training of the IAD-GPT heads (decoder, TGE, MMF) on normal images.

`train(TrainConfig(...))` runs the paper's three stages with `accelerate`; see trainer.py.
"""

from iadgpt.llm import inspection_messages
from iadgpt.training.conversation import build_training_batch
from iadgpt.training.losses import dice_loss, focal_loss

__all__ = ["build_training_batch", "dice_loss", "focal_loss", "inspection_messages"]
