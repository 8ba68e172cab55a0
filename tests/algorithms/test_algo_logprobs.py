"""token_logprobs and entropy_from_logits: hand values, and equality with the naive log_softmax route."""

import math

import pytest
import torch

from deepscaler.algorithms import entropy_from_logits, token_logprobs


def naive_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def test_hand_values_with_temperature():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # probs 1/4, 3/4
    tokens = torch.tensor([1])
    assert token_logprobs(logits, tokens).item() == pytest.approx(math.log(0.75))
    # T = 0.5 squares the odds: 1/10, 9/10
    assert token_logprobs(logits, tokens, 0.5).item() == pytest.approx(math.log(0.9))
    uniform, tokens = torch.zeros(2, 3, 8), torch.zeros(2, 3, dtype=torch.long)
    torch.testing.assert_close(token_logprobs(uniform, tokens), torch.full((2, 3), -math.log(8)))
    torch.testing.assert_close(entropy_from_logits(uniform, 0.7), torch.full((2, 3), math.log(8)))


@pytest.mark.parametrize("chunk_tokens", [None, 1, 4])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_matches_naive_forward_and_backward(chunk_tokens, temperature):
    gen = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(3, 5, 11, generator=gen)).requires_grad_()
    tokens = torch.randint(0, 11, (3, 5), generator=gen, dtype=torch.int32)  # int32 ids work too
    weights = torch.randn(3, 5, generator=gen)
    ours = token_logprobs(logits, tokens, temperature, chunk_tokens=chunk_tokens)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    naive = naive_logprobs(logits, tokens.long(), temperature)
    (grad_naive,) = torch.autograd.grad((naive * weights).sum(), logits)
    torch.testing.assert_close(ours, naive, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grad_ours, grad_naive, atol=1e-6, rtol=1e-6)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, 6, (4,), generator=gen)
    assert torch.autograd.gradcheck(lambda z: token_logprobs(z, tokens, 0.8, chunk_tokens=3), (logits,))


def test_bfloat16_logits_give_float32_logprobs_and_bf16_grads():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 9, generator=gen).to(torch.bfloat16).requires_grad_()
    tokens = torch.randint(0, 9, (2, 4), generator=gen)
    ours = token_logprobs(logits, tokens, 0.9)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, naive_logprobs(logits, tokens, 0.9))
    ours.sum().backward()
    assert logits.grad.dtype == torch.bfloat16


def test_no_grad_path_and_validation():
    logits, tokens = torch.randn(2, 3, 5), torch.zeros(2, 3, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(token_logprobs(logits, tokens), naive_logprobs(logits, tokens, 1.0))
    with pytest.raises(ValueError):
        token_logprobs(logits, tokens, 0.0)
    with pytest.raises(ValueError):
        token_logprobs(logits, tokens[:, :2])
    with pytest.raises(ValueError):
        token_logprobs(logits, tokens, chunk_tokens=0)


@pytest.mark.parametrize("chunk_tokens", [None, 2])
def test_entropy_matches_naive_and_is_differentiable(chunk_tokens):
    gen = torch.Generator().manual_seed(3)
    logits = (2 * torch.randn(3, 4, 7, generator=gen)).requires_grad_()
    ours = entropy_from_logits(logits, 0.7, chunk_tokens=chunk_tokens)
    p = torch.softmax(logits / 0.7, -1)
    naive = -(p * torch.log_softmax(logits / 0.7, -1)).sum(-1)
    torch.testing.assert_close(ours, naive)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_naive,) = torch.autograd.grad(naive.sum(), logits)
    torch.testing.assert_close(g_ours, g_naive)
    assert entropy_from_logits(torch.zeros(0, 5)).shape == (0,)
