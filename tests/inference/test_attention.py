"""The compiled decode attention against masked scaled-dot-product attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepscaler.inference.engines.attention import DecodeAttention, supports

pytestmark = pytest.mark.plain_install  # also run in `make demo`'s environment


def masked_sdpa(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, positions: torch.Tensor,
                n_q: int) -> torch.Tensor:
    (n,), (_, n_kv, max_len, d) = positions.shape, k_cache.shape
    hidden = torch.arange(max_len) > positions.view(n, 1, 1, 1)
    return F.scaled_dot_product_attention(
        qkv[:, : n_q * d].view(n, n_kv, n_q // n_kv, d), k_cache[:n], v_cache[:n],
        attn_mask=torch.zeros(n, 1, 1, max_len).masked_fill(hidden, -torch.inf), scale=1.0,
    ).reshape(n, -1)


# (d, n_q, n_kv): plain multi-head; groups of 2 and 3; the tiny preset's layout; DeepScaleR-1.5B's (128, 12, 2)
@pytest.mark.parametrize(("d", "n_q", "n_kv"), [(16, 4, 4), (16, 4, 2), (16, 6, 2), (64, 4, 2), (128, 2, 1),
                                                (128, 12, 2)])
def test_attention_matches_masked_sdpa_with_a_length_per_row(d: int, n_q: int, n_kv: int) -> None:
    n, max_len = 5, 37  # a length that is not a whole number of vectors
    torch.manual_seed(d + n_q)
    qkv = torch.randn(n, (n_q + 2 * n_kv) * d) * d**-0.25
    k_cache, v_cache = torch.randn(n + 1, n_kv, max_len, d) * 2, torch.randn(n + 1, n_kv, max_len, d)
    # a row at its first token, one at the end of its slot, one across a vector boundary exactly
    positions = torch.tensor([0, 7, 36, 15, 16])
    out = torch.full((n, n_q * d), float("nan"))
    DecodeAttention(d, n_q, n_kv)(qkv, k_cache, v_cache, positions, out)
    torch.testing.assert_close(out, masked_sdpa(qkv, k_cache, v_cache, positions, n_q), rtol=1e-5, atol=1e-5)
    assert torch.equal(out[0], v_cache[0, :, 0].repeat_interleave(n_q // n_kv, dim=0).flatten())  # one key


def test_rows_read_their_own_slot_and_leave_the_rest_of_the_output_alone() -> None:
    d, n_q, n_kv = 32, 4, 2
    k_cache, v_cache = torch.randn(3, n_kv, 20, d), torch.randn(3, n_kv, 20, d)
    qkv = torch.randn(2, 2 * (n_q + 2 * n_kv) * d)[:, : (n_q + 2 * n_kv) * d]  # a strided view, as in a step
    out = torch.full((3, n_q * d), -7.0)
    positions = torch.tensor([19, 3])
    DecodeAttention(d, n_q, n_kv)(qkv, k_cache, v_cache, positions, out)
    torch.testing.assert_close(out[:2], masked_sdpa(qkv, k_cache[:2], v_cache[:2], positions, n_q),
                               rtol=1e-5, atol=1e-5)
    assert torch.equal(out[2], torch.full((n_q * d,), -7.0))  # no third row was asked for


def test_scratch_grows_with_the_cache_and_odd_head_sizes_are_refused() -> None:
    attend = DecodeAttention(16, 2, 1)
    for max_len in (8, 100):
        k_cache, v_cache = torch.randn(1, 1, max_len, 16), torch.randn(1, 1, max_len, 16)
        qkv, out = torch.randn(1, 4 * 16), torch.empty(1, 2 * 16)
        attend(qkv, k_cache, v_cache, torch.tensor([max_len - 1]), out)
        torch.testing.assert_close(out, masked_sdpa(qkv, k_cache, v_cache, torch.tensor([max_len - 1]), 2))
        assert attend.scores.shape == (2, -(-max_len // 16) * 16)
    assert not supports(40) and supports(80)
    with pytest.raises(ValueError, match="head size 40"):
        DecodeAttention(40, 2, 1)
