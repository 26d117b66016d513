"""Tests of presets (iadgpt.config): built-ins load, strict parsing, frozen dataclasses, overrides."""

from __future__ import annotations

import copy
import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest

from iadgpt.config import (
    ClipConfig,
    HeadsConfig,
    InferenceConfig,
    LLMConfig,
    Preset,
    TinyLLMConfig,
    builtin_presets,
    load_preset,
    with_overrides,
)
from iadgpt.errors import ConfigError, IADGPTError


def _builtin_json(name: str) -> dict:
    return json.loads((resources.files("iadgpt.configs") / f"{name}.json").read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict, name: str = "custom.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def tiny_data() -> dict:
    """The tiny-test preset as a JSON dict, to edit into broken variants."""
    return copy.deepcopy(_builtin_json("tiny-test"))


# --------------------------------------------------------------------------------------------------
# Built-in presets


def test_builtin_presets_lists_the_shipped_presets_sorted():
    names = builtin_presets()
    assert names == sorted(names)
    assert {"paper", "tiny-test", "workstation", "bench-b16"} <= set(names)
    assert all(not n.endswith(".json") for n in names)


@pytest.mark.parametrize("name", builtin_presets())
def test_every_builtin_preset_loads_and_is_consistent(name):
    preset = load_preset(name)
    assert isinstance(preset, Preset)
    assert preset.name == name
    assert preset.description
    assert isinstance(preset.llm, LLMConfig)
    assert isinstance(preset.heads, HeadsConfig)
    assert isinstance(preset.inference, InferenceConfig)
    # exactly one image tower, and one way of naming each tower
    assert (preset.clip is None) != (preset.efficientnet is None)
    tower = preset.clip or preset.efficientnet
    if preset.clip is not None:
        assert isinstance(preset.clip, ClipConfig)
        assert (preset.clip.arch is None) != (preset.clip.arch_config is None)
    assert (preset.llm.path is None) != (preset.llm.tiny is None)
    # taps are 1-based, increasing block indices; JSON lists became tuples
    assert isinstance(tower.taps, tuple)
    assert all(isinstance(t, int) and t >= 1 for t in tower.taps)
    assert list(tower.taps) == sorted(set(tower.taps))
    assert preset.image_input.image_size > 0
    ids = preset.base_model_ids()
    assert set(ids) == {"clip", "llm"}


def test_paper_preset_matches_the_paper_setting():
    preset = load_preset("paper")
    assert preset.clip.arch == "ViT-H-14"
    assert preset.clip.arch_config is None
    assert preset.clip.taps == (8, 16, 24, 32)
    assert preset.clip.image_size == 224
    assert preset.llm.path and preset.llm.tiny is None
    assert preset.base_model_ids()["clip"].startswith("ViT-H-14:")


def test_tiny_test_preset_uses_random_towers_and_tiny_llm():
    preset = load_preset("tiny-test")
    assert preset.clip.arch is None and isinstance(preset.clip.arch_config, dict)
    assert preset.clip.weights is None
    assert isinstance(preset.llm.tiny, TinyLLMConfig)
    assert preset.llm.path is None
    assert preset.base_model_ids() == {"clip": "custom:random-seed-0", "llm": "tiny-random"}


def test_defaults_fill_omitted_sections(tmp_path, tiny_data):
    del tiny_data["heads"]
    del tiny_data["inference"]
    preset = load_preset(_write(tmp_path, tiny_data))
    assert preset.heads == HeadsConfig()
    assert preset.inference == InferenceConfig()


def test_json_integer_for_float_field_becomes_float(tmp_path, tiny_data):
    tiny_data["heads"]["tge_ffn_ratio"] = 3
    preset = load_preset(_write(tmp_path, tiny_data))
    assert preset.heads.tge_ffn_ratio == 3.0
    assert isinstance(preset.heads.tge_ffn_ratio, float)


# --------------------------------------------------------------------------------------------------
# Presets by path


def test_preset_json_file_path_loads(tmp_path, tiny_data):
    tiny_data["name"] = "my-line"
    tiny_data["clip"]["taps"] = [2, 4]
    path = _write(tmp_path, tiny_data, "my-line.json")
    for ref in (path, str(path)):
        preset = load_preset(ref)
        assert preset.name == "my-line"
        assert preset.clip.taps == (2, 4)


def test_path_to_missing_json_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset(tmp_path / "nope.json")


def test_invalid_json_file_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{ not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        load_preset(path)
    assert str(path) in str(info.value)


def test_unknown_preset_name_lists_the_builtins():
    with pytest.raises(ConfigError) as info:
        load_preset("no-such-preset")
    message = str(info.value)
    assert "no-such-preset" in message
    for name in builtin_presets():
        assert name in message


def test_config_error_is_an_iadgpt_error():
    with pytest.raises(IADGPTError):
        load_preset("no-such-preset")


# --------------------------------------------------------------------------------------------------
# Strict parsing: unknown keys, wrong types, inconsistent towers


def test_unknown_top_level_key_is_named(tmp_path, tiny_data):
    tiny_data["headz"] = {}
    with pytest.raises(ConfigError, match="headz"):
        load_preset(_write(tmp_path, tiny_data))


def test_unknown_nested_key_is_named(tmp_path, tiny_data):
    tiny_data["clip"]["tapz"] = [1, 2]
    with pytest.raises(ConfigError, match="tapz") as info:
        load_preset(_write(tmp_path, tiny_data))
    assert "clip" in str(info.value)


def test_unknown_key_in_tiny_llm_is_named(tmp_path, tiny_data):
    tiny_data["llm"]["tiny"]["hiden_size"] = 32
    with pytest.raises(ConfigError, match="hiden_size"):
        load_preset(_write(tmp_path, tiny_data))


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        pytest.param("clip", "taps", "1,2,3,4", id="taps-string"),
        pytest.param("clip", "taps", 4, id="taps-int"),
        pytest.param("clip", "taps", ["1", "2"], id="taps-string-items"),
        pytest.param("clip", "image_size", "128", id="image_size-string"),
        pytest.param("clip", "image_size", 128.0, id="image_size-float"),
        pytest.param("clip", "image_size", True, id="image_size-bool"),
        pytest.param("clip", "arch_config", [1, 2], id="arch_config-list"),
        pytest.param("heads", "tge_ffn_ratio", "2.0", id="ratio-string"),
        pytest.param("heads", "tge_ffn_ratio", True, id="ratio-bool"),
        pytest.param("llm", "max_new_tokens", None, id="max_new_tokens-null"),
        pytest.param("llm", "tiny", 5, id="tiny-not-object"),
    ],
)
def test_wrong_type_is_a_config_error_naming_the_field(tmp_path, tiny_data, section, key, value):
    tiny_data[section][key] = value
    with pytest.raises(ConfigError, match=key):
        load_preset(_write(tmp_path, tiny_data))


