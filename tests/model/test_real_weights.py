"""The real-weights path with stand-ins in the real on-disk formats (tests/standins.py).

Each test names the issue-14 item it guards. The stand-ins are small random models, so these tests
check that the files are found, fit, load and run end to end, not what a trained model answers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from iadgpt.cli import main
from iadgpt.config import CLIP_MEAN, CLIP_STD, load_preset, with_overrides
from iadgpt.errors import ConfigError, WeightsError
from iadgpt.inspector import Inspector
from iadgpt.llm import LanguageModel, inspection_messages
from iadgpt.precision import checkpoint_dtype, pick_dtype
from iadgpt.weights_fit import clip_problems, llm_problems
from tests import standins

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples" / "ball_screw_drive"
SYSTEM = "SYSTEM-TEXT for the inspection"


def _image() -> Path:
    return sorted((SAMPLES / "inspect").glob("pitting_*.png"))[0]


# -- 1. precision --------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_inspect_cli_on_the_cpu_in_fp32_and_bf16(precision: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Item 1: `iadgpt inspect --preset tiny-test --precision bf16 --json IMAGE` works on the CPU."""
    code = main(["inspect", str(_image()), "--preset", "tiny-test", "--precision", precision, "--device", "cpu",
                 "--json", "--out", str(tmp_path)])
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["verdict"] in ("good", "defective") and 0.0 <= record["p_yes"] <= 1.0
    assert Path(record["mask"]).is_file()


def test_bf16_inspection_and_chat_on_the_standin_workstation(standin_cache: Path, standin_preset: Path) -> None:
    """Item 1: bf16 through the real-weights path: inspect, then chat about the same image (the cache key)."""
    inspector = Inspector(str(standin_preset), device="cpu", precision="bf16")
    assert inspector.llm.dtype == torch.bfloat16
    result = inspector.inspect(_image(), generate_answer=False)
    assert np.isfinite(result.anomaly_map).all() and 0.0 <= result.p_yes <= 1.0
    answer = "".join(inspector.chat(_image(), [], "Where is the defect?", max_new_tokens=3))
    assert isinstance(answer, str)


