"""The memory model: peak bytes per GPU of a training step, as a pure function of the model's widths and the
settings that matter, term by term, each with the formula it counts from the trainer's code.

Notation: P parameters, L layers, H hidden width, Q = heads × head_dim, K = kv_heads × head_dim, I the MLP's
intermediate width, V the vocabulary, N tokens in one micro-batch, S the ranks parameters are sharded over (the GPU
count under FSDP, else 1). Byte widths: c the compute dtype (2 bfloat16, 4 float32), a attention's (float32 on a
CPU, whatever the compute dtype: trainer/lean_forward.py), r the residual stream's (float32, but bfloat16 when FSDP's
mixed-precision policy makes the parameters themselves bfloat16).

A step has three phases, and the peak is the largest:
- rollout: the trainer's persistent state (weights, Adam, reference, DDP buckets) beside vLLM's whole share;
- update, a micro-batch's backward once gradients are held (every micro-batch of an optimizer step but the first):
  persistent state + gradients + compute copies of the weights + activations + the LM head's blocks, beside what vLLM
  leaves (its share, or with sleep mode about 1 GiB). The terms are summed, though the LM head's backward and a
  layer's backward (its weight gradients) come one after the other: the sum errs high by the smaller of the two;
- optimizer step: persistent state + gradients + foreach AdamW's temporary (FSDP's sharded parameters need foreach).
The old- and reference-log-prob passes run without gradients and need less than the update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deepscaler.planner.architecture import ModelDims

GIB = 1024**3
# What vLLM keeps on a GPU while asleep at level 2 (weights and KV cache freed): its CUDA context and allocator's
# leftovers. And the trainer's own CUDA context (kernels, cuBLAS workspaces).
VLLM_ASLEEP_BYTES = 1 * GIB
CUDA_CONTEXT_BYTES = GIB // 2
# lm_head_logprobs works on blocks of 2**24 logits (algorithms/lm_head.py).
LOGIT_BLOCK = 1 << 24


@dataclass(frozen=True)
class Setup:
    """The settings a step's memory depends on (see plan.py for how a TrainConfig maps to them)."""

    gpus: int = 1
    strategy: str = "ddp"  # "ddp" replicates the model, "fsdp" shards it over the GPUs
    compute_dtype: str = "float32"  # parameters, gradients and Adam stay float32 either way
    checkpointing: bool = False  # each decoder layer recomputed in backward
    reference: str = "resident"  # "none" (kl_coef 0), "resident" (held on the GPU), "offload" (held on the host)
    device: str = "cuda"  # "cpu" for --check-on-cpu: no CUDA context, attention in float32
    vllm_share_bytes: float = 0.0  # gpu_memory_utilization × GPU memory (0: no colocated vLLM)
    vllm_sleeps: bool = False  # enable_sleep_mode: vLLM frees its share during the trainer's passes

    @property
    def shards(self) -> int:
        return self.gpus if self.strategy == "fsdp" else 1

    @property
    def mixed_precision(self) -> bool:
        """FSDP with bfloat16 compute: parameters gathered as bfloat16 (MixedPrecisionPolicy)."""
        return self.strategy == "fsdp" and self.gpus > 1 and self.compute_dtype == "bfloat16"


@dataclass
class Breakdown:
    """Bytes per GPU of each term of the update phase, and each phase's total."""

    terms: dict[str, float] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def peak(self) -> float:
        return max(self.phases.values())