def test_section_that_is_not_an_object_is_a_config_error(tmp_path, tiny_data):
    tiny_data["heads"] = [1, 2, 3]
    with pytest.raises(ConfigError, match="heads"):
        load_preset(_write(tmp_path, tiny_data))


def test_missing_required_field_is_a_config_error(tmp_path, tiny_data):
    del tiny_data["clip"]
    with pytest.raises(ConfigError, match="clip"):
        load_preset(_write(tmp_path, tiny_data))


def test_both_arch_and_arch_config_is_a_config_error(tmp_path, tiny_data):
    tiny_data["clip"]["arch"] = "ViT-B-16"
    with pytest.raises(ConfigError, match="exactly one of clip.arch and clip.arch_config"):
        load_preset(_write(tmp_path, tiny_data))


def test_neither_arch_nor_arch_config_is_a_config_error(tmp_path, tiny_data):
    del tiny_data["clip"]["arch_config"]
    with pytest.raises(ConfigError, match="exactly one of clip.arch and clip.arch_config"):
        load_preset(_write(tmp_path, tiny_data))


def test_both_llm_path_and_tiny_is_a_config_error(tmp_path, tiny_data):
    tiny_data["llm"]["path"] = "some/llm"
    with pytest.raises(ConfigError, match="llm.path and llm.tiny"):
        load_preset(_write(tmp_path, tiny_data))


def test_neither_llm_path_nor_tiny_is_a_config_error(tmp_path, tiny_data):
    del tiny_data["llm"]["tiny"]
    with pytest.raises(ConfigError, match="llm.path and llm.tiny"):
        load_preset(_write(tmp_path, tiny_data))


@pytest.mark.parametrize("taps", [[], [0, 1], [-1, 2]], ids=["empty", "zero", "negative"])
def test_taps_must_be_one_based_blocks(tmp_path, tiny_data, taps):
    tiny_data["clip"]["taps"] = taps
    with pytest.raises(ConfigError, match="taps"):
        load_preset(_write(tmp_path, tiny_data))


# --------------------------------------------------------------------------------------------------
# Frozen presets and overrides


def test_presets_are_frozen():
    preset = load_preset("paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.clip.taps = (1, 2)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.llm.path = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.heads.mask_size = 1  # type: ignore[misc]


def test_with_overrides_replaces_llm_path_and_clears_tiny():
    preset = load_preset("tiny-test")
    assert preset.llm.tiny is not None
    changed = with_overrides(preset, llm_path="/models/my-llm")
    assert changed.llm.path == "/models/my-llm"
    assert changed.llm.tiny is None
    assert changed.llm.max_new_tokens == preset.llm.max_new_tokens
    assert changed.clip == preset.clip
    assert changed.base_model_ids()["llm"] == "/models/my-llm"
    # the original is untouched
    assert preset.llm.path is None and preset.llm.tiny is not None


def test_with_overrides_replaces_clip_weights_only():
    preset = load_preset("paper")
    changed = with_overrides(preset, clip_weights="/models/clip.safetensors")
    assert changed.clip.weights == "/models/clip.safetensors"
    assert changed.clip.taps == preset.clip.taps
    assert changed.llm == preset.llm
    assert changed.base_model_ids()["clip"] == "ViT-H-14:/models/clip.safetensors"
    assert preset.clip.weights != "/models/clip.safetensors"


def test_with_overrides_without_arguments_is_unchanged():
    preset = load_preset("paper")
    assert with_overrides(preset) == preset


@pytest.mark.parametrize("key", ["mean", "std"])
def test_mean_and_std_must_have_three_channels(tmp_path, tiny_data, key):
    tiny_data["clip"][key] = [0.5]
    with pytest.raises(ConfigError, match=key):
        load_preset(_write(tmp_path, tiny_data))
