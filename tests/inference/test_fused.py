"""The compiled kernels are a speed-up, never a requirement: where Numba or llvmlite fail, the built-in
engine decodes the same tokens on PyTorch's operators and says why once."""

from __future__ import annotations

import sys
import warnings

import llvmlite.binding
import pytest

import deepscaler.inference.engines as engines_package
from deepscaler.inference.engines import attention, fused
from deepscaler.inference.engines.builtin import BuiltinEngine
from deepscaler.inference.params import SamplingParams

pytestmark = pytest.mark.plain_install

GREEDY = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True)
SAMPLED = SamplingParams(temperature=0.8, max_tokens=16, seed=3)  # no top-k/top-p: the sampling kernel's case


@pytest.fixture
def undecided():
    """Forget what this process decided about the kernels, before the test and after it."""

    def forget() -> None:
        fused.kernels.cache_clear()
        fused._attention_works.cache_clear()
        attention._compile.cache_clear()

    forget()
    yield forget
    forget()


def decode(tiny_model_dir, prompts, fused_kernels: bool = True):
    """Greedy and seeded-sampled tokens from a one-thread float32 engine, and the engine's final choice."""
    engine = BuiltinEngine(tiny_model_dir, num_threads=1)
    engine.model.fused_kernels = fused_kernels
    try:
        tokens = [[outs[0].token_ids for outs in engine.generate(prompts, [params] * len(prompts))]
                  for params in (GREEDY, SAMPLED)]
        return tokens, engine.model.fused_kernels
    finally:
        engine.close()


def test_the_kernels_compile_here_without_a_warning(undecided) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fused.kernels() is not None
        for head_dim, n_q, n_kv in [(64, 4, 2), (128, 12, 2)]:  # the tiny model's layout; DeepScaleR-1.5B's
            assert isinstance(fused.decode_attention(head_dim, n_q, n_kv), attention.DecodeAttention)
    assert fused.decode_attention(40, 4, 2) is None  # a head size the kernel does not take: quietly none


def test_an_llvmlite_api_change_falls_back_to_the_same_tokens(tiny_model_dir, prompts, monkeypatch, undecided):
    expected, _ = decode(tiny_model_dir, prompts, fused_kernels=False)
    undecided()

    def changed_api(**options):  # how llvmlite 0.50 met this code's call: a keyword it no longer takes
        raise TypeError("create_pipeline_tuning_options() got an unexpected keyword argument 'size_level'")

    monkeypatch.setattr(llvmlite.binding, "create_pipeline_tuning_options", changed_api)
    with pytest.warns(RuntimeWarning) as caught:
        tokens, still_fused = decode(tiny_model_dir, prompts)
        tokens_again, _ = decode(tiny_model_dir, prompts)
    assert tokens == tokens_again == expected and not still_fused
    assert len(caught) == 1  # once per process, however many engines and steps
    message = str(caught[0].message)
    assert "llvmlite" in message and "TypeError" in message and "size_level" in message


def test_a_numba_that_cannot_import_falls_back_to_the_same_tokens(tiny_model_dir, prompts, monkeypatch, undecided):
    expected, _ = decode(tiny_model_dir, prompts, fused_kernels=False)
    undecided()  # the sampler compiled the kernels for that run
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    monkeypatch.delitem(sys.modules, "deepscaler.inference.engines.kernels")
    monkeypatch.delattr(engines_package, "kernels")
    with pytest.warns(RuntimeWarning, match=r"Numba.*ModuleNotFoundError: import of numba") as caught:
        tokens, still_fused = decode(tiny_model_dir, prompts)
    greedy, expected_greedy = tokens[0], expected[0]  # sampling left the kernel too: equal to rounding only
    assert greedy == expected_greedy and not still_fused and len(caught) == 1