def _width(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else 4


def persistent_bytes(dims: ModelDims, setup: Setup, layers: int | None = None) -> dict[str, float]:
    """What the trainer holds across a whole step: weights, gradients (during the update), Adam, the reference."""
    p, s = dims.parameters(layers), setup.shards
    replicated_ddp = setup.strategy == "ddp" and setup.gpus > 1
    return {
        # float32 master weights: 4P / S.
        "weights": 4 * p / s,
        # float32 gradients, 4P / S (FSDP reduce-scatters each micro-batch's), and under DDP its flat all-reduce
        # buckets, another 4P (gradient_as_bucket_view is off).
        "gradients": 4 * p / s + (4 * p if replicated_ddp else 0),
        # AdamW's exp_avg and exp_avg_sq, float32: 8P / S.
        "optimizer": 8 * p / s,
        # The KL reference in the compute dtype, sharded like the policy; nothing on the GPU when offloaded.
        "reference": _width(setup.compute_dtype) * p / s if setup.reference == "resident" else 0.0,
    }


def compute_copy_bytes(dims: ModelDims, setup: Setup, layers: int) -> float:
    """Weights in the compute dtype alive during a forward and backward, beside the float32 masters.

    FSDP: two layers gathered (the one computing, the one prefetched) and the root module (embedding, LM head) held
    from forward to backward, plus one layer's unsharded gradient before its reduce-scatter:
    w·(3·layer + outer), w the gathered width (2 with the mixed-precision policy, else 4).
    Otherwise the lean forward fuses every layer's matrices once per forward: bfloat16 copies of all of them,
    2·L·(matrices); float32 copies of the concatenated q/k/v and gate/up only (o and down are used as they are).
    Hugging Face's forward under bfloat16 autocast caches the same bfloat16 casts. And in backward one layer's
    gradients of those copies, M = its matrices: c·M, cast back to float32 (4·M, for bfloat16), and the q/k/v rows put
    back in order (4·H·(Q + 2K)), before they are added to the held gradients.
    """
    if setup.strategy == "fsdp" and setup.gpus > 1:
        width = 2 if setup.mixed_precision else 4
        return width * (3 * dims.layer_parameters() + dims.outer_parameters())
    matrices, qkv = dims.layer_matrices(), dims.hidden * (dims.q_width + 2 * dims.kv_width)
    if setup.compute_dtype == "bfloat16":
        return 2 * layers * matrices + (2 + 4) * matrices + 4 * qkv
    return 4 * layers * (qkv + 2 * dims.hidden * dims.intermediate) + 4 * matrices + 4 * qkv


def layer_activation_bytes(dims: ModelDims, c: int, a: int, r: int) -> int:
    """Bytes per token that one decoder layer of the lean forward saves for its backward:
    r·H its input (the first norm's) + c·H the normed input + c·(Q + 2K) q/k/v (v is a view of it)
    + a·(Q + K) rotated q and k + [a ≠ c] a·K v cast for attention + a·Q attention's output + c·Q its reshaped
    copy + r·H the residual after attention + c·H its norm + c·2I gate/up + c·I silu(gate) + c·I silu(gate)·up."""
    h, q, k, i = dims.hidden, dims.q_width, dims.kv_width, dims.intermediate
    return 2 * r * h + c * (2 * h + 2 * q + 2 * k + 4 * i) + a * (2 * q + k) + (a * k if a != c else 0)


def activation_bytes(dims: ModelDims, setup: Setup, tokens: int, layers: int) -> float:
    """Activations of one micro-batch of N tokens at the start of its backward.

    Without checkpointing: L layers' saved tensors. With it: each layer's input (r·H per token) and one layer
    recomputed in full. Either way the backward's own buffers for a layer (the gradients flowing through its MLP and
    residual, c·4I + 2r·H per token) and the final norm's tensors (2r·H + 2c·H per token)."""
    c = _width(setup.compute_dtype)
    a = 4 if setup.device == "cpu" else c
    r = 2 if setup.mixed_precision else 4
    layer = layer_activation_bytes(dims, c, a, r)
    held = layers * r * dims.hidden + layer if setup.checkpointing else layers * layer
    backward = c * 4 * dims.intermediate + 2 * r * dims.hidden
    final = (2 * r + 2 * c) * dims.hidden
    return tokens * (held + backward + final)


def head_bytes(dims: ModelDims, setup: Setup, tokens: int) -> float:
    """The LM head's log-prob (and entropy) pass (algorithms/lm_head.py) at its backward's peak: three float32 blocks
    of 2**24 logits (the logits, their softmax, their gradient; with or without entropy, which adds two floats per
    token), the head weight's whole gradient before it is added
    to the held one (V·H in the gathered width), and the hidden states' gradient, float32 plus its cast: (4 + c)·N·H.
    """
    c = _width(setup.compute_dtype)
    grad_width = 2 if setup.mixed_precision else 4
    return 3 * LOGIT_BLOCK * 4 + grad_width * dims.vocab * dims.hidden + (4 + c) * tokens * dims.hidden


def predict(dims: ModelDims, setup: Setup, tokens: int, layers: int | None = None) -> Breakdown:
    """Peak bytes per GPU of a step whose micro-batches hold `tokens` tokens; `layers` overrides the model's depth."""
    layers = dims.layers if layers is None else layers
    held = persistent_bytes(dims, setup, layers)
    context = CUDA_CONTEXT_BYTES if setup.device == "cuda" else 0.0
    vllm_during_update = min(VLLM_ASLEEP_BYTES, setup.vllm_share_bytes) if setup.vllm_sleeps \
        else setup.vllm_share_bytes
    terms = {
        **held,
        "compute copies": compute_copy_bytes(dims, setup, layers),
        "activations": activation_bytes(dims, setup, tokens, layers),
        "log-prob head": head_bytes(dims, setup, tokens),
        "vLLM": vllm_during_update,
        "CUDA context": context,
    }
    state = held["weights"] + held["optimizer"] + held["reference"]
    ddp_buckets = held["gradients"] - 4 * dims.parameters(layers) / setup.shards
    foreach_temporary = 4 * dims.parameters(layers) / setup.shards if setup.strategy == "fsdp" and setup.gpus > 1 \
        else 0.0
    phases = {
        "rollout": state + ddp_buckets + setup.vllm_share_bytes + context,
        "update": sum(terms.values()),
        "optimizer step": state + held["gradients"] + foreach_temporary + vllm_during_update + context,
    }
    return Breakdown(terms=terms, phases=phases)