def test_auto_precision_follows_the_llms_trained_dtype(standin_llms: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 1: auto is fp32 on the CPU; on a GPU bf16 where the GPU and the LLM's config.json agree, else fp16."""
    assert checkpoint_dtype(standin_llms["qwen2"]) == torch.bfloat16  # Qwen2.5 ships in bf16
    assert checkpoint_dtype(standin_llms["llama"]) == torch.float16
    cuda = torch.device("cuda")
    assert pick_dtype("auto", torch.device("cpu"), torch.bfloat16) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_dtype("auto", cuda, torch.bfloat16) == torch.bfloat16
    assert pick_dtype("auto", cuda, torch.float16) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert pick_dtype("auto", cuda, torch.bfloat16) == torch.float16
    with pytest.raises(ConfigError, match="fp16 is not supported on the CPU; choose fp32 or bf16"):
        pick_dtype("fp16", torch.device("cpu"))


def test_a_training_step_in_bf16_on_the_standin_workstation(standin_cache: Path, standin_preset: Path,
                                                            tmp_path: Path) -> None:
    """Item 1 (training has bf16) with the real-weights path: frozen towers and LLM in bf16, heads in fp32."""
    from iadgpt.training.config import TrainConfig
    from iadgpt.training.trainer import Trainer

    data = tmp_path / "data" / "ball_screw_drive" / "train" / "good"
    data.mkdir(parents=True)
    for p in sorted((SAMPLES / "reference").glob("*.png"))[:2]:
        shutil.copy(p, data / p.name)
    cfg = TrainConfig(preset=str(standin_preset), data=tmp_path / "data", stage=1, batch_size=2, max_steps=1,
                      out_dir=tmp_path / "run", device="cpu", precision="bf16", progress=False)
    trainer = Trainer(cfg)
    assert trainer.llm.dtype == torch.bfloat16 and next(trainer.model.tge.parameters()).dtype == torch.float32
    weights = trainer.run()
    assert (Path(weights) / "manifest.json").is_file()
    assert main(["models", "verify", str(weights)]) == 0


# -- 2. normalisation ----------------------------------------------------------------------------


def test_normalisation_comes_from_open_clips_pretrained_config() -> None:
    """Item 2: workstation's laion ViT-L-14 checkpoint uses 0.5/0.5, paper's ViT-H-14 OpenAI's values."""
    laion = open_clip.get_pretrained_cfg("ViT-L-14", "laion2b_s32b_b82k")
    workstation = load_preset("workstation").image_input
    assert (workstation.mean, workstation.std) == (tuple(laion["mean"]), tuple(laion["std"])) == ((0.5,) * 3,) * 2
    assert workstation.interpolation == laion["interpolation"]
    paper = load_preset("paper").image_input
    assert (paper.mean, paper.std) == (CLIP_MEAN, CLIP_STD)


def test_normalisation_of_a_local_checkpoint_comes_from_its_open_clip_config(tmp_path: Path) -> None:
    """Item 2: --clip at a local file reads the open_clip_config.json beside it; the preset can still override."""
    path = standins.write_open_clip_checkpoint(tmp_path / "clip", mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    preset = with_overrides(load_preset("tiny-test"), clip_weights=str(path))
    assert (preset.image_input.mean, preset.image_input.std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))


def test_the_inspector_feeds_the_checkpoints_normalisation(standin_cache: Path, standin_preset: Path) -> None:
    """Item 2: a mid-grey image is ~0 after 0.5/0.5 normalisation (it would be ~0.2 with OpenAI's)."""
    inspector = Inspector(str(standin_preset), device="cpu", precision="fp32")
    x = inspector._preprocess(np.full((64, 64, 3), 128, np.uint8))
    assert float(x.abs().max()) < 0.01


# -- 3, 7 and the likely ones: prompts for every chat-template family -------------------------------


@pytest.fixture(scope="module")
def family_models(standin_llms: dict[str, Path]) -> dict[str, LanguageModel]:
    return {family: LanguageModel.load(folder) for family, folder in standin_llms.items()}


def test_qwen2_prompt_uses_its_template_without_bos(family_models: dict[str, LanguageModel]) -> None:
    lm = family_models["qwen2"]
    ids = lm.prompt_ids(inspection_messages(SYSTEM, "generic"))
    text = lm.tokenizer.decode(ids)
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>") and text.endswith("<|im_start|>assistant\n")


def test_llama_prompt_has_exactly_one_bos(family_models: dict[str, LanguageModel]) -> None:
    """BOS as the tokenizer expects: Llama's template writes it, so it is not added a second time."""
    lm = family_models["llama"]
    ids = lm.prompt_ids(inspection_messages(SYSTEM, "generic"))
    assert ids[0] == lm.tokenizer.bos_token_id and ids.count(lm.tokenizer.bos_token_id) == 1
    assert f"<<SYS>>\n{SYSTEM}\n<</SYS>>" in lm.tokenizer.decode(ids)


def test_mistral_template_refusing_a_system_turn_gets_it_in_the_first_user_turn(
        family_models: dict[str, LanguageModel]) -> None:
    """Item 3: Mistral-Instruct's template raises on a system role; the system text opens the first [INST]."""
    lm = family_models["mistral"]
    messages = inspection_messages(SYSTEM, "generic")
    text = lm.prompt_text(messages)
    assert text.startswith(f"<s>[INST] {SYSTEM}\n\n<image>") and text.endswith("[/INST]")
    chat = [*messages, {"role": "assistant", "content": "No."}, {"role": "user", "content": "Sure?"}]
    assert lm.prompt_text(chat).count("[INST]") == 2


def test_vicuna_without_a_template_gets_the_v1_1_format_and_bos(family_models: dict[str, LanguageModel]) -> None:
    """Likely one: Vicuna v1.5 has no chat template: `SYSTEM USER: ... ASSISTANT:` with BOS, as it was trained."""
    lm = family_models["vicuna"]
    assert not lm.tokenizer.chat_template
    ids = lm.prompt_ids(inspection_messages(SYSTEM, "generic"))
    assert ids[0] == lm.tokenizer.bos_token_id
    text = lm.tokenizer.decode(ids[1:])
    assert text.startswith(f"{SYSTEM} USER: <image>") and text.endswith("ASSISTANT:")


@pytest.mark.parametrize("family", standins.FAMILIES)
def test_every_family_inspects_and_chats(family: str, standin_llms: dict[str, Path], standin_cache: Path,
                                         standin_preset: Path) -> None:
    """Items 3 and 5: each family's LLM, given with llm_path (--llm), answers the inspection and a chat turn."""
    inspector = Inspector(str(standin_preset), device="cpu", precision="fp32", llm_path=str(standin_llms[family]))
    result = inspector.inspect(_image(), generate_answer=True)
    assert result.verdict in ("good", "defective") and isinstance(result.answer, str)
    history = [{"role": "user", "content": "first"}, {"role": "assistant", "content": result.answer or "No."}]
    pieces = list(inspector.chat(_image(), history, "Where is it?", max_new_tokens=3))
    assert all(isinstance(p, str) for p in pieces)


def test_yes_and_no_that_split_into_pieces_are_scored_as_sequences(tmp_path: Path) -> None:
    """Item 7: a tokenizer without a single 'Yes' token: the verdict is P(whole word), never P(first piece)."""
    corpus = "Yellow Yak essay eskimo Nation Ocean open\n" * 4  # no "yes" or "no" to merge into one token
    folder = standins.write_llm_folder(tmp_path / "split", "qwen2", corpus=corpus, vocab_size=300)
    lm = LanguageModel.load(folder)
    assert lm.yes_ids == set() and all(len(q) > 1 for q in lm.yes_sequences)
    assert all(lm.tokenizer.decode(q).strip().lower() == "yes" for q in lm.yes_sequences)
    prompt = lm.prompt_ids(inspection_messages(SYSTEM, "generic"))
    embeds = lm.model.get_input_embeddings()(torch.tensor([prompt]))
    (verdict,) = lm.verdict(embeds, torch.ones(1, len(prompt), dtype=torch.long))

    def word_log_prob(sequences: list[tuple[int, ...]]) -> float:  # by token ids, one pass per spelling
        total = []
        for seq in sequences:
            ids = torch.tensor([prompt + list(seq)])
            logp = lm.model(input_ids=ids).logits[0].float().log_softmax(-1)
            total.append(sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(seq)))
        return float(torch.tensor(total).logsumexp(0))

    expected = 1 / (1 + np.exp(word_log_prob(lm.no_sequences) - word_log_prob(lm.yes_sequences)))
    assert verdict.p_yes == pytest.approx(expected, abs=1e-4)


