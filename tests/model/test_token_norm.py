"""Image tokens on the LLM's text scale (HeadsConfig.token_norm, docs/decisions/0009)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from iadgpt.builder import build_model
from iadgpt.config import load_preset
from iadgpt.model import llm_token_norm
from iadgpt.preprocess import preprocess
from iadgpt.prompt_bank import load_bank
from iadgpt.prompts import build_text_prompts


def _tokens(token_norm: bool) -> tuple[torch.Tensor, float]:
    preset = load_preset("tiny-test")
    preset = dataclasses.replace(preset, heads=dataclasses.replace(preset.heads, token_norm=token_norm))
    torch.manual_seed(0)
    model, llm = build_model(preset)
    rgb = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    with torch.no_grad():
        features = model.towers.encode_image(preprocess(rgb, preset.image_input))
        prompts = build_text_prompts(model.towers, load_bank("generic"))
        maps = model.layer_maps(features, prompts)
        return model.image_embeddings(features, prompts, maps)[0], llm_token_norm(llm.model)


def test_with_token_norm_every_image_token_has_the_llms_token_norm():
    tokens, norm = _tokens(True)
    assert norm > 0
    assert torch.allclose(tokens.norm(dim=-1), torch.full((tokens.shape[0],), norm), rtol=1e-4)


def test_without_it_the_heads_outputs_are_passed_as_they_are():
    raw, norm = _tokens(False)
    scaled, _ = _tokens(True)
    assert not torch.allclose(raw.norm(dim=-1), torch.full((raw.shape[0],), norm), rtol=1e-2)
    # the same directions: only the length of each token changes
    cos = torch.nn.functional.cosine_similarity(raw, scaled, dim=-1)
    assert torch.all(cos > 0.9999)


def test_the_builtin_preset_reads_its_image_on_the_text_scale():
    assert load_preset("unified-lite0").heads.token_norm
