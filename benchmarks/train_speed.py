"""Training speed of the two paths decision 0015 changed, each against the path before it, in one run.

- answer loss: one stage-0 step of the built-in LLM (forward and backward) on a corpus batch of
  --text-batch-size conversations with every answer labelled (`--lm-loss turns`), the image slots
  spliced in: `losses.lm_loss` (the output layer on labelled positions only) against the LLM's own
  loss on its full logits (the path before);
- image tower: the frozen EfficientNet on a batch of --batch-size images of bsdata's shape
  (192 x 512 after preprocessing), channels-last against the contiguous layout (the path before).

The columns are interleaved, so a slower spell of the machine slows each alike; median of --runs ms.

    .venv/bin/python benchmarks/train_speed.py [--runs 15] [--text-batch-size 16] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import iadgpt  # noqa: E402, F401, I001  (before torch: its OpenMP wait policy, decision 0011)
import torch  # noqa: E402

from iadgpt.builder import build_model  # noqa: E402
from iadgpt.config import load_preset  # noqa: E402
from iadgpt.data import load_answer_templates  # noqa: E402
from iadgpt.llm import embed_with_image  # noqa: E402
from iadgpt.prompt_bank import load_bank  # noqa: E402
from iadgpt.training.conversation import build_training_batch  # noqa: E402
from iadgpt.training.corpus import conversation_batch  # noqa: E402
from iadgpt.training.losses import lm_loss  # noqa: E402

PRESET = "unified-lite0"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--text-batch-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    preset = load_preset(PRESET)
    model, llm = build_model(preset, "cpu", torch.float32)
    llm.model.requires_grad_(True)  # stage 0 trains the LLM
    banks = {"ball_screw_drive": load_bank("ball_screw_drive")}
    templates = load_answer_templates()
    slots = 1 + preset.heads.fusion_grid ** 2 + preset.heads.base_prompts  # PretextHeads.slots
    batches = []
    for step in range(args.runs):
        talks = conversation_batch(0, step, args.text_batch_size, banks, templates, preset.llm.system_prompt, 0.5)
        batches.append(build_training_batch(llm, [t.messages for t in talks], [t.answer for t in talks],
                                            history=True))
    gen = torch.Generator().manual_seed(0)

    def step(batch, own: bool) -> None:
        ids, mask, labels = batch
        image = torch.randn(ids.shape[0], slots, llm.hidden_size, generator=gen) * 0.02
        embeds, attn, spliced = embed_with_image(llm.model, ids, image, llm.image_token_id,
                                                 llm.tokenizer.pad_token_id, mask, labels)
        loss = (llm.model(inputs_embeds=embeds, attention_mask=attn, labels=spliced).loss if own
                else lm_loss(llm.model, embeds, attn, spliced))
        loss.backward()
        llm.model.zero_grad(set_to_none=True)

    tower = model.towers
    images = torch.rand(args.batch_size, 3, 192, 512, generator=gen) * 2 - 1
    for batch in batches[:2]:  # warm-up
        step(batch, True)
        step(batch, False)
        tower.encode_image(images)
    times: dict[str, list[float]] = {k: [] for k in ("loss_before", "loss_now", "tower_before", "tower_now")}
    for batch in batches:
        times["loss_before"].append(_timed(lambda b=batch: step(b, True)))
        times["loss_now"].append(_timed(lambda b=batch: step(b, False)))
        tower.use_memory_format(torch.contiguous_format)
        times["tower_before"].append(_timed(lambda: tower.encode_image(images)))
        tower.use_memory_format(torch.channels_last)
        times["tower_now"].append(_timed(lambda: tower.encode_image(images)))
    med = {k: statistics.median(v) for k, v in times.items()}
    real = sum(int(b[1].sum()) for b in batches) / sum(b[1].numel() for b in batches)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {PRESET}, median of {args.runs} "
          f"interleaved runs (ms); stage-0 batches of {args.text_batch_size} conversations, "
          f"{100 * real:.0f} % of their positions real tokens\n")
    print("| part | before | now | speed-up |\n| --- | ---: | ---: | ---: |")
    print(f"| stage-0 step: answer loss, forward + backward | {med['loss_before']:.1f} | {med['loss_now']:.1f} | "
          f"**{med['loss_before'] / med['loss_now']:.2f}x** |")
    print(f"| image tower, {args.batch_size} images 192 x 512 | {med['tower_before']:.1f} | {med['tower_now']:.1f} | "
          f"**{med['tower_before'] / med['tower_now']:.2f}x** |")
    print("\nbefore: the LLM's own loss on full logits / the tower in the contiguous layout; now: losses.lm_loss "
          "(the output layer on labelled positions only) / channels-last (decision 0015).")


if __name__ == "__main__":
    main()
