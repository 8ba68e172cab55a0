"""Decode attention over the KV cache, written as explicitly vectorised LLVM IR and compiled per model shape.

A decode step's attention reads each sequence's whole cache slot for one query token: about 0.5 KB of
keys and values per (position, kv head) at head size 64, every step, so it should run at the speed
memory delivers the cache. Written in Numba, LLVM's auto-vectoriser kept the output accumulators in
memory (it cannot prove they do not alias the cache) and reduced each dot product on its own, which
made the kernel compute-bound at about 1.5 times the memory floor (one-off timing). Here the vectors
are explicit: the query heads and output accumulators of a kv head live in registers as <16 x float>
values, and the head size, group size and head count are constants of the compiled code.

Per (row, kv head) the kernel makes three passes, each a stream: scores q . k for every position with
the running maximum; exp(score - max) 16 positions at a time (the same polynomial as kernels._exp),
summed; then the weighted sum of values, divided by that sum. llvmlite (Numba's own LLVM binding)
builds and JIT-compiles it in 0.1-0.2 s per process; it is called through ctypes with raw pointers.
"""

from __future__ import annotations

import ctypes
import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager

import llvmlite.binding as llvm
import llvmlite.ir as ir
import torch

from deepscaler.inference.engines.kernels import EXP_POLYNOMIAL

LANES = 16  # floats per vector: one AVX-512 register (LLVM splits it where vectors are narrower)
_PREFETCH_POSITIONS = 4  # how far ahead of the position being read the cache is prefetched
_F32, _I32, _I64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
_VECTOR, _LANE_IDS = ir.VectorType(_F32, LANES), ir.VectorType(_I32, LANES)
_FLOATS, _BYTES = _F32.as_pointer(), ir.IntType(8).as_pointer()


def supports(head_dim: int) -> bool:
    return head_dim % LANES == 0


class _Emitter:
    """An IRBuilder with the few vector idioms the kernel is made of."""

    def __init__(self, function: ir.Function) -> None:
        self.function = function
        self.b = ir.IRBuilder(function.append_basic_block("entry"))

    def intrinsic(self, name: str, result: ir.Type, *args: ir.Type) -> ir.Function:
        module = self.function.module
        return module.globals.get(name) or ir.Function(module, ir.FunctionType(result, args), name)

    def call(self, name: str, *args: ir.Value) -> ir.Value:
        """Call an intrinsic whose result has its first argument's type (maxnum, minnum, floor)."""
        return self.b.call(self.intrinsic(name, args[0].type, *(a.type for a in args)), args)

    @staticmethod
    def i64(value: int) -> ir.Constant:
        return ir.Constant(_I64, value)

    @staticmethod
    def splat(value: float) -> ir.Constant:
        return ir.Constant(_VECTOR, [value] * LANES)

    def variable(self, ty: ir.Type, initial: ir.Value | None = None) -> ir.AllocaInstr:
        """A stack slot, declared in the entry block so that LLVM promotes it to a register."""
        here = self.b.block
        self.b.position_at_start(self.function.entry_basic_block)
        slot = self.b.alloca(ty)
        self.b.position_at_end(here)
        if initial is not None:
            self.b.store(initial, slot)
        return slot

    @contextmanager
    def loop(self, start: ir.Value, stop: ir.Value, step: int = 1) -> Iterator[ir.Value]:
        """for counter in range(start, stop, step): the body is emitted inside the with block."""
        counter = self.variable(_I64, start)
        head, body, done = (self.function.append_basic_block(n) for n in ("head", "body", "done"))
        self.b.branch(head)
        self.b.position_at_end(head)
        value = self.b.load(counter)
        self.b.cbranch(self.b.icmp_signed("<", value, stop), body, done)
        self.b.position_at_end(body)
        yield value
        self.b.store(self.b.add(value, self.i64(step)), counter)
        self.b.branch(head)
        self.b.position_at_end(done)

    def load(self, base: ir.Value, offset: ir.Value) -> ir.Value:
        return self.b.load(self.b.bitcast(self.b.gep(base, [offset]), _VECTOR.as_pointer()), align=4)

    def store(self, value: ir.Value, base: ir.Value, offset: ir.Value) -> None:
        self.b.store(value, self.b.bitcast(self.b.gep(base, [offset]), _VECTOR.as_pointer()), align=4)

    def prefetch(self, base: ir.Value, offset: ir.Value) -> None:
        address = self.b.bitcast(self.b.gep(base, [offset]), _BYTES)
        read, keep_in_all_caches, data = (ir.Constant(_I32, v) for v in (0, 3, 1))
        self.b.call(self.intrinsic("llvm.prefetch.p0", ir.VoidType(), _BYTES, _I32, _I32, _I32),
                    [address, read, keep_in_all_caches, data])

    def broadcast(self, scalar: ir.Value) -> ir.Value:
        ty = ir.VectorType(scalar.type, LANES)
        one = self.b.insert_element(ir.Constant(ty, ir.Undefined), scalar, ir.Constant(_I32, 0))
        return self.b.shuffle_vector(one, ir.Constant(ty, ir.Undefined), ir.Constant(_LANE_IDS, [0] * LANES))

    def sum(self, vector: ir.Value) -> ir.Value:
        """The sum of a vector's lanes, by halving (a fixed order, so results are reproducible)."""
        width = LANES
        while width > 1:
            width //= 2
            halves = [ir.Constant(ir.VectorType(_I32, width), list(range(s, s + width))) for s in (0, width)]
            vector = self.b.fadd(*(self.b.shuffle_vector(vector, vector, h) for h in halves))
        return self.b.extract_element(vector, ir.Constant(_I32, 0))

    def exp(self, x: ir.Value) -> ir.Value:
        """exp on 16 lanes: the algorithm and coefficients of kernels._exp, clamped the same way."""
        b, c = self.b, self.splat
        x = self.call("llvm.minnum.v16f32", self.call("llvm.maxnum.v16f32", x, c(-87.3)), c(88.3))
        n = self.call("llvm.floor.v16f32", b.fadd(b.fmul(x, c(1.44269504088896341)), c(0.5)))
        r = b.fadd(b.fsub(x, b.fmul(n, c(0.693359375))), b.fmul(n, c(2.12194440e-4)))
        p = c(EXP_POLYNOMIAL[0])
        for coefficient in EXP_POLYNOMIAL[1:]:
            p = b.fadd(b.fmul(p, r), c(coefficient))
        p = b.fadd(b.fadd(b.fmul(p, b.fmul(r, r)), r), c(1.0))
        exponent = b.shl(b.add(b.fptosi(n, _LANE_IDS), ir.Constant(_LANE_IDS, [127] * LANES)),
                         ir.Constant(_LANE_IDS, [23] * LANES))
        return b.fmul(p, b.bitcast(exponent, _VECTOR))


