"""Shared fixtures: the tiny Qwen2 model is built once per test session, into a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from deepscaler.inference.models import make_tiny_model


@contextmanager
def one_thread() -> Iterator[None]:
    """Run reference computations single-threaded: on a busy machine two OpenMP threads crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session", name="one_thread")
def one_thread_fixture():
    return one_thread


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"), preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def hf_model(tiny_model_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session", params=["fused kernels", "torch operators"])
def engine(tiny_model_dir: Path, request: pytest.FixtureRequest):
    """The built-in engine decoding on its fused kernels (one thread), and on PyTorch operators only."""
    from deepscaler.inference.engines.builtin import BuiltinEngine

    fused = request.param == "fused kernels"
    built = BuiltinEngine(tiny_model_dir, num_threads=1 if fused else None)
    built.model.fused_kernels = fused
    yield built
    built.close()


@pytest.fixture(scope="session")
def prompts(tokenizer) -> list[list[int]]:
    """Token ids of prompts of different lengths (2 to ~40 tokens)."""
    texts = [
        "What is 2 + 3?",
        "Solve $3x + 5 = 20$ for $x$. Let us think step by step, and put the answer in \\boxed{}.",
        "A",
        "<|im_start|>user\nSimplify \\frac{12}{18}.<|im_end|>\n<|im_start|>assistant\n",
    ]
    return [tokenizer(t)["input_ids"] for t in texts]


@pytest.fixture(scope="session")
def hf_greedy(hf_model: torch.nn.Module):
    """Hugging Face's own greedy decoding of a prompt, end-of-sequence disabled."""
    from transformers import GenerationConfig

    def run(prompt: list[int], max_new_tokens: int, model: torch.nn.Module = hf_model) -> list[int]:
        config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens,
                                  min_new_tokens=max_new_tokens, eos_token_id=None, pad_token_id=0)
        with torch.inference_mode(), one_thread():
            out = model.generate(torch.tensor([prompt]), generation_config=config)
        return out[0, len(prompt) :].tolist()

    return run


@pytest.fixture(scope="session")
def hf_logprobs(hf_model: torch.nn.Module):
    """log_softmax(logits / temperature) of each completion token, recomputed by Hugging Face."""

    def run(prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
        with torch.inference_mode(), one_thread():
            logits = hf_model(torch.tensor([prompt + completion])).logits[0, len(prompt) - 1 : -1]
        scaled = logits / (temperature if temperature > 0 else 1.0)
        return torch.log_softmax(scaled, dim=-1).gather(1, torch.tensor(completion).unsqueeze(1)).squeeze(1)

    return run
