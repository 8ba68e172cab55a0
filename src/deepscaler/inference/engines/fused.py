"""Whether this process can run the compiled kernels (kernels.py, attention.py): decided once, never fatal.

The kernels only make the built-in engine faster, and Numba and llvmlite change their APIs between
releases (llvmlite 0.50 dropped an argument attention.py used to pass). A version this code has not met
must cost speed, not a run. So the first caller imports the kernels, compiles each and runs it on a tiny
input, and checks the attention against PyTorch's; if anything fails, callers keep PyTorch's operators
and one warning says why (per process, and per head layout for the attention).
"""

from __future__ import annotations

import functools
import warnings
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F


def _fall_back(what: str, error: BaseException) -> None:
    warnings.warn(
        f"{what} cannot be used here ({type(error).__name__}: {error}); the built-in engine runs PyTorch's "
        "operators instead (slower; the same results to rounding)", RuntimeWarning, stacklevel=4,
    )


@functools.cache
def kernels() -> ModuleType | None:
    """engines/kernels.py with every kernel compiled for the array layouts the engine passes, or None."""
    try:
        from deepscaler.inference.engines import kernels as module

        _run_each_kernel(module)
    except Exception as error:  # any failure of an optional speed-up, import or compile, means "not here"
        _fall_back("The compiled decode kernels (Numba)", error)
        return None
    return module


def _run_each_kernel(module: ModuleType) -> None:
    """Compile every kernel for the dtypes and layouts the engine calls it with, on a tiny input."""
    n, n_q, n_kv, d, max_len, vocab = 2, 2, 1, 4, 3, 5
    f32 = np.float32
    x = np.ones((n, d), f32)
    module.rms_norm(x, np.ones(d, f32), 1e-6, np.empty_like(x))
    module.silu_and_multiply(np.ones((n, 2 * d), f32), np.empty((n, d), f32))
    cache = np.zeros((n, n_kv, max_len, d), f32)
    module.rotate_and_store(np.ones((n, (n_q + 2 * n_kv) * d), f32), np.ones((max_len, d // 2, 2), f32),
                            np.zeros(n, np.int64), cache, cache.copy(), n_q, n_kv)
    module.sample_rows(np.zeros((n, vocab), f32), np.ones(n, f32), np.full(n, 0.5), np.empty(vocab, f32),
                       np.empty(n, np.int64), np.empty(n, f32))


def decode_attention(head_dim: int, n_q: int, n_kv: int):
    """A fresh attention.DecodeAttention for this head layout, or None: for head sizes it does not take
    (quietly: that is by design) or when it cannot be compiled here (warned once per layout)."""
    if not _attention_works(head_dim, n_q, n_kv):
        return None
    from deepscaler.inference.engines.attention import DecodeAttention

    return DecodeAttention(head_dim, n_q, n_kv)


@functools.cache
def _attention_works(head_dim: int, n_q: int, n_kv: int) -> bool:
    try:
        from deepscaler.inference.engines import attention

        if not attention.supports(head_dim):
            return False
        _check_attention(attention.DecodeAttention(head_dim, n_q, n_kv), head_dim, n_q, n_kv)
    except Exception as error:
        _fall_back("The compiled decode attention (llvmlite)", error)
        return False
    return True


def _check_attention(attend, head_dim: int, n_q: int, n_kv: int) -> None:
    """One row attending to 3 cached positions, against PyTorch's attention: a compiler that builds
    wrong code must not go unnoticed."""
    length, generator = 3, torch.Generator().manual_seed(0)
    qkv = torch.randn(1, (n_q + 2 * n_kv) * head_dim, generator=generator)
    k_cache, v_cache = (torch.randn(1, n_kv, length, head_dim, generator=generator) for _ in range(2))
    out = torch.empty(1, n_q * head_dim)
    attend(qkv, k_cache, v_cache, torch.tensor([length - 1]), out)
    query = qkv[:, : n_q * head_dim].view(1, n_q, 1, head_dim)
    expected = F.scaled_dot_product_attention(query, k_cache, v_cache, scale=1.0, enable_gqa=True)
    if not torch.allclose(out, expected.reshape(1, -1), rtol=1e-4, atol=1e-5):
        raise ArithmeticError("its output differs from PyTorch's attention on a test input")
