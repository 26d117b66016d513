"""Tests of the few-shot memory bank (paper Eq. 2)."""

from __future__ import annotations

import errno
import os
import stat

import pytest
import torch
import torch.nn.functional as F

import iadgpt.memory_bank
from iadgpt.errors import MemoryBankError
from iadgpt.memory_bank import MemoryBank, greedy_coreset

DIMS = (16, 8)


def _tokens(batch: int, patches: int, seed: int, dims=DIMS) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, patches, d, generator=gen) for d in dims]


def _bank(*token_sets, meta=None) -> MemoryBank:
    bank = MemoryBank(DIMS, meta)
    for tokens in token_sets:
        bank.add(tokens)
    return bank


def _reference_scores(bank_layers, query) -> torch.Tensor:
    """Unchunked Eq. 2 straight from the definition: (B, L, N)."""
    maps = []
    for stored, tokens in zip(bank_layers, query, strict=True):
        q = F.normalize(tokens.float(), dim=-1)  # (B, N, C)
        b = F.normalize(stored.reshape(-1, stored.shape[-1]).float(), dim=-1)  # (M, C)
        maps.append(1 - (q @ b.T).amax(dim=-1))  # (B, N)
    return torch.stack(maps, dim=1)  # (B, L, N)


def test_empty_bank_raises_and_len_counts_patches():
    bank = MemoryBank(DIMS, {"preset": "tiny-test"})
    assert len(bank) == 0 and bank.num_layers == 2 and bank.layer_dims == DIMS
    assert bank.meta == {"preset": "tiny-test"}
    with pytest.raises(MemoryBankError, match="empty; build it from reference images of good parts"):
        bank.score(_tokens(1, 4, 0))
    bank.add(_tokens(3, 5, 0))
    assert len(bank) == 15
    bank.add(_tokens(1, 5, 1))
    assert len(bank) == 20


def test_identical_query_scores_zero():
    ref = _tokens(2, 12, 0)
    bank = _bank(ref)
    maps = bank.score([t[1:2] for t in ref])
    assert maps.shape == (1, 2, 12)
    assert maps.dtype == torch.float32
    assert maps.abs().max() < 1e-5


def test_replaced_patches_score_highest():
    ref = _tokens(4, 30, 0)
    bank = _bank(ref)
    query = [t[2:3].clone() for t in ref]
    odd = [3, 17, 25]
    gen = torch.Generator().manual_seed(5)
    for t in query:
        t[0, odd] = torch.randn(len(odd), t.shape[-1], generator=gen)
    maps = bank.score(query)  # (1, L, N)
    for layer in range(2):
        layer_map = maps[0, layer]
        top = set(torch.topk(layer_map, len(odd)).indices.tolist())
        assert top == set(odd)
        normal = [i for i in range(30) if i not in odd]
        assert layer_map[normal].max() < 1e-5
        assert layer_map[odd].min() > 0.1


def test_score_is_cosine_and_scale_invariant():
    ref = _tokens(2, 10, 0)
    bank = _bank(ref)
    query = _tokens(1, 10, 9)
    scaled = [t * torch.linspace(0.1, 50.0, 10).reshape(1, 10, 1) for t in query]
    torch.testing.assert_close(bank.score(query), bank.score(scaled), atol=1e-5, rtol=0)
    # scaling the stored tokens does not matter either
    bank_scaled = _bank([t * 7.5 for t in ref])
    torch.testing.assert_close(bank.score(query), bank_scaled.score(query), atol=1e-5, rtol=0)
    torch.testing.assert_close(bank.score(query), _reference_scores(ref, query), atol=1e-5, rtol=0)


def test_chunked_score_equals_unchunked(monkeypatch):
    ref = _tokens(3, 40, 0)
    bank = _bank(ref)
    query = _tokens(2, 40, 1)
    full = bank.score(query, chunk_size=10**6)
    torch.testing.assert_close(full, _reference_scores(ref, query), atol=1e-5, rtol=0)
    # Chunking changes the order of float32 sums (a few ulp apart), never the result beyond that.
    torch.testing.assert_close(bank.score(query, chunk_size=7), full, atol=1e-6, rtol=0)
    # also split the bank side into small column blocks
    monkeypatch.setattr("iadgpt.memory_bank._MAX_SIM_ELEMENTS", 50)
    torch.testing.assert_close(bank.score(query, chunk_size=7), full, atol=1e-6, rtol=0)


def test_add_stores_normalised_cpu_float32_copies():
    ref = [t.double() * 3 for t in _tokens(1, 6, 0)]
    bank = _bank(ref)
    for stored in bank._stacked():
        assert stored.dtype == torch.float32 and stored.device.type == "cpu"
        torch.testing.assert_close(stored.norm(dim=-1), torch.ones(6))
    ref[0].zero_()  # the bank holds a copy
    assert bank._stacked()[0].norm(dim=-1).min() > 0.99


