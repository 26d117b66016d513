"""Segmentation losses on the decoder's anomaly probabilities (stage 2), and the LLM's answer loss.

focal and dice take probabilities in [0, 1] (not logits): the decoder already ends in a softmax (Eq. 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from iadgpt.llm import IGNORE_INDEX

_CLAMP = 1e-6  # keeps log() finite where the decoder is (numerically) certain


def _flat(pred_prob: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, H, W) or (B, H, W) prediction and target -> (B, H*W) float32 pairs."""
    if pred_prob.dim() == 4:
        assert pred_prob.shape[1] == 1, f"focal/dice expect one channel, got {tuple(pred_prob.shape)}"
        pred_prob = pred_prob[:, 0]
    if target.dim() == 4:
        target = target[:, 0]
    assert pred_prob.shape == target.shape, \
        f"prediction {tuple(pred_prob.shape)} and target {tuple(target.shape)} differ"
    return pred_prob.float().flatten(1), target.float().flatten(1)


def focal_loss(pred_prob: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: float | None = None) -> torch.Tensor:
    """Mean binary focal loss  -alpha_t (1 - p_t)^gamma log(p_t)  over all pixels.

    p_t = p where the target is 1, 1 - p elsewhere. alpha (weight of the positive class; 1 - alpha for
    the negative one) is off by default: synthetic anomalies cover few pixels, and RetinaNet's 0.25
    would weigh them down further; the dice term already balances the classes.
    """
    p, y = _flat(pred_prob, target)
    p = p.clamp(_CLAMP, 1.0 - _CLAMP)
    p_t = torch.where(y > 0.5, p, 1.0 - p)
    loss = -((1.0 - p_t) ** gamma) * torch.log(p_t)
    if alpha is not None:
        loss = loss * torch.where(y > 0.5, torch.full_like(p, alpha), torch.full_like(p, 1.0 - alpha))
    return loss.mean()


def dice_loss(pred_prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss over the whole batch: 1 - (2 sum(p y) + eps) / (sum p + sum y + eps).

    Pooled over the batch, not per image: half of a training batch is normal images with an empty
    target, and a per-image dice gives each of them 1 - eps / (sum p + eps), which stays near 1 (and
    its gradient near 0) until the map is ~0 on every one of its pixels, so those images taught
    nothing and held the loss flat. Pooled, a normal image's pixels count as false positives against
    the batch's anomalies, which is the signal wanted; an all-normal batch still reads 0 when p -> 0.
    """
    p, y = _flat(pred_prob, target)
    intersection = (p * y).sum()
    dice = (2.0 * intersection + eps) / (p.sum() + y.sum() + eps)
    return 1.0 - dice


def lm_loss(llm_model: torch.nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
            labels: torch.Tensor, token_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Causal LM cross-entropy on the labelled tokens (IGNORE_INDEX elsewhere), their mean.

    With `token_weights` ((B, V): per row, the weight of each token id; Trainer builds them for
    --copy-weight from conversation.copy_vocabulary) a weighted mean: the few tokens an answer copies
    from the evidence line (the decimal of "1.2 %", a rare type name) are a tiny share of a plain
    mean, and the small LLM wrote them from its prior ("1.7 %" for every small region). None: the
    plain mean, as the LLM's own loss computes it.

    Where the model's logits are its output layer on the last hidden state (`_output_head`), the
    layer runs on the labelled positions only (a sixth of a training batch's): the same loss, and
    stage 0's steps no longer spend a fifth of their time on logits nobody reads."""
    target = labels[:, 1:]  # (B, T-1): token t+1 is predicted at t
    labelled = target != IGNORE_INDEX
    head = _output_head(llm_model)
    if head is None:
        if token_weights is None:
            return llm_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels).loss
        logits = llm_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits  # (B, T, V)
        picked = logits[:, :-1][labelled]  # (N, V), N labelled positions
    else:
        body, output = head
        hidden = body(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                      use_cache=False).last_hidden_state  # (B, T, H)
        picked = output(hidden[:, :-1][labelled])  # (N, V)
    ce = F.cross_entropy(picked.float(), target[labelled], reduction="none")  # (N,)
    if token_weights is None:
        return ce.mean()
    weight = token_weights.to(target.device).gather(1, target.clamp(min=0))[labelled]  # (N,)
    return (ce * weight).sum() / weight.sum().clamp(min=1e-8)


def _output_head(llm_model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(the transformer body, the output layer) of a causal LM whose logits are exactly
    output(body(...).last_hidden_state): the Llama, Mistral, Qwen2 and Qwen3 families, the built-in
    LLM's included. None for any other (logit scaling or soft-capping, another layout): the full forward."""
    config = getattr(llm_model, "config", None)
    if config is None or getattr(config, "model_type", None) not in _PLAIN_HEAD_TYPES:
        return None
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    body, output = getattr(llm_model, "model", None), llm_model.get_output_embeddings()
    if not isinstance(body, torch.nn.Module) or not isinstance(output, torch.nn.Linear):
        return None
    return body, output


# Causal LMs whose forward returns lm_head(model(...).last_hidden_state) unscaled (as transformers
# 5.24's modeling files read).
_PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