def test_a_tokenizer_that_cannot_spell_yes_is_refused_with_a_sentence(tmp_path: Path) -> None:
    """Item 7: no spelling of 'Yes' round-trips (unknown pieces): refused, not guessed."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(["No no anomaly image"], trainers.WordLevelTrainer(special_tokens=["<unk>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>")
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer) + 1, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(WeightsError, match="cannot write the words 'Yes' and 'No'"):
        LanguageModel(model, tokenizer, "wordlevel")


# -- 4. structural checks and doctor ---------------------------------------------------------------


def test_structural_checks_accept_fitting_weights_and_name_what_is_wrong(
        standin_clip: Path, standin_llms: dict[str, Path], tmp_path: Path) -> None:
    """Item 4: names and shapes against the architecture, from the headers only."""
    preset = load_preset("tiny-test")
    assert clip_problems(standin_clip / "open_clip_model.safetensors", preset.clip) == []
    pickled = standins.write_open_clip_checkpoint(tmp_path / "bin", pickle=True)
    assert clip_problems(pickled, preset.clip) == []
    (problem,) = clip_problems(standins.write_transformers_clip(tmp_path / "hf" / "model.safetensors"), preset.clip)
    assert "tensors are missing" in problem and "transformers' CLIPModel format" in problem
    assert "open_clip_model.safetensors" in problem
    workstation = load_preset("workstation")
    wrong = clip_problems(standin_clip / "open_clip_model.safetensors", workstation.clip)
    assert wrong and all("does not fit open_clip ViT-L-14" in p for p in wrong)
    for folder in standin_llms.values():
        assert llm_problems(folder) == []
    broken = tmp_path / "llm"
    shutil.copytree(standin_llms["qwen2"], broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "hidden_size": 48}))
    (shape,) = llm_problems(broken)
    assert "tensors have other shapes" in shape and str(broken) in shape


def test_a_full_size_header_of_the_real_architecture_fits_without_reading_data(tmp_path: Path) -> None:
    """Item 4: a ViT-L-14-shaped checkpoint (sparse file: no data on disk) fits the workstation preset."""
    path = standins.write_sparse_safetensors(tmp_path / "open_clip_model.safetensors",
                                             standins.architecture_shapes("ViT-L-14"))
    assert clip_problems(path, load_preset("workstation").clip) == []


# -- 5. --clip ----------------------------------------------------------------------------------


def test_inspect_clip_flag_points_at_a_checkpoint_file_or_folder(standin_clip: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Item 5: --clip loads the given open_clip weights (file or folder); a wrong file fails with the fix."""
    for target in (standin_clip, standin_clip / "open_clip_model.safetensors"):
        inspector = Inspector("tiny-test", device="cpu", clip_weights=str(target))
        assert inspector.preset.clip_weights == str(target)
        assert inspector.preset.image_input.mean == (0.5, 0.5, 0.5)
    bad = standins.write_transformers_clip(tmp_path / "hf" / "model.safetensors")
    assert main(["inspect", str(_image()), "--preset", "tiny-test", "--clip", str(bad), "--out",
                 str(tmp_path / "out")]) == 2
    assert "transformers' CLIPModel format" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["inspect", "train", "eval"])
