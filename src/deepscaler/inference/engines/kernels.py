"""Fused CPU kernels for the decode step, compiled by Numba (float32 only).

A decode step on a small model is a few large matmuls and a long tail of short operators; in the
middle of a step, between matmuls that fill the caches, each short PyTorch operator costs several
microseconds of dispatch and cache misses whatever its size (RMSNorm alone is seven of them). These
kernels each do in one call what PyTorch does in several: RMSNorm; SiLU(gate) * up; the rotary
rotation of q and k with the new keys and values written into the KV cache; and inverse-CDF sampling
of a batch of logits. The matmuls stay in PyTorch (MKL is near this CPU's peak there); attention,
which Numba's auto-vectorised loops left far from the memory bound, is LLVM IR (attention.py).

The kernels take NumPy views of torch tensors (zero copy) and write their results in place. They are
compiled on first use and cached on disk, so later processes load them in milliseconds.
Reassociated sums let LLVM vectorise; results then differ from PyTorch's in the last bits, as PyTorch's
own vectorised reductions differ from a sequential sum. `error_model="numpy"` drops Python's
zero-division checks, which would otherwise keep every loop with a division scalar.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.extending import intrinsic

_FAST_MATH = {"nsz", "arcp", "contract", "reassoc"}
_LANES = 16  # running maxima kept while a row's maximum is found (one AVX-512 register)
_BLOCK = 64  # tokens summed at once while sampling walks the distribution
# exp(r) = 1 + r + r^2 * (this polynomial in r, highest power first) on [-ln2/2, ln2/2]: Cephes' expf
EXP_POLYNOMIAL = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


def _kernel(function):
    """A compiled, disk-cached kernel (NaN-free inputs assumed, as in any finite forward pass)."""
    options = dict(fastmath=_FAST_MATH | {"nnan"}, nogil=True, error_model="numpy")
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # no writable place for Numba's cache (read-only install and home): compile per process
        return numba.njit(**options)(function)


def _inline(function):
    """A helper compiled into the kernels that call it."""
    return numba.njit(fastmath=_FAST_MATH | {"nnan"}, inline="always", error_model="numpy")(function)


@intrinsic
def _float_from_bits(typing_context, bits):
    """The float32 whose IEEE-754 bit pattern is the int32 `bits` (a register reinterpretation)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return numba.types.float32(numba.types.int32), codegen


@_inline
def _exp(x):
    """exp of a float32 within 1.2e-7 relative error, in plain arithmetic that LLVM vectorises (Numba's
    math.exp is a scalar library call): exp(x) = 2^n * exp(r), r = x - n ln 2 in [-ln2/2, ln2/2],
    exp(r) by its degree-7 polynomial (Cephes' expf coefficients), 2^n built from its exponent bits."""
    x = min(max(x, np.float32(-87.3)), np.float32(88.3))  # 2^n stays a normal float: n in [-126, 127]
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    # ln 2 in two parts, so that n * ln 2 is exact enough for |n| up to 127
    r = x - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
    c0, c1, c2, c3, c4, c5 = EXP_POLYNOMIAL
    p = np.float32(c0) * r + np.float32(c1)
    p = (((p * r + np.float32(c2)) * r + np.float32(c3)) * r + np.float32(c4)) * r + np.float32(c5)
    p = p * (r * r) + r + np.float32(1.0)
    return p * _float_from_bits(np.int32(n + 127) << np.int32(23))


@_inline
def _row_max(row, lanes):
    """max(row), kept in _LANES running maxima: LLVM vectorises that, not a single running maximum."""
    whole = row.shape[0] - row.shape[0] % _LANES
    for k in range(_LANES):
        lanes[k] = row[k % row.shape[0]]
    for start in range(0, whole, _LANES):
        for k in range(_LANES):
            if row[start + k] > lanes[k]:
                lanes[k] = row[start + k]
    top = lanes[0]
    for k in range(_LANES):
        top = max(top, lanes[k])
    for j in range(whole, row.shape[0]):
        top = max(top, row[j])
    return top


