"""The fused decode kernels against the PyTorch operators they replace, on random inputs with golden checks."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepscaler.inference.engines import kernels

pytestmark = pytest.mark.plain_install  # also run in `make demo`'s environment


@numba.njit
def _exp_of(values, out):
    for i in range(values.shape[0]):
        out[i] = kernels._exp(values[i])


def test_exp_is_within_two_float32_ulps_over_the_whole_range() -> None:
    x = torch.linspace(-87.0, 88.0, 200_001)
    out = np.empty(x.shape[0], dtype=np.float32)
    _exp_of(x.numpy(), out)
    exact = torch.exp(x.double())
    relative = (torch.from_numpy(out).double() - exact).abs() / exact
    assert float(relative.max()) < 2 * torch.finfo(torch.float32).eps
    _exp_of(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32), out[:3])
    assert out[0] < 1e-37 and out[1] == 1.0 and np.isfinite(out[2])  # clamped, never inf or NaN


def test_rms_norm_matches_torch() -> None:
    x, weight = torch.randn(7, 96) * 3, torch.rand(96) + 0.5
    out = torch.empty_like(x)
    kernels.rms_norm(x.numpy(), weight.numpy(), 1e-6, out.numpy())
    torch.testing.assert_close(out, F.rms_norm(x, (96,), weight, 1e-6), rtol=1e-6, atol=1e-6)


def test_silu_and_multiply_matches_torch_even_far_out() -> None:
    gate_up = torch.randn(5, 2 * 40) * 4
    gate_up[0, :4] = torch.tensor([-200.0, -90.0, 90.0, 200.0])  # exp(-gate) over- and underflows
    out = torch.empty(5, 40)
    kernels.silu_and_multiply(gate_up.numpy(), out.numpy())
    expected = F.silu(gate_up[:, :40]) * gate_up[:, 40:]
    torch.testing.assert_close(out, expected, rtol=2e-6, atol=1e-6)


def test_rotate_and_store_rotates_q_and_k_and_fills_only_the_new_cache_rows() -> None:
    n, n_q, n_kv, d, max_len = 3, 4, 2, 8, 10
    qkv = torch.randn(n, (n_q + 2 * n_kv) * d)
    positions = torch.tensor([0, 4, 9])
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), torch.rand(d // 2))
    freqs = torch.polar(torch.full_like(angles, 1.3), angles)  # scaled, as yarn scales them
    k_cache, v_cache = torch.zeros(n, n_kv, max_len, d), torch.zeros(n, n_kv, max_len, d)
    expected = qkv.clone()
    pairs = torch.view_as_complex(expected[:, : (n_q + n_kv) * d].reshape(n, n_q + n_kv, d // 2, 2).contiguous())
    expected[:, : (n_q + n_kv) * d] = torch.view_as_real(pairs * freqs[positions].unsqueeze(1)).flatten(1)
    rotation = torch.view_as_real(freqs).contiguous()
    kernels.rotate_and_store(qkv.numpy(), rotation.numpy(), positions.numpy(), k_cache.numpy(), v_cache.numpy(),
                             n_q, n_kv)
    torch.testing.assert_close(qkv, expected)
    for i, p in enumerate(positions.tolist()):
        assert torch.equal(k_cache[i, :, p], qkv[i, n_q * d : (n_q + n_kv) * d].view(n_kv, d))
        assert torch.equal(v_cache[i, :, p], qkv[i, (n_q + n_kv) * d :].view(n_kv, d))
    written = torch.zeros(n, max_len, dtype=torch.bool)
    written[torch.arange(n), positions] = True
    assert not k_cache.abs().sum(dim=(1, 3))[~written].any()  # nothing else touched
    assert not v_cache.abs().sum(dim=(1, 3))[~written].any()


def torch_inverse_cdf(logits: torch.Tensor, temperature: float, uniforms: torch.Tensor) -> torch.Tensor:
    cdf = torch.softmax(logits / temperature, dim=1).double().cumsum(dim=1)
    return torch.searchsorted(cdf, uniforms.unsqueeze(1) * cdf[:, -1:], right=True).squeeze(1)


def sample(logits: torch.Tensor, inverse_temperature: list[float], uniforms: torch.Tensor):
    n, vocab = logits.shape
    tokens, logprobs = torch.empty(n, dtype=torch.long), torch.empty(n)
    kernels.sample_rows(logits.numpy(), np.array(inverse_temperature, dtype=np.float32), uniforms.numpy(),
                        np.empty(vocab, dtype=np.float32), tokens.numpy(), logprobs.numpy())
    return tokens, logprobs


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_sample_rows_is_the_inverse_cdf_of_the_tempered_softmax(temperature: float) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 300, generator=generator) * 3
    logits[0, :] = -1e4  # a row whose mass is one token that is not the first
    logits[0, 123] = 50.0
    uniforms = torch.rand(64, dtype=torch.float64, generator=generator)
    uniforms[1], uniforms[2] = 0.0, 1 - 1e-12  # the two ends of the distribution
    tokens, logprobs = sample(logits, [1 / temperature] * 64, uniforms)
    assert torch.equal(tokens, torch_inverse_cdf(logits, temperature, uniforms))
    assert tokens[0] == 123 and tokens[1] == 0
    expected = torch.log_softmax(logits / temperature, dim=1).gather(1, tokens.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(logprobs, expected, rtol=1e-5, atol=1e-5)


def test_sample_rows_greedy_rows_take_the_first_largest_logit() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0, 2.0], [5.0, -1.0, 0.0, 4.0]])
    tokens, logprobs = sample(logits, [0.0, 0.0], torch.tensor([0.99, 0.99], dtype=torch.float64))
    assert tokens.tolist() == [1, 0]
    torch.testing.assert_close(logprobs, torch.log_softmax(logits, dim=1)[[0, 1], [1, 0]])


def test_sample_rows_frequencies_follow_the_probabilities() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(20_000, 1).contiguous()
    uniforms = torch.rand(20_000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tokens, _ = sample(logits, [1.0] * 20_000, uniforms)
    frequencies = torch.bincount(tokens, minlength=4) / 20_000
    torch.testing.assert_close(frequencies, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.012, rtol=0)