def test_clip_and_llm_flags_exist_on_inspect_train_and_eval(command: str) -> None:
    from iadgpt.cli import build_parser

    extra = {"inspect": ["x.png"], "train": ["--data", "d"], "eval": ["--data", "d"]}[command]
    args = build_parser().parse_args([command, *extra, "--clip", "/c", "--llm", "/l", "--precision", "bf16"])
    assert (args.clip_weights, args.llm, args.precision) == ("/c", "/l", "bf16")


# -- models list, import (6) ------------------------------------------------------------------------


def test_models_list_finds_the_standins_in_the_hf_cache_layout(standin_cache: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    workstation = out[out.index("workstation"):]
    assert "MISSING" not in workstation.split("\n", 3)[1] + workstation.split("\n", 3)[2]
    assert "models--laion--CLIP-ViT-L-14-laion2B-s32B-b82K/snapshots/" in workstation
    assert "models--Qwen--Qwen2.5-1.5B-Instruct/snapshots/" in workstation


def _cp_r(src: Path, dst: Path) -> Path:
    """`cp -r` as a person runs it: links are copied as links (GNU cp's default when copying recursively)."""
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    return dst


def test_import_of_a_cp_r_copy_of_whole_cache_folders_works(standin_cache_dir: Path, standin_preset: Path,
                                                           tmp_path: Path, hf_cache: Path) -> None:
    """Item 6: `cp -r models--org--name` keeps the snapshot's links resolvable inside the copy: imported."""
    usb = tmp_path / "usb"
    usb.mkdir()
    _cp_r(standin_cache_dir / "models--laion--CLIP-ViT-L-14-laion2B-s32B-b82K", usb / "clip")
    _cp_r(standin_cache_dir / "models--Qwen--Qwen2.5-1.5B-Instruct", usb / "llm")
    assert (usb / "llm" / "snapshots").is_dir()
    assert main(["models", "import", str(usb), "--preset", str(standin_preset), "--progress", "off"]) == 0
    inspector = Inspector(str(standin_preset), device="cpu", precision="fp32")
    assert inspector.inspect(_image(), generate_answer=False).verdict in ("good", "defective")


def test_import_of_a_cp_r_copy_of_a_snapshot_says_exactly_what_to_do(standin_cache_dir: Path, standin_preset: Path,
                                                                    tmp_path: Path, hf_cache: Path) -> None:
    """Item 6: a snapshot copied with `cp -r` holds dangling links: one sentence naming the file and `cp -rL`."""
    usb = tmp_path / "usb"
    usb.mkdir()
    snapshots = standin_cache_dir / "models--laion--CLIP-ViT-L-14-laion2B-s32B-b82K" / "snapshots"
    _cp_r(next(snapshots.iterdir()), usb / "clip")
    _cp_r(next((standin_cache_dir / "models--Qwen--Qwen2.5-1.5B-Instruct" / "snapshots").iterdir()), usb / "llm")
    with pytest.raises(WeightsError, match=r"open_clip_model\.safetensors is a symbolic link to .*`cp -rL SOURCE "
                                           r"DEST`.*nothing was imported"):
        from iadgpt.models_admin import import_weights

        import_weights(usb, str(standin_preset), progress=False, log=lambda _: None)
    assert not [p for p in hf_cache.rglob("*") if p.is_file()]


# -- likely one: models download of a .bin-only repo ----------------------------------------------


def test_download_converts_a_bin_only_llm_repo_to_safetensors(standin_llms: dict[str, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A repo with only pytorch_model.bin: fetched, converted (weights_only), the .bin removed; it loads."""
    import huggingface_hub
    from safetensors.torch import load_file

    from iadgpt.download import download_preset

    repo_files = tmp_path / "repo"
    shutil.copytree(standin_llms["llama"], repo_files)
    torch.save(load_file(str(repo_files / "model.safetensors")), repo_files / "pytorch_model.bin")
    (repo_files / "model.safetensors").unlink()
    cache = tmp_path / "cache"
    fetched: list[list[str]] = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **_):
        fetched.append(allow_patterns)
        return str(standins.put_in_hf_cache(cache, repo_id, repo_files))

    monkeypatch.setattr(huggingface_hub, "list_repo_files",
                        lambda repo, revision=None: sorted(p.name for p in repo_files.iterdir()))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    preset = with_overrides(load_preset("tiny-test"), llm_path="org/bin-only")
    lines: list[str] = []
    download_preset(preset, lines.append)
    folder = Path(lines[-1].split(": ", 1)[1].split(" (")[0])
    assert "pytorch_model*.bin" in fetched[0] and "1 .bin file(s) converted" in lines[-1]
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    assert llm_problems(folder) == []
    assert LanguageModel.load(folder).verdict is not None


def test_download_refuses_a_repo_without_safe_or_bin_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from iadgpt.download import download_preset

    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo, revision=None: ["config.json", "x.gguf"])
    preset = with_overrides(load_preset("tiny-test"), llm_path="org/gguf-only")
    with pytest.raises(WeightsError, match="holds no weights in safetensors or PyTorch .bin files"):
        download_preset(preset)


def test_few_shot_on_the_standin_workstation(standin_cache: Path, standin_preset: Path) -> None:
    inspector = Inspector(str(standin_preset), device="cpu", precision="fp32")
    inspector.build_memory_bank(sorted((SAMPLES / "reference").glob("*.png"))[:2])
    result = inspector.inspect(_image(), generate_answer=False)
    assert result.mode == "few-shot" and np.isfinite(result.anomaly_map).all()