def test_dimension_and_layer_mismatch_raise():
    bank = _bank(_tokens(1, 4, 0))
    with pytest.raises(MemoryBankError, match="12 channels.*built for 16"):
        bank.add([torch.randn(1, 4, 12), torch.randn(1, 4, 8)])
    with pytest.raises(MemoryBankError, match="1 layers"):
        bank.score([torch.randn(1, 4, 16)])
    with pytest.raises(MemoryBankError, match=r"\(B, N, C\)"):
        bank.score([torch.randn(4, 16), torch.randn(4, 8)])
    with pytest.raises(MemoryBankError, match="disagree"):
        bank.score([torch.randn(1, 4, 16), torch.randn(1, 5, 8)])
    assert len(bank) == 4  # failed calls did not change the bank


def test_non_finite_reference_tokens_raise():
    bank = MemoryBank(DIMS)
    tokens = _tokens(1, 4, 0)
    tokens[1][0, 2, 0] = float("nan")
    with pytest.raises(MemoryBankError, match="NaN"):
        bank.add(tokens)
    assert len(bank) == 0


def _clusters(per_cluster: int, seed: int = 0) -> list[torch.Tensor]:
    """Three tight, well-separated clusters of patch tokens, as (1, 3*per_cluster, C) per layer."""
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for dim in DIMS:
        centres = torch.eye(dim)[:3] * 10  # (3, C), orthogonal directions
        noise = 0.05 * torch.randn(3, per_cluster, dim, generator=gen)  # (3, P, C)
        layers.append((centres[:, None, :] + noise).reshape(1, 3 * per_cluster, dim))  # (1, 3P, C)
    return layers


def test_coreset_picks_one_point_per_cluster_and_is_deterministic():
    tokens = _clusters(50)
    bank = _bank(tokens)
    keep = bank.subsample(3, seed=4)
    assert len(bank) == 3
    assert sorted((keep // 50).tolist()) == [0, 1, 2]  # one per cluster
    again = _bank(tokens)
    torch.testing.assert_close(again.subsample(3, seed=4), keep, atol=0, rtol=0)
    # the same rows are kept in every layer: a stored patch stays one location
    for layer, stored in enumerate(bank._stacked()):
        torch.testing.assert_close(stored, F.normalize(tokens[layer][0, keep], dim=-1))


def test_coreset_keeps_farthest_points_in_projection():
    # 1-D points: start anywhere, the greedy k-center must take both extremes quickly
    points = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0], [-10.0]])
    keep = greedy_coreset([points], 3, seed=0)
    assert {4, 5} <= set(keep.tolist())


def test_coreset_on_wide_features_uses_projection_and_is_seeded():
    feats = [F.normalize(torch.randn(500, 256), dim=-1), F.normalize(torch.randn(500, 96), dim=-1)]
    a = greedy_coreset(feats, 40, seed=1)
    b = greedy_coreset(feats, 40, seed=1)
    c = greedy_coreset(feats, 40, seed=2)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert len(set(a.tolist())) == 40 and a.tolist() == sorted(a.tolist())


