"""The trainer's lean forward against Hugging Face's own, on small random models of every supported family: the
same log-probs and the same gradients on both routes (whole sequences and shared prompts), bfloat16 as close to
float32 as Hugging Face's autocast is, and the cases it must leave to Hugging Face."""

import random

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM

from deepscaler.trainer.lean_forward import LeanForward
from deepscaler.trainer.sequences import Sample, collate_responses, response_logprobs

PAD = 0
SIZES = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, pad_token_id=PAD)
FAMILIES = {
    "qwen2": (transformers.Qwen2Config, {}),  # q/k/v biases
    "qwen2-yarn": (transformers.Qwen2Config, {"rope_parameters": {"rope_type": "yarn", "factor": 2.0,
                                                                  "rope_theta": 10000.0}}),
    "qwen3": (transformers.Qwen3Config, {"head_dim": 8}),  # q/k norms
    "llama-tied-biased": (transformers.LlamaConfig, {"head_dim": 8, "tie_word_embeddings": True,
                                                     "attention_bias": True}),
    "mistral": (transformers.MistralConfig, {"head_dim": 8, "sliding_window": None}),
}


def make_model(family: str) -> torch.nn.Module:
    config_class, extra = FAMILIES[family]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_class(**SIZES, **extra), dtype=torch.float32).train()
    with torch.no_grad():  # random biases and norm weights, so a wrong order or a dropped term shows
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.5)
    return model


def make_samples(seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for group, length in enumerate((5, 9, 7)):
        prompt = [rng.randrange(1, 97) for _ in range(length)]
        for size in (1, 6, 11):
            samples.append(Sample(prompt, [rng.randrange(1, 97) for _ in range(size)], group))
    return samples


def logprobs_and_grads(model, samples, share, lean, dtype="float32"):
    model.zero_grad(set_to_none=True)
    batch = collate_responses(samples, PAD)
    logp = response_logprobs(model, samples, PAD, 0.7, dtype, share_prompts=share, lean=lean)[0] * batch["mask"]
    (logp * torch.randn(logp.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return logp.detach(), grads


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("share", [False, True], ids=["whole-sequences", "shared-prompts"])
def test_lean_forward_matches_hugging_face(family, share):
    model = make_model(family)
    assert LeanForward.supports(model)
    samples = make_samples()
    hf_logp, hf_grads = logprobs_and_grads(model, samples, share, lean=False)
    lean_logp, lean_grads = logprobs_and_grads(model, samples, share, lean=True)
    torch.testing.assert_close(lean_logp, hf_logp, atol=2e-5, rtol=1e-5)
    assert lean_grads.keys() == hf_grads.keys()
    for name, grad in hf_grads.items():
        if name != "model.embed_tokens.weight":  # every other parameter takes part, so every gradient is checked
            assert float(grad.abs().max()) > 0, name
        error, scale = float((lean_grads[name] - grad).abs().max()), float(grad.abs().max())
        assert error <= 1e-4 * scale, f"{name}: max difference {error:.3g} against max value {scale:.3g}"
    # The padding token's embedding row gets no gradient, as with Hugging Face's padding_idx (unless the
    # embedding is also the output projection).
    if not model.config.tie_word_embeddings:
        assert float(lean_grads["model.embed_tokens.weight"][PAD].abs().max()) == 0.0


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_bfloat16_is_as_close_to_float32_as_autocast_is(family):
    model = make_model(family)
    samples = make_samples(seed=1)
    exact, _ = logprobs_and_grads(model, samples, True, lean=False)
    autocast, _ = logprobs_and_grads(model, samples, True, lean=False, dtype="bfloat16")
    lean, _ = logprobs_and_grads(model, samples, True, lean=True, dtype="bfloat16")
    autocast_error = float((autocast - exact).abs().max())
    lean_error = float((lean - exact).abs().max())
    assert 0 < lean_error <= 2 * autocast_error, (lean_error, autocast_error)


def saved_tensor_count(model, samples):
    """Tensors autograd keeps for backward during one training forward (a checkpointed layer keeps only its inputs)."""
    count = 0

    def pack(tensor):
        nonlocal count
        count += 1
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        response_logprobs(model, samples, PAD, 0.7)
    return count


@pytest.mark.parametrize("family", ["qwen2", "llama-tied-biased"])
def test_gradient_checkpointing_keeps_the_lean_forward(family):
    """With the model's gradient checkpointing on, the lean forward checkpoints each layer: the same log-probs and
    gradients as without checkpointing, and far fewer tensors kept between forward and backward."""
    model = make_model(family)
    samples = make_samples()
    plain_logp, plain_grads = logprobs_and_grads(model, samples, False, lean=True)
    plain_saved = saved_tensor_count(model, samples)
    model.gradient_checkpointing_enable()
    assert LeanForward.supports(model) and LeanForward(model).checkpoint
    logp, grads = logprobs_and_grads(model, samples, False, lean=True)
    hf_logp, hf_grads = logprobs_and_grads(model, samples, False, lean=False)  # Hugging Face's checkpointing
    torch.testing.assert_close(logp, plain_logp, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logp, hf_logp, atol=2e-5, rtol=1e-5)
    assert grads.keys() == plain_grads.keys() == hf_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)
        error, scale = float((hf_grads[name] - grad).abs().max()), float(grad.abs().max())
        assert error <= 1e-4 * scale, f"{name}: max difference {error:.3g} against max value {scale:.3g}"
    assert saved_tensor_count(model, samples) < plain_saved / 2
    model.eval()  # as Hugging Face, checkpointing only while training
    assert not LeanForward(model).checkpoint


def test_unsupported_models_fall_back_to_hugging_face():
    model = make_model("qwen2")
    hook = model.model.layers[1].mlp.register_forward_pre_hook(lambda module, args: None)  # as FSDP's would be
    assert not LeanForward.supports(model)
    hook.remove()
    assert LeanForward.supports(model)
    windowed = AutoModelForCausalLM.from_config(transformers.MistralConfig(**SIZES, head_dim=8, sliding_window=16))
    assert not LeanForward.supports(windowed)
    gelu = AutoModelForCausalLM.from_config(transformers.Qwen2Config(**SIZES, hidden_act="gelu"))
    assert not LeanForward.supports(gelu)
    # The fallback still gives Hugging Face's numbers through the same entry point.
    samples = make_samples()
    with torch.no_grad():
        plain = response_logprobs(gelu, samples, PAD, 0.7, lean=True)[0]
        hf = response_logprobs(gelu, samples, PAD, 0.7, lean=False)[0]
    assert torch.equal(plain, hf)


def test_a_prefix_needs_a_mask():
    forward = LeanForward(make_model("qwen2"))
    ids = torch.tensor([[3, 4, 5]])
    _, cache = forward(ids, keep_cache=True)
    with pytest.raises(ValueError, match="needs an explicit mask"):
        forward(ids, prefix=cache)
