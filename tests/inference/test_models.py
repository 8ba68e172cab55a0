"""The locally built tiny model: loadable by transformers, deterministic, with a math-aware tokenizer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from deepscaler.inference.corpus import math_corpus
from deepscaler.inference.models import PRESETS, count_parameters, make_tiny_model


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_folder_is_a_standard_qwen2_checkpoint(tiny_model_dir: Path, hf_model) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["dtype"] == "float32"
    assert config["vocab_size"] == 1024
    assert (tiny_model_dir / "model.safetensors").is_file()
    assert type(hf_model).__name__ == "Qwen2ForCausalLM"
    assert next(hf_model.parameters()).dtype == torch.float32


def test_tiny_has_about_4_3m_parameters(tiny_model_dir: Path, hf_model) -> None:
    assert count_parameters(tiny_model_dir) == 4_296_960
    assert sum(p.numel() for p in hf_model.parameters()) == 4_296_960


def test_same_seed_same_files_other_seed_other_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = make_tiny_model(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert digest(again / name) == digest(tiny_model_dir / name)
    other = make_tiny_model(tmp_path / "other", seed=1)
    assert digest(other / "model.safetensors") != digest(tiny_model_dir / "model.safetensors")
    assert digest(other / "tokenizer.json") == digest(tiny_model_dir / "tokenizer.json")


def test_building_leaves_the_global_torch_generator_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_tiny_model(tmp_path / "m", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_preset_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        make_tiny_model(tmp_path, preset="huge")


def test_small_preset_has_20_to_40m_parameters() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    spec = dict(PRESETS["small"])
    config = Qwen2Config(vocab_size=spec.pop("vocab"), tie_word_embeddings=True, **spec)
    with torch.device("meta"):  # shapes only, no memory
        model = Qwen2ForCausalLM(config)
    assert 20e6 < sum(p.numel() for p in model.parameters()) < 40e6


def test_digits_latex_and_markers_are_single_tokens(tokenizer) -> None:
    pieces = [tokenizer.decode([t]) for t in tokenizer("x = 12345")["input_ids"]]
    assert pieces[-5:] == ["1", "2", "3", "4", "5"]
    markers = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
    for token in ("\\boxed", "\\frac", "\\sqrt", *markers):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, token
        assert tokenizer.decode(ids) == token
    ids = tokenizer("so $\\boxed{\\frac{1}{2}}$")["input_ids"]
    assert tokenizer.convert_tokens_to_ids("\\boxed") in ids
    assert tokenizer.convert_tokens_to_ids("\\frac") in ids


def test_special_tokens_and_eos(tokenizer) -> None:
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    # <think> is kept when special tokens are skipped: the reasoning markers are part of the text.
    ids = tokenizer("<think>\nhm</think><|im_end|>")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\nhm</think>"


def test_text_round_trips(tokenizer) -> None:
    for line in math_corpus(200, seed=3) + ["Ünïcödé ∑ 数学 🙂", "  two  spaces\n\nand tabs\t"]:
        assert tokenizer.decode(tokenizer(line)["input_ids"]) == line


def test_chat_template_ends_the_generation_prompt_at_assistant(tokenizer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    without = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert text.startswith(without) and not without.endswith("assistant\n")