def test_coreset_stops_on_duplicates():
    points = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    keep = greedy_coreset([points], 6, seed=0)
    assert len(keep) == 2 and sorted((keep // 5).tolist()) == [0, 1]


def test_subsample_scores_stay_close():
    ref = _tokens(8, 100, 0)
    bank = _bank(ref)
    before = bank.score(ref)
    keep = bank.subsample(300, seed=0)
    after = bank.score(ref)
    assert before.abs().max() < 1e-5
    flat = after.reshape(8, 2, 100).permute(1, 0, 2).reshape(2, 800)  # (L, B*N)
    assert flat[:, keep].abs().max() < 1e-5  # kept points still score ~0
    assert (after >= before - 1e-6).all()  # a subset can only be farther
    # no-op when already small enough
    assert bank.subsample(1000).tolist() == list(range(300)) and len(bank) == 300


def test_subsample_of_a_large_bank_keeps_the_requested_patches_and_covers_the_rest():
    """20k -> 2k coreset: exactly 2000 distinct patches are kept, and every dropped patch lies closer
    to the kept ones than the patches of an unrelated image do. (Its speed is in benchmarks/memory_bank.py.)"""
    gen = torch.Generator().manual_seed(0)
    layers = [torch.randn(20, 1000, 64, generator=gen), torch.randn(20, 1000, 48, generator=gen)]
    bank = MemoryBank((64, 48))
    bank.add(layers)
    keep = bank.subsample(2000, seed=0)
    assert len(bank) == 2000 and len(set(keep.tolist())) == 2000
    dropped = bank.score([t[:1] for t in layers])  # (1, L, 1000): a reference image, mostly dropped
    stranger = bank.score([torch.randn(1, 1000, d, generator=gen) * 3 for d in (64, 48)])
    assert float(dropped.mean()) <= float(stranger.mean())


def test_save_load_roundtrip(tmp_path):
    ref = _tokens(2, 20, 0)
    bank = _bank(ref, meta={"preset": "tiny-test", "model": "org/clip"})
    path = bank.save(tmp_path / "banks" / "leather.safetensors")
    assert path.is_file() and not list(path.parent.glob(".*tmp*"))
    loaded = MemoryBank.load(path, expect_meta={"preset": "tiny-test"})
    assert loaded.meta == {"preset": "tiny-test", "model": "org/clip"}
    assert loaded.layer_dims == DIMS and len(loaded) == 40
    query = _tokens(3, 20, 1)
    torch.testing.assert_close(loaded.score(query), bank.score(query), atol=1e-6, rtol=0)


def test_load_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(MemoryBankError, match="nope.safetensors does not exist.*rebuild"):
        MemoryBank.load(path)


def test_load_truncated_file_raises(tmp_path):
    path = _bank(_tokens(2, 20, 0)).save(tmp_path / "bank.safetensors")
    data = path.read_bytes()
    for cut in (len(data) - 3, len(data) // 2, 5):
        path.write_bytes(data[:cut])
        with pytest.raises(MemoryBankError, match=r"bank\.safetensors.*rebuild the memory bank"):
            MemoryBank.load(path)


def test_load_text_file_raises(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("this is not a memory bank\n" * 10)
    with pytest.raises(MemoryBankError, match=r"notes\.safetensors.*rebuild the memory bank"):
        MemoryBank.load(path)


def test_load_other_safetensors_raises(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"layer_0": torch.zeros(2, 3)}, str(path))
    with pytest.raises(MemoryBankError, match="not an IAD-GPT memory bank"):
        MemoryBank.load(path)


def test_load_wrong_meta_raises(tmp_path):
    path = _bank(_tokens(1, 4, 0), meta={"preset": "paper"}).save(tmp_path / "b.safetensors")
    with pytest.raises(MemoryBankError, match=r"b\.safetensors.*preset 'paper'.*'tiny-test'.*rebuild"):
        MemoryBank.load(path, expect_meta={"preset": "tiny-test"})
    with pytest.raises(MemoryBankError, match="model None"):
        MemoryBank.load(path, expect_meta={"model": "org/clip"})


def test_save_empty_bank_refused(tmp_path):
    with pytest.raises(MemoryBankError, match="empty"):
        MemoryBank(DIMS).save(tmp_path / "b.safetensors")
    assert not (tmp_path / "b.safetensors").exists()


def test_bank_calibration_puts_normal_variation_near_zero():
    """The references' own spread (level) reads 0.5; normal patches well inside it read ~0, as the
    decoder's maps do on good parts; far patches approach 1; the ranking is kept."""
    from iadgpt.memory_bank import calibrate_bank_scores

    level = 0.2
    scores = torch.tensor([0.0, 0.05, 0.1, 0.2, 0.4, 1.0])
    out = calibrate_bank_scores(scores, level)
    assert out[0] == 0 and out[1] < 0.01 and abs(out[2] - 1 / 17) < 1e-6
    assert abs(out[3] - 0.5) < 1e-6 and abs(out[4] - 16 / 17) < 1e-6 and 0.99 < out[5] < 1
    assert torch.all(out[1:] > out[:-1])


def test_a_save_that_fills_the_disk_keeps_the_previous_bank(tmp_path, monkeypatch):
    path = _bank(_tokens(2, 20, 0), meta={"preset": "tiny-test"}).save(tmp_path / "leather.safetensors")
    before = path.read_bytes()

    def half_then_full(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(iadgpt.memory_bank, "save_file", half_then_full)
    with pytest.raises(MemoryBankError, match=r"could not write memory bank .*leather\.safetensors: No space left "
                                              r"on device; check that the folder is writable and the disk is not full"):
        _bank(_tokens(2, 30, 1), meta={"preset": "tiny-test"}).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["leather.safetensors"]
    assert len(MemoryBank.load(path, expect_meta={"preset": "tiny-test"})) == 40


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_a_saved_bank_is_readable_by_other_users(tmp_path, umask):
    umask(0o022)
    path = _bank(_tokens(1, 4, 0)).save(tmp_path / "b.safetensors")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
