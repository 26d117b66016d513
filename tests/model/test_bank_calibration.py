"""Memory-bank calibration as the LLM sees it: the level is the upper end of normal variation, and
training never scores an image against a bank that holds it (training/banks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from iadgpt.errors import ConfigError
from iadgpt.inspector import bank_from_tokens, normal_level, upper_level
from iadgpt.memory_bank import MemoryBank
from iadgpt.training.banks import LeaveOutBanks
from iadgpt.training.trainer import TrainConfig, Trainer
from tests.model.test_training import _texture_dataset

DIMS = [8, 12]


def _image_tokens(seed: int, patches: int = 30, spread: float = 0.3) -> list[torch.Tensor]:
    """Patch tokens (1, N, C) per layer of a 'good part': a shared pattern plus its own variation."""
    base = torch.Generator().manual_seed(0)
    own = torch.Generator().manual_seed(100 + seed)
    return [torch.randn(1, patches, d, generator=base) + spread * torch.randn(1, patches, d, generator=own)
            for d in DIMS]


def _map_max(bank: MemoryBank, tokens: list[torch.Tensor]) -> float:
    return float(bank.anomaly_scores(tokens).mean(dim=1).max())


def test_a_new_good_part_at_the_edge_of_normal_reads_below_half() -> None:
    """With the level at the upper end of the references' spread, good parts that were never in the
    bank read below 0.5 - with the median most of them read above it and the LLM called them defective."""
    refs = [_image_tokens(i) for i in range(6)]
    bank = bank_from_tokens(DIMS, refs, {}, max_patches=10_000)
    new_goods = [_image_tokens(50 + i) for i in range(8)]
    below = sum(_map_max(bank, t) < 0.5 for t in new_goods)
    assert below >= 6, f"only {below} of 8 new good parts read below 0.5"
    defect = [t.clone() for t in new_goods[0]]
    for t in defect:
        t[0, :4] = -t[0, :4]  # four patches unlike any normal one
    assert _map_max(bank, defect) > 0.9  # a real change still reads as anomalous


def test_one_odd_reference_cannot_blind_the_bank() -> None:
    """A defective part added to the references by mistake raises the level at most to twice the
    median of the others, so a real defect still reads above 0.5."""
    assert upper_level([0.1, 0.12, 0.11, 0.9]) == pytest.approx(2 * 0.115)
    assert upper_level([0.1, 0.12, 0.11]) == pytest.approx(0.12)
    refs = [_image_tokens(i) for i in range(5)]
    odd = [t + 3.0 * torch.randn(t.shape, generator=torch.Generator().manual_seed(3)) for t in _image_tokens(99)]
    clean, polluted = normal_level(DIMS, refs), normal_level(DIMS, refs + [odd])
    assert clean is not None and polluted is not None
    assert polluted <= 2.0 * clean * 1.2


def test_training_scores_each_image_with_the_bank_that_does_not_hold_it() -> None:
    per_image = {i: _image_tokens(i) for i in range(8)}

    def bank_of(ids):
        return bank_from_tokens(DIMS, [per_image[i] for i in ids], {}, max_patches=10_000)

    banks = LeaveOutBanks.build(list(range(8)), shots=3, bank_of=bank_of, class_name="part")
    (first, held_first), (second, held_second) = banks.banks
    assert held_first == {0, 1, 2} and held_second == {3, 4, 5}
    batch = [1, 4, 7]  # in the first bank, in the second, in neither
    tokens = [torch.cat([per_image[i][layer] for i in batch]) for layer in range(len(DIMS))]
    maps = banks.for_items(batch).anomaly_scores(tokens)  # (3, L, N)
    own_bank = first.anomaly_scores(per_image[1]).mean(dim=1).max()
    assert float(own_bank) < 1e-3  # what the old training showed the LLM: a good part reading 0
    assert float(maps[0].mean(dim=0).max()) > 0.01  # image 1 is scored by the second bank
    assert torch.allclose(maps[0], second.anomaly_scores(per_image[1])[0], atol=1e-6)
    assert torch.allclose(maps[1], first.anomaly_scores(per_image[4])[0], atol=1e-6)
    assert torch.allclose(maps[2], first.anomaly_scores(per_image[7])[0], atol=1e-6)


def test_bank_maps_need_four_good_images_per_class(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 4 good images of class 'part'"):
        LeaveOutBanks.build([0, 1, 2], shots=8, bank_of=lambda ids: None, class_name="part")  # type: ignore[arg-type]
    data = _texture_dataset(tmp_path / "data", {"carpet": 6})
    cfg = TrainConfig(data=data, out_dir=tmp_path / "run", stage=3, batch_size=3, max_steps=1,
                      bank_maps=True, progress=False)
    trainer = Trainer(cfg)
    banks = trainer.class_banks["carpet"]
    held = [set(ids) for _, ids in banks.banks]
    assert not held[0] & held[1] and all(len(h) == 3 for h in held)
    batch = trainer.batch(sorted(held[0]))
    assert torch.isfinite(trainer.forward(batch, source="bank")["loss"])


# --------------------------------------------------------------------------------------------
# Other products' normal variation: textures shown as memory-bank maps only (--bank-only)


def test_texture_dataset_is_non_overlapping_good_tiles(tmp_path: Path) -> None:
    from iadgpt.data import mvtec_samples
    from iadgpt.data.textures import TEXTURES, write_texture_dataset

    counts = write_texture_dataset(tmp_path / "tex", crop=128)
    classes = {n for name in TEXTURES for n in (name, f"{name}_r90")}
    assert counts == {name: 16 for name in classes}  # 512 x 512 cut into 4 x 4, as it is and turned
    samples = mvtec_samples(tmp_path / "tex", "train")
    assert {s.class_name for s in samples} == classes and all(s.label == 0 for s in samples)
    import cv2

    tiles = [cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE) for s in samples if s.class_name == "brick"]
    assert all(t.shape == (128, 128) for t in tiles)
    assert len({t.tobytes() for t in tiles}) == 16  # no tile repeats another



def test_a_closer_texture_is_its_own_class_with_the_tiles_scaled_up(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from iadgpt.data.textures import texture_file, write_texture_dataset

    counts = write_texture_dataset(tmp_path / "tex", crop=128, zooms=(1, 2))
    assert counts["brick_x2"] == counts["brick_x2_r90"] == counts["brick"] == 16
    near = cv2.imread(str(tmp_path / "tex" / "brick_x2" / "train" / "good" / "005.png"), cv2.IMREAD_GRAYSCALE)
    photo = cv2.imread(str(texture_file("brick")), cv2.IMREAD_GRAYSCALE)
    corner = photo[128:192, 128:192]  # tile 5 is row 1, column 1: its corner's 64 x 64 pixels, twice as large
    assert near.shape == (128, 128)
    assert np.abs(cv2.resize(near, (64, 64), interpolation=cv2.INTER_AREA).astype(int) - corner).mean() < 8
    with pytest.raises(ValueError, match="zoom 3 must be a whole number"):
        write_texture_dataset(tmp_path / "bad", crop=128, zooms=(3,))

def test_missing_texture_wheel_names_the_package(monkeypatch) -> None:
    import importlib.util

    from iadgpt.data import textures
    from iadgpt.errors import DatasetError

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError, match=r"pip install scikit-image==0\.25\.2"):
        textures.texture_file("brick")


def test_bank_only_classes_always_read_bank_maps_and_are_not_products(tmp_path: Path) -> None:
    data = _texture_dataset(tmp_path / "data", {"carpet": 4})
    extra = _texture_dataset(tmp_path / "extra", {"wood": 4})
    with pytest.raises(ConfigError, match="needs --bank-maps"):
        TrainConfig(data=data, out_dir=tmp_path / "r0", stage=3, bank_only=extra).check()
    with pytest.raises(ConfigError, match="stage 1 or 3"):
        TrainConfig(data=data, out_dir=tmp_path / "r0", stage=2, bank_maps=True, bank_only=extra).check()
    cfg = TrainConfig(data=data / "carpet", product="carpet", out_dir=tmp_path / "run", stage=3, batch_size=2,
                      max_steps=1, bank_maps=True, bank_only=extra, progress=False)
    trainer = Trainer(cfg)
    assert trainer.bank_only == {"wood"} and set(trainer.class_banks) == {"carpet", "wood"}
    assert "wood" not in trainer.products.values() and "wood" not in trainer.products
    wood = [i for i in trainer.dataset.by_class["wood"]][:2]
    batch = trainer.batch(wood)
    seen = {}
    original = trainer.step_module.forward

    def spy(*args):
        seen["bank"], seen["use_decoder"] = args[7], args[8]
        return original(*args)

    trainer.step_module.forward = spy
    trainer.forward(batch, source="decoder")  # a decoder step: the bank-only class still reads its bank
    assert seen["bank"] is not None and seen["use_decoder"] is False


def test_one_command_trains_every_stage_with_bank_only_classes_left_out_of_stages_0_and_2(tmp_path: Path) -> None:
    """`iadgpt train --stage all --bank-only DIR --stage-epochs 2=2`: the decoder (stage 2) and stage 0
    never see the bank-only textures; stages 1 and 3 read them through memory-bank maps."""
    data = _texture_dataset(tmp_path / "data", {"carpet": 4})
    extra = _texture_dataset(tmp_path / "extra", {"wood": 4})
    cfg = TrainConfig(data=data, out_dir=tmp_path / "run", stage="all", batch_size=2, bank_maps=True,
                      bank_only=extra, epochs_by_stage={2: 2}, progress=False)
    cfg.check()
    trainer = Trainer(cfg)
    seen: list[tuple[int, str]] = []
    original = trainer._step

    def spy(module, batch, optimizer, scheduler, params, stage, step):
        seen.append((stage, batch["class_name"][0] if batch is not None else "text"))
        return original(module, batch, optimizer, scheduler, params, stage, step)

    trainer._step = spy
    trainer.run()
    by_stage = {s: [c for t, c in seen if t == s] for s in (0, 1, 2, 3)}
    assert set(by_stage[0]) <= {"carpet", "text"} and len(by_stage[0]) == 2  # 4 carpet images, batches of 2
    assert set(by_stage[2]) == {"carpet"} and len(by_stage[2]) == 2 * 2  # 2 epochs (--stage-epochs 2=2)
    assert set(by_stage[1]) == set(by_stage[3]) == {"carpet", "wood"} and len(by_stage[3]) == 4


def test_stage_epochs_are_checked() -> None:
    with pytest.raises(ConfigError, match="stage epochs 5=3"):
        TrainConfig(epochs_by_stage={5: 3}).check()
    with pytest.raises(ConfigError, match="stage epochs 2=0"):
        TrainConfig(epochs_by_stage={2: 0}).check()
