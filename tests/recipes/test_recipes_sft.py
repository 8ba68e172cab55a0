"""Stage 0 SFT: batching, response-only labels, the schedule, and a real run that learns and saves a loadable model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from deepscaler.cpu import cpu_has_native_bf16, has_native_bf16
from deepscaler.recipes.curriculum import generate_problems
from deepscaler.recipes.sft import (
    IGNORE,
    SFTConfig,
    collate,
    encode_examples,
    lr_at,
    plan_batches,
    response_loss,
    run_sft,
)
from deepscaler.recipes.tiny import sft_examples


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deepscaler.inference import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("recipes-base"), preset="tiny", seed=0)


@pytest.fixture(scope="module")
def tokenizer(base_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model)


def test_plan_batches_covers_every_example_once_per_epoch_and_is_seeded():
    lengths = [random.Random(i).randint(10, 300) for i in range(100)]
    config = SFTConfig(batch_size=8, group_batches=4, epochs=2, seed=1)
    batches = plan_batches(lengths, config)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == sorted(list(range(100)) * 2)
    assert max(len(b) for b in batches) == 8
    assert batches == plan_batches(lengths, config)
    assert batches != plan_batches(lengths, SFTConfig(batch_size=8, group_batches=4, epochs=2, seed=2))
    # Grouping by length keeps padding small: each batch spans a narrow range of lengths.
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 80
    assert len([i for b in plan_batches(lengths, SFTConfig(batch_size=8, epochs=0.5)) for i in b]) == 50


def test_labels_cover_the_response_and_its_end_token_only(tokenizer):
    encoded = encode_examples(tokenizer, [("What is 2 + 3?", "<think>\n2 + 3 = 5.\n</think>\n$\\boxed{5}$"),
                                          ("Hi", "<think>\nok\n</think>\n$\\boxed{1}$")], max_length=512)
    ids, start = encoded[0]
    assert tokenizer.decode(ids[:start]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(ids[start:]) == "<think>\n2 + 3 = 5.\n</think>\n$\\boxed{5}$<|im_end|>"
    input_ids, mask, labels = collate(encoded, tokenizer.pad_token_id)
    assert input_ids.shape == labels.shape == (2, max(len(e[0]) for e in encoded))
    assert labels[0, :start].eq(IGNORE).all() and labels[0, start : len(ids)].tolist() == ids[start:]
    short = len(encoded[1][0])
    assert mask[1].sum() == short and labels[1, short:].eq(IGNORE).all()
    assert input_ids[1, short:].eq(tokenizer.pad_token_id).all()
    assert encode_examples(tokenizer, [("x" * 50, "y" * 50)], max_length=20) == []


def test_loss_through_the_lean_forward_equals_hugging_faces(base_model, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    encoded = encode_examples(tokenizer, [("What is 2 + 3?", "<think>\n2 + 3 = 5.\n</think>\n$\\boxed{5}$"),
                                          ("Hi", "ok")], max_length=512)
    input_ids, _, labels = collate(encoded, tokenizer.pad_token_id)
    with torch.no_grad():
        lean = response_loss(model, input_ids, labels, bf16=False)
        logits = model(input_ids=input_ids).logits[:, :-1]
    hf = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                           ignore_index=IGNORE)
    assert float(lean) == pytest.approx(float(hf), rel=1e-5)
    assert 5 < float(lean) < 9  # about ln(1024) for random weights: a real loss, not a masked-out zero


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = SFTConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 100, config) == pytest.approx(1e-4)
    assert lr_at(9, 100, config) == pytest.approx(1e-3)
    assert lr_at(55, 100, config) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(100, 100, config) == pytest.approx(1e-4)


def test_native_bfloat16_is_read_from_the_cpu_flags():
    assert has_native_bf16("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert has_native_bf16("flags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    assert not has_native_bf16("flags\t\t: fpu sse2 avx2 fma\n")
    # A flag's name elsewhere (a bug note, a model name) is not a flag.
    assert not has_native_bf16("bugs\t\t: avx512_bf16\nflags\t\t: avx2\n")


def test_the_embedded_default_computes_in_bfloat16_only_where_the_cpu_has_it(tmp_path: Path):
    from deepscaler.recipes.embedded import default_train_config

    # Emulated bfloat16 made the embedded default's GRPO update ~25x slower on an AVX2-only CPU.
    expected = "bfloat16" if cpu_has_native_bf16() else "float32"
    assert default_train_config(tmp_path).model.dtype == expected


def test_sft_learns_and_saves_a_model_the_llm_loads(base_model: Path, tmp_path: Path):
    from deepscaler.inference import LLM, SamplingParams

    problems = generate_problems(24, seed=0, difficulties=(1,))
    examples, _ = sft_examples(problems, error_rate=0.0, seed=0)
    # One thread: the tests must not fight the rest of a parallel test run for cores.
    config = SFTConfig(epochs=4, batch_size=8, lr=3e-3, warmup_steps=2, progress=False, seed=0, threads=1)
    metrics = run_sft(base_model, tmp_path / "sft", examples, config)
    assert metrics["steps"] == 12 and metrics["examples"] == 24
    losses = metrics["losses"]
    assert sum(losses[-3:]) / 3 < 0.75 * sum(losses[:3]) / 3
    assert metrics["response_tokens"] < metrics["tokens"]
    saved = tmp_path / "sft"
    assert (saved / "model.safetensors").is_file() and (saved / "tokenizer.json").is_file()
    with LLM(model=saved, engine="builtin") as llm:
        out = llm.chat([{"role": "user", "content": examples[0][0]}], SamplingParams(temperature=0, max_tokens=4),
                       use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 4

    # Every response starts with <think>: after SFT that first token is far more likely than before.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(saved)
    text = tokenizer.apply_chat_template([{"role": "user", "content": examples[0][0]}], tokenize=False,
                                         add_generation_prompt=True)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    think = tokenizer.convert_tokens_to_ids("<think>")

    def first_token_logprob(folder):
        with torch.no_grad():
            logits = AutoModelForCausalLM.from_pretrained(folder).eval()(ids).logits[0, -1]
        return float(torch.log_softmax(logits, -1)[think])

    assert first_token_logprob(saved) > first_token_logprob(base_model) + 1.0


def test_sft_is_deterministic_for_a_seed(base_model: Path, tmp_path: Path):
    from safetensors.torch import load_file

    examples = [("What is 1 + 1?", "<think>\n1 + 1 = 2.\n</think>\nThe answer is $\\boxed{2}$.")] * 8
    config = SFTConfig(epochs=1, batch_size=4, progress=False, seed=3, threads=1)
    first = run_sft(base_model, tmp_path / "a", examples, config)
    second = run_sft(base_model, tmp_path / "b", examples, config)
    assert first["losses"] == second["losses"]
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