@_kernel
def rms_norm(x, weight, eps, out):
    """out[i] = x[i] / sqrt(mean(x[i]^2) + eps) * weight, for rows x [n, hidden]."""
    rows, width = x.shape
    for i in range(rows):
        row, target = x[i], out[i]
        total = np.float32(0.0)
        for j in range(width):
            total += row[j] * row[j]
        scale = np.float32(1.0 / math.sqrt(total / width + eps))
        for j in range(width):
            target[j] = row[j] * scale * weight[j]


@_kernel
def silu_and_multiply(gate_up, out):
    """out = silu(gate) * up, for rows gate_up [n, 2 * inter] holding gate then up, out [n, inter]."""
    inter = out.shape[1]
    for i in range(out.shape[0]):
        gate, up, target = gate_up[i, :inter], gate_up[i, inter:], out[i]
        for j in range(inter):
            target[j] = gate[j] * up[j] / (np.float32(1.0) + _exp(-gate[j]))


@_kernel
def rotate_and_store(qkv, rotation, positions, k_cache, v_cache, n_q, n_kv):
    """Rotate q and k of each row of qkv in place and write its k and v into the KV cache.

    qkv [n, (n_q + 2 n_kv) * d] holds q heads, then k heads, then v heads, each head's dims in
    interleaved rotary pairs; row i is the token at positions[i] of cache slot i.
    rotation [max_len, d / 2, 2] holds (cos, sin) per position and pair, scaled as the model's rotary
    embedding scales them; caches are [slots, n_kv, max_len, d].
    """
    d = k_cache.shape[3]
    for i in range(qkv.shape[0]):
        p = positions[i]
        cos_sin = rotation[p]
        for head in range(n_q + n_kv):
            pairs = qkv[i, head * d : (head + 1) * d]
            for j in range(d // 2):
                a, b = pairs[2 * j], pairs[2 * j + 1]
                pairs[2 * j] = a * cos_sin[j, 0] - b * cos_sin[j, 1]
                pairs[2 * j + 1] = a * cos_sin[j, 1] + b * cos_sin[j, 0]
        for head in range(n_kv):
            keys = qkv[i, (n_q + head) * d : (n_q + head + 1) * d]
            values = qkv[i, (n_q + n_kv + head) * d : (n_q + n_kv + head + 1) * d]
            k_row, v_row = k_cache[i, head, p], v_cache[i, head, p]
            for j in range(d):
                k_row[j] = keys[j]
                v_row[j] = values[j]


@_kernel
def sample_rows(logits, inverse_temperature, uniforms, scratch, tokens, logprobs):
    """One token per row of float32 logits [n, vocab], drawn from softmax(logits * inverse_temperature)
    by inverse CDF: the first token whose running (float64) mass exceeds uniforms[i] times the total.
    A row with inverse_temperature 0 is greedy (its first largest logit). logprobs[i] is the token's
    log-probability at the row's temperature (at temperature 1 for greedy rows). scratch: [vocab].
    """
    vocab = logits.shape[1]
    lanes = np.empty(_LANES, dtype=np.float32)
    for i in range(logits.shape[0]):
        row = logits[i]
        top = _row_max(row, lanes)
        greedy = inverse_temperature[i] == 0
        scale = np.float32(1.0) if greedy else inverse_temperature[i]
        for j in range(vocab):
            scratch[j] = _exp((row[j] - top) * scale)
        total = 0.0
        for j in range(vocab):
            total += scratch[j]
        if greedy:
            token = 0
            while row[token] != top:
                token += 1
        else:
            threshold = uniforms[i] * total
            running, start = 0.0, 0
            # Whole blocks first (vectorised sums), then token by token inside the block that crosses.
            while start + _BLOCK <= vocab:
                block = 0.0
                for j in range(start, start + _BLOCK):
                    block += scratch[j]
                if running + block > threshold:
                    break
                running += block
                start += _BLOCK
            token = vocab - 1
            for j in range(start, vocab):
                running += scratch[j]
                if running > threshold:
                    token = j
                    break
        tokens[i] = token
        logprobs[i] = (row[token] - top) * scale - math.log(total)
