"""The lean forward pass gives Hugging Face's logits, for prefill and cached decoding, on several families,
with its float32 decode on the fused kernels (the default) and on PyTorch operators."""

from __future__ import annotations

import pytest
import torch

from deepscaler.inference.engines.lean import LeanCausalLM


def small_model(family: str) -> torch.nn.Module:
    """A random two-layer model of `family`, with grouped-query attention."""
    import transformers

    shape = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    configs = {
        "llama": lambda: transformers.LlamaConfig(
            **shape, rope_parameters={"rope_type": "default", "rope_theta": 500.0}
        ),
        "qwen3": lambda: transformers.Qwen3Config(**shape, head_dim=16),
        "mistral": lambda: transformers.MistralConfig(**shape, sliding_window=None),
    }
    torch.manual_seed(0)
    config = configs[family]()
    config.initializer_range = 0.1  # peakier logits than the default, so differences would show
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def check_against_hf(
    model: torch.nn.Module, prompts: list[list[int]], one_thread, fused: bool, steps: int = 5
) -> None:
    lean = LeanCausalLM(model)
    assert lean.fused_kernels  # float32: the default
    lean.fused_kernels = fused
    lean.allocate_cache(len(prompts), max(map(len, prompts)) + steps)
    width = max(map(len, prompts))
    tokens = torch.tensor([p + [0] * (width - len(p)) for p in prompts])
    rows = torch.arange(len(prompts))
    with one_thread():  # the fused kernels (norms, SiLU x up) run on one thread only
        logits = lean.prefill(tokens, torch.tensor([len(p) for p in prompts]), rows, rows)
    sequences = [list(p) for p in prompts]
    positions = torch.tensor([len(p) for p in prompts])
    for step in range(steps + 1):
        with torch.inference_mode(), one_thread():
            for i, seq in enumerate(sequences):
                expected = model(torch.tensor([seq])).logits[0, -1]
                assert torch.allclose(logits[i], expected, atol=1e-4, rtol=1e-4), (step, i)
        if step == steps:
            break
        chosen = logits.argmax(dim=1)
        for seq, token in zip(sequences, chosen.tolist(), strict=True):
            seq.append(token)
        with one_thread():
            logits = lean.decode(chosen, positions, int(positions.max()) + 1)
        positions += 1
    assert (lean._attention is not None) == fused  # the attention kernel was compiled: the fused path ran


@pytest.mark.parametrize("fused", [True, False])
def test_qwen2_matches_hugging_face(hf_model, prompts, one_thread, fused: bool) -> None:
    check_against_hf(hf_model, prompts, one_thread, fused)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("family", ["llama", "qwen3", "mistral"])
def test_other_families_match_hugging_face(family: str, one_thread, fused: bool) -> None:
    check_against_hf(small_model(family), [[5, 9, 13, 2, 77], [1], [40, 41, 42]], one_thread, fused)


def test_load_replaces_weights_like_a_fresh_conversion(hf_model) -> None:
    other = small_model("llama")
    lean = LeanCausalLM(other)
    state = {name: torch.randn_like(t) * 0.1 for name, t in other.state_dict().items()}
    lean.load_many(state.items())
    other.load_state_dict(state)
    fresh = LeanCausalLM(other)
    for before, after in zip(lean.layers, fresh.layers, strict=True):
        for key, tensor in before.items():
            if tensor is not None:
                assert torch.equal(tensor, after[key]), key


def test_unknown_or_misshapen_weights_are_refused(hf_model) -> None:
    lean = LeanCausalLM(hf_model)
    with pytest.raises(KeyError, match="model.layers.99"):
        lean.load("model.layers.99.mlp.up_proj.weight", torch.zeros(1))
    with pytest.raises(KeyError, match="not_a_weight"):
        lean.load("model.not_a_weight", torch.zeros(1))
    with pytest.raises(ValueError, match="expected shape"):
        lean.load("model.layers.0.mlp.up_proj.weight", torch.zeros(3, 3))


def test_unsupported_architecture_is_named() -> None:
    import transformers

    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)
    with pytest.raises(NotImplementedError, match="'gpt2'"):
        LeanCausalLM(transformers.AutoModelForCausalLM.from_config(config))
