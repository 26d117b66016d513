"""The Inspector end to end on the tiny-test preset: what a user of `inspect` and `chat` sees."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from iadgpt.errors import ConfigError, ImageLoadError, WeightsError
from iadgpt.inspector import Inspector
from iadgpt.memory_bank import MemoryBank
from iadgpt.weights import save_trainable
from tests.conftest import shared_dataset


@pytest.fixture(scope="module")
def inspector() -> Inspector:
    return Inspector("tiny-test", device="cpu", class_name="magnetic_tile")


def _texture(seed: int, size: tuple[int, int] = (256, 256)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur((rng.random(size) * 255).astype(np.uint8), (0, 0), 2)
    return np.dstack([noise] * 3)


def _stripes(size: tuple[int, int]) -> np.ndarray:
    yy, xx = np.indices(size)
    return np.dstack([((xx + yy) % 16 < 8).astype(np.uint8) * 255] * 3)


def _argmax(anomaly_map: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(int(anomaly_map.argmax()), anomaly_map.shape)
    return int(y), int(x)


@pytest.mark.parametrize("box", [(150, 200, 40, 90), (20, 70, 170, 230), (100, 150, 100, 150)])
def test_few_shot_map_peaks_inside_pasted_patch(inspector: Inspector, box) -> None:
    normal = _texture(0)
    y0, y1, x0, x1 = box
    patched = normal.copy()
    patched[y0:y1, x0:x1] = _stripes(normal.shape[:2])[y0:y1, x0:x1]
    inspector.build_memory_bank([normal])
    try:
        result = inspector.inspect(patched, generate_answer=False)
        clean = inspector.inspect(normal, generate_answer=False)
    finally:
        inspector.set_memory_bank(None)
    y, x = _argmax(result.anomaly_map)
    assert y0 <= y < y1 and x0 <= x < x1, f"peak at {(y, x)} outside the pasted region {box}"
    assert result.mode == "few-shot"
    assert result.score > 5 * clean.score + 0.05, "the patched image must score far above its clean twin"


def test_few_shot_on_real_images_finds_foreign_patch(inspector: Inspector) -> None:
    tiles = shared_dataset("magnetic_tile") / "train" / "good"
    screws = shared_dataset("bsdata") / "train" / "good"
    tile = cv2.cvtColor(cv2.imread(str(sorted(tiles.iterdir())[0])), cv2.COLOR_BGR2RGB)
    screw = cv2.cvtColor(cv2.imread(str(sorted(screws.iterdir())[0])), cv2.COLOR_BGR2RGB)
    h, w = tile.shape[:2]
    y0, x0, ph, pw = h // 2, w // 4, h // 4, w // 3
    patched = tile.copy()
    patched[y0:y0 + ph, x0:x0 + pw] = cv2.resize(screw, (pw, ph))
    inspector.build_memory_bank([tile])
    try:
        result = inspector.inspect(patched, generate_answer=False)
    finally:
        inspector.set_memory_bank(None)
    y, x = _argmax(result.anomaly_map)
    assert y0 <= y < y0 + ph and x0 <= x < x0 + pw
    assert result.anomaly_map.shape == (h, w)


def test_result_is_plain_data_at_image_resolution(inspector: Inspector) -> None:
    image = _texture(3, (170, 300))
    result = inspector.inspect(image)
    assert result.anomaly_map.shape == (170, 300) and result.anomaly_map.dtype == np.float32
    assert 0.0 <= result.anomaly_map.min() and result.anomaly_map.max() <= 1.0
    assert result.score == pytest.approx(float(result.anomaly_map.max()), abs=0.02)
    assert result.score_top1 <= result.score
    assert result.verdict in ("defective", "good") and (result.verdict == "defective") == (result.p_yes > 0.5)
    assert isinstance(result.answer, str)
    assert {"load", "encoder", "anomaly_map", "heads", "postprocess", "llm_verdict", "llm_answer"} <= set(
        result.timings_ms)
    assert result.latency_ms == pytest.approx(sum(result.timings_ms.values()))
    if result.verdict == "defective":
        assert result.defect_types and all(n in inspector.prompts.apg_names for n, _ in result.defect_types)
    else:
        assert result.position is None and result.defect_types == []


@pytest.mark.parametrize("make", [
    lambda: (np.random.default_rng(1).random((90, 120)) * 255).astype(np.uint8),  # grayscale
    lambda: (np.random.default_rng(2).random((90, 120, 4)) * 255).astype(np.uint8),  # RGBA
    lambda: (np.random.default_rng(3).random((90, 120)) * 65535).astype(np.uint16),  # 16-bit
])
def test_accepts_grayscale_rgba_and_16_bit(inspector: Inspector, make) -> None:
    result = inspector.inspect(make(), generate_answer=False)
    assert result.anomaly_map.shape == (90, 120)


def test_unreadable_file_names_the_file(inspector: Inspector, tmp_path) -> None:
    bad = tmp_path / "scan_0001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    with pytest.raises(ImageLoadError, match="scan_0001.png"):
        inspector.inspect(bad)


def test_trained_weights_round_trip_and_change_the_output(inspector: Inspector, tmp_path) -> None:
    image = _texture(5)
    before = inspector.inspect(image, generate_answer=False)
    state = inspector.model.trainable_state()
    # "Training": push the decoder projection of every layer, so the loaded weights are not the initial ones.
    state["decoder"] = {k: v * 3 if k.endswith("weight") else v for k, v in state["decoder"].items()}
    folder = save_trainable(tmp_path / "w", state, preset="tiny-test",
                            base_models=inspector.preset.base_model_ids())
    trained = Inspector("tiny-test", device="cpu", class_name="magnetic_tile", weights=folder)
    assert trained.mode == "zero-shot" and trained.model_id.startswith("tiny-test@")
    for name, tensor in trained.model.decoder.state_dict().items():
        assert torch.equal(tensor, state["decoder"][name])
    after = trained.inspect(image, generate_answer=False)
    assert not np.allclose(before.anomaly_map, after.anomaly_map)


def test_weights_for_another_preset_are_refused(inspector: Inspector, tmp_path) -> None:
    folder = save_trainable(tmp_path / "w", inspector.model.trainable_state(), preset="paper",
                            base_models={"clip": "x", "llm": "y"})
    with pytest.raises(WeightsError, match="paper"):
        Inspector("tiny-test", device="cpu", weights=folder)


def test_missing_pretrained_weights_say_how_to_get_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))
    with pytest.raises(WeightsError, match="iadgpt models download paper"):
        Inspector("paper", device="cpu")


def test_cuda_request_without_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        Inspector("tiny-test", device="cuda")


def test_memory_bank_saved_with_product_reloads_to_same_map(inspector: Inspector, tmp_path) -> None:
    normal, query = _texture(7), _texture(8)
    bank = inspector.build_memory_bank([normal])
    first = inspector.inspect(query, generate_answer=False).anomaly_map
    bank.save(tmp_path / "bank.safetensors")
    inspector.set_memory_bank(MemoryBank.load(tmp_path / "bank.safetensors",
                                              expect_meta=inspector.memory_bank_meta()))
    try:
        second = inspector.inspect(query, generate_answer=False).anomaly_map
    finally:
        inspector.set_memory_bank(None)
    np.testing.assert_allclose(first, second, atol=1e-5)


def test_product_switch_changes_defect_vocabulary(inspector: Inspector) -> None:
    inspector.set_product("pill")
    try:
        assert "crack" in " ".join(inspector.prompts.apg_names)
        assert inspector.prompts.apg.shape[0] == len(inspector.bank.attributes)
    finally:
        inspector.set_product("magnetic_tile")


def test_chat_streams_and_uses_history(inspector: Inspector) -> None:
    image = _texture(9)
    result = inspector.inspect(image)
    history = [{"role": "user", "content": "Is there any anomaly in the image?"},
               {"role": "assistant", "content": result.answer or "No."}]
    pieces = list(inspector.chat(image, history, "Where is it?", max_new_tokens=8))
    assert all(isinstance(p, str) for p in pieces)
    stopped = list(inspector.chat(image, history, "Where is it?", max_new_tokens=8, should_stop=lambda: True))
    assert stopped == []


def test_chat_reuses_the_inspected_image_embeddings(inspector: Inspector, monkeypatch) -> None:
    image = _texture(11)
    inspector.inspect(image, generate_answer=False)

    def no_second_encoding(*_a, **_k):
        raise AssertionError("chat about an inspected image must not run the encoder again")

    monkeypatch.setattr(inspector.model.towers, "encode_image", no_second_encoding)
    assert isinstance("".join(inspector.chat(image, [], "Where?", max_new_tokens=3)), str)


def test_chat_about_a_shown_map_reads_its_evidence_and_later_the_images_own(inspector: Inspector, monkeypatch) -> None:
    """Asked first about a stored map (not yet in the cache), then about the same image without one: each
    answer reads the evidence of the map it is about."""
    image = _texture(13)
    result = inspector.inspect(image, generate_answer=False)
    inspector._embed_cache.clear()  # as after a restart: the image was inspected in an earlier session
    read: list[str] = []
    original = inspector._conversation
    monkeypatch.setattr(inspector, "_conversation", lambda evidence: read.append(evidence) or original(evidence))
    shown = np.zeros_like(result.anomaly_map)
    shown[: shown.shape[0] // 4, : shown.shape[1] // 4] = 1.0  # a stored map lit at the top left only
    "".join(inspector.chat(image, [], "Where?", max_new_tokens=3, shown_map=shown))
    "".join(inspector.chat(image, [], "Where?", max_new_tokens=3))
    assert "strongest response at the top left" in read[0], read[0]
    assert read[1] == result.evidence.text()