# attend(qkv, qkv_row_stride, k_cache, v_cache, slot_stride, head_stride, positions, rows, scores,
#        scores_row_stride, out, out_row_stride); strides in floats.
_ARGUMENTS = (_FLOATS, _I64, _FLOATS, _FLOATS, _I64, _I64, _I64.as_pointer(), _I64, _FLOATS, _I64, _FLOATS, _I64)


def build(head_dim: int, group: int, n_kv: int) -> ir.Module:
    """The IR of attend() for one shape (see DecodeAttention for what it computes)."""
    module = ir.Module(name=f"attend_{head_dim}_{group}_{n_kv}")
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), _ARGUMENTS), "attend")
    qkv, qkv_stride, k_cache, v_cache, slot_stride, head_stride, positions, rows, scores, scores_stride, out, \
        out_stride = function.args
    e = _Emitter(function)
    b, i64, d, parts = e.b, e.i64, head_dim, range(head_dim // LANES)
    fma = e.intrinsic("llvm.fma.v16f32", _VECTOR, _VECTOR, _VECTOR, _VECTOR)
    tops = [e.variable(_F32) for _ in range(group)]
    totals = [e.variable(_VECTOR) for _ in range(group)]
    sums = [[e.variable(_VECTOR) for _ in parts] for _ in range(group)]
    lane = ir.Constant(_LANE_IDS, list(range(LANES)))
    with e.loop(i64(0), rows) as row:
        span = b.add(b.load(b.gep(positions, [row])), i64(1))
        with e.loop(i64(0), i64(n_kv)) as kv_head:
            slot = b.add(b.mul(row, slot_stride), b.mul(kv_head, head_stride))
            keys, values = b.gep(k_cache, [slot]), b.gep(v_cache, [slot])
            # the group's query heads, which share this kv head, and where their outputs go
            first = b.add(b.mul(row, qkv_stride), b.mul(kv_head, i64(group * d)))
            queries = [[e.load(qkv, b.add(first, i64(c * d + p * LANES))) for p in parts] for c in range(group)]
            weights = [b.gep(scores, [b.mul(i64(c), scores_stride)]) for c in range(group)]
            for top in tops:
                b.store(ir.Constant(_F32, float("-inf")), top)
            with e.loop(i64(0), span) as t:  # scores, and their maximum
                at = b.mul(t, i64(d))
                e.prefetch(keys, b.add(at, i64(_PREFETCH_POSITIONS * d)))
                key = [e.load(keys, b.add(at, i64(p * LANES))) for p in parts]
                for query, weight_row, top in zip(queries, weights, tops):
                    products = b.fmul(query[0], key[0])
                    for p in parts[1:]:
                        products = b.call(fma, [query[p], key[p], products])
                    score = e.sum(products)
                    b.store(score, b.gep(weight_row, [t]))
                    b.store(e.call("llvm.maxnum.f32", b.load(top), score), top)
            for weight_row, top, total in zip(weights, tops, totals):  # softmax numerators and their sum
                b.store(e.splat(0.0), total)
                top = e.broadcast(b.load(top))
                with e.loop(i64(0), span, LANES) as start:
                    numerators = e.exp(b.fsub(e.load(weight_row, start), top))
                    inside = b.icmp_signed("<", lane, e.broadcast(b.trunc(b.sub(span, start), _I32)))
                    numerators = b.select(inside, numerators, e.splat(0.0))  # lanes past the span
                    e.store(numerators, weight_row, start)
                    b.store(b.fadd(b.load(total), numerators), total)
            for head_sums in sums:
                for s in head_sums:
                    b.store(e.splat(0.0), s)
            with e.loop(i64(0), span) as t:  # numerator-weighted sum of values
                at = b.mul(t, i64(d))
                e.prefetch(values, b.add(at, i64(_PREFETCH_POSITIONS * d)))
                value = [e.load(values, b.add(at, i64(p * LANES))) for p in parts]
                for weight_row, head_sums in zip(weights, sums):
                    weight = e.broadcast(b.load(b.gep(weight_row, [t])))
                    for p, s in zip(parts, head_sums):
                        b.store(b.call(fma, [weight, value[p], b.load(s)]), s)
            first = b.add(b.mul(row, out_stride), b.mul(kv_head, i64(group * d)))
            for c, (total, head_sums) in enumerate(zip(totals, sums)):
                inverse = e.broadcast(b.fdiv(ir.Constant(_F32, 1.0), e.sum(b.load(total))))
                for p, s in zip(parts, head_sums):
                    e.store(b.fmul(b.load(s), inverse), out, b.add(first, i64(c * d + p * LANES)))
    b.ret_void()
    return module


@functools.cache
def _compile(head_dim: int, group: int, n_kv: int):
    """(JIT engine, callable) for one shape; the engine owns the code, so it is kept alongside."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # 512-bit vectors: LLVM's tuning for some AVX-512 CPUs otherwise splits them in two.
    text = re.sub(r'(define void @"attend"\(.*\))', r"\1 #0", str(build(head_dim, group, n_kv)))
    text += '\nattributes #0 = { "min-legal-vector-width"="512" "prefer-vector-width"="512" }\n'
    module = llvm.parse_assembly(text)
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
    # speed_level alone: llvmlite 0.50 dropped size_level (whose default, 0, was what we asked for).
    passes = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=3))
    passes.getModulePassManager().run(module, passes)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    pointer, integer = ctypes.c_void_p, ctypes.c_int64
    signature = ctypes.CFUNCTYPE(None, *(integer if a == _I64 else pointer for a in _ARGUMENTS))
    return engine, signature(engine.get_function_address("attend"))


class DecodeAttention:
    """Attention of one decode token per row over its own KV-cache slot, for a model's head layout.

    Call with qkv [n, >= n_q * d] starting with the (rotated, pre-scaled) query heads, float32 caches
    [slots, n_kv, max_len, d] (contiguous), positions [n] int64 (row i attends to positions
    0..positions[i] of slot i; each below max_len, which is not checked) and out [n, n_q * d]; all on
    the CPU. Needs head_dim % 16 == 0.
    """

    def __init__(self, head_dim: int, n_q: int, n_kv: int) -> None:
        if not supports(head_dim):
            raise ValueError(f"head size {head_dim} is not a multiple of {LANES}")
        self.group = n_q // n_kv
        self._engine, self._attend = _compile(head_dim, self.group, n_kv)
        self.scores = torch.empty(0, dtype=torch.float32)  # scratch: [group, max_len rounded up to whole vectors]

    def __call__(self, qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 positions: torch.Tensor, out: torch.Tensor) -> None:
        _, n_kv, max_len, d = k_cache.shape
        padded = -(-max_len // LANES) * LANES
        if self.scores.shape[-1] < padded:
            self.scores = torch.empty(self.group, padded, dtype=torch.float32)
        self._attend(qkv.data_ptr(), qkv.stride(0), k_cache.data_ptr(), v_cache.data_ptr(),
                     n_kv * max_len * d, max_len * d, positions.data_ptr(), qkv.shape[0],
                     self.scores.data_ptr(), self.scores.shape[1], out.data_ptr(), out.stride(0))
