"""The trainer's own forward pass for Qwen2, Qwen3, Llama and Mistral models: the same final hidden states (and so
log-probs) and gradients as Hugging Face's forward, from the model's own parameters, in fewer and larger operators.

An update of a small model on a CPU is its matmuls plus a long tail of short element-wise operators, and with
bfloat16 autocast also a cast of every weight at every call. Here each forward concatenates q/k/v into one
weight and gate/up into another (inside autograd, so gradients land on the model's parameters), casts them to
the compute dtype once, applies rotary embeddings as one complex multiplication (q/k rows are permuted into
interleaved pairs, which leaves every q·k product unchanged), and lets attention share key/value heads without
copying them. The residual stream and the norms are float32 whatever the parameters' dtype (as under autocast;
a bfloat16 model, the reference policy, computes as a float32 one would with its weights rounded); on a CPU
attention runs in float32, whose backward is several times faster there than bfloat16's.
The cost: the fused weights are a second copy of the model's matrices while a forward's graph is alive. With the
model's gradient checkpointing on (and the model training) each decoder layer is checkpointed, as Hugging Face does.
It stops at the final norm: the LM head is applied by `lm_head_logprobs`, which never holds the logits.
A packed row (several sequences end to end, `lengths`) attends within each sequence (packed_attention.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from deepscaler.inference.architectures import STATIC_ROPE_TYPES, SUPPORTED_MODEL_TYPES, pair_order, rope_type
from deepscaler.trainer.packed_attention import packed_causal_attention

Cache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values, (rows, kv heads, positions, d)


class LeanForward:
    """One use: the fused weights of a model, built at construction (a point in its autograd graph), and
    forward passes through them. Make a new one for each forward/backward, since the weights change."""

    @staticmethod
    def supports(model: torch.nn.Module) -> bool:
        """Whether this class computes exactly what this model's own forward does.

        Not for a model wrapped by DDP or FSDP or with any forward hooks (this forward calls no module), with
        sliding-window attention, MLP biases, an activation other than SiLU, attention dropout in training, or rotary
        embeddings whose frequencies depend on the sequence length."""
        config = getattr(model, "config", None)
        inner = getattr(model, "model", None)
        if config is None or inner is None or config.model_type not in SUPPORTED_MODEL_TYPES:
            return False
        # Hugging Face's gradient checkpointing hooks the input embeddings to make their output require grad, which
        # non-reentrant checkpointing does not need: that hook aside, any hook (e.g. FSDP's, which gather shards).
        benign = {handle.id for handle in getattr(model, "_require_grads_hooks", [])}
        if any(m._forward_pre_hooks or set(m._forward_hooks) - benign for m in model.modules()):
            return False
        layer_types = getattr(config, "layer_types", None) or []
        sliding = "sliding_attention" in layer_types or (not layer_types and getattr(config, "sliding_window", None))
        first = inner.layers[0]
        return (rope_type(config) in STATIC_ROPE_TYPES and not sliding
                and first.mlp.gate_proj.bias is None and config.hidden_act == "silu"
                and not (model.training and getattr(config, "attention_dropout", 0.0)))

    def __init__(self, model: torch.nn.Module, compute_dtype: str = "float32") -> None:
        config, inner = model.config, model.model
        self.model = model
        self.device = inner.embed_tokens.weight.device
        self.dtype = torch.bfloat16 if compute_dtype == "bfloat16" else torch.float32
        # A CPU's bfloat16 attention backward is slow; keys, values and scores stay float32 there.
        self.attention_dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        self.n_q = config.num_attention_heads
        self.n_kv = config.num_key_value_heads or self.n_q
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_q
        self.eps = config.rms_norm_eps
        rotary = inner.rotary_emb
        self.inv_freq = rotary.inv_freq.float().to(self.device)
        self.rope_scale = float(getattr(rotary, "attention_scaling", 1.0))
        d = self.head_dim
        pairs = pair_order(d)
        # Row order of the fused q/k/v output: each q and k head's rows as interleaved rotary pairs, v as is.
        heads = torch.arange(self.n_q + self.n_kv)[:, None] * d + pairs
        v_rows = torch.arange((self.n_q + 2 * self.n_kv) * d)[(self.n_q + self.n_kv) * d :]
        self.qkv_order = torch.cat([heads.flatten(), v_rows]).to(self.device)
        self.pairs = pairs.to(self.device)
        self.layers = [self._fuse(layer) for layer in inner.layers]
        self.checkpoint = getattr(model, "is_gradient_checkpointing", False) and model.training
        self.head = model.get_output_embeddings().weight  # cast a block at a time by lm_head_logprobs

    def _fuse(self, layer: torch.nn.Module) -> dict[str, torch.Tensor | None]:
        attn, mlp = layer.self_attn, layer.mlp
        projections = (attn.q_proj, attn.k_proj, attn.v_proj)
        qkv = torch.cat([p.weight for p in projections]).index_select(0, self.qkv_order)
        bias = None
        if attn.q_proj.bias is not None:
            bias = torch.cat([p.bias for p in projections]).index_select(0, self.qkv_order).to(self.dtype)
        fused = {
            "ln1": layer.input_layernorm.weight.float(), "ln2": layer.post_attention_layernorm.weight.float(),
            "qkv": qkv.to(self.dtype), "qkv_b": bias, "o": attn.o_proj.weight.to(self.dtype),
            "o_b": attn.o_proj.bias.to(self.dtype) if attn.o_proj.bias is not None else None,
            "gate_up": torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).to(self.dtype),
            "down": mlp.down_proj.weight.to(self.dtype), "q_norm": None, "k_norm": None,
        }
        if hasattr(attn, "q_norm"):  # Qwen3: a per-head norm on q and k before the rotation, pair-ordered too
            fused["q_norm"] = attn.q_norm.weight.float().index_select(0, self.pairs)
            fused["k_norm"] = attn.k_norm.weight.float().index_select(0, self.pairs)
        return fused

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def __call__(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                 mask: torch.Tensor | None = None, prefix: Cache | None = None, keep_cache: bool = False,
                 columns: torch.Tensor | None = None, last_only: bool = False,
                 lengths: Sequence[int] | None = None) -> tuple[torch.Tensor, Cache | None]:
        """Final hidden states (rows, columns, hidden), after the final norm, in the compute dtype, and with
        keep_cache each layer's keys and values.

        position_ids (rows, length) default to 0..length-1; mask (rows, 1, length, keys) is boolean (True:
        attend), or None for plain causal attention; prefix holds keys and values that come before these
        tokens (and needs a mask); columns (rows, k) picks the positions returned, last_only the last one
        (default: all). lengths: the row (one) is packed, sequences of these lengths end to end, each attending
        only to itself (packed_attention.py; position_ids then restart at 0 for each)."""
        if lengths is not None and (mask is not None or prefix is not None or input_ids.shape[0] != 1):
            raise ValueError("a packed row is one row with no mask and no prefix")
        if prefix is not None and mask is None:
            raise ValueError("a prefix needs an explicit mask (causal attention would align it wrongly)")
        rows, length = input_ids.shape
        if position_ids is None:  # one row of positions, broadcast over the batch
            position_ids = torch.arange(length, device=self.device)[None]
        angles = position_ids[..., None].float() * self.inv_freq
        freqs = torch.polar(torch.full_like(angles, self.rope_scale), angles)[:, :, None]
        embed = self.model.model.embed_tokens
        x = F.embedding(input_ids, embed.weight, padding_idx=embed.padding_idx).float()
        cache: Cache = []
        run = partial(checkpoint, self._layer, use_reentrant=False) if self.checkpoint else self._layer
        for index, layer in enumerate(self.layers):
            x, keys_values = run(layer, x, freqs, mask, prefix[index] if prefix else None, lengths)
            if keep_cache:
                cache.append(keys_values)
        if last_only:
            x = x[:, -1:]
        elif columns is not None:
            x = x.gather(1, columns[:, :, None].expand(-1, -1, x.shape[-1]))
        return self._norm(x, self.model.model.norm.weight.float()).to(self.dtype), cache if keep_cache else None

    def _layer(self, layer: dict, x: torch.Tensor, freqs: torch.Tensor, mask: torch.Tensor | None,
               prefix: tuple[torch.Tensor, torch.Tensor] | None,
               lengths: Sequence[int] | None = None) -> tuple[torch.Tensor, tuple]:
        rows, length, _ = x.shape
        n_q, n_kv, d = self.n_q, self.n_kv, self.head_dim
        h = self._norm(x, layer["ln1"]).to(self.dtype)
        qkv = F.linear(h, layer["qkv"], layer["qkv_b"]).view(rows, length, n_q + 2 * n_kv, d)
        qk = qkv[:, :, : n_q + n_kv].float()
        if layer["q_norm"] is not None:
            q, k = qk[:, :, :n_q], qk[:, :, n_q:]
            qk = torch.cat([self._norm(q, layer["q_norm"]), self._norm(k, layer["k_norm"])], 2)
        qk = torch.view_as_real(torch.view_as_complex(qk.unflatten(-1, (-1, 2))) * freqs).flatten(-2)
        qk = qk.to(self.attention_dtype)
        q, k = qk[:, :, :n_q].transpose(1, 2), qk[:, :, n_q:].transpose(1, 2)
        v = qkv[:, :, n_q + n_kv :].to(self.attention_dtype).transpose(1, 2)
        keys, values = (k, v) if prefix is None else (torch.cat([prefix[0], k], 2), torch.cat([prefix[1], v], 2))
        if lengths is not None:
            attn = packed_causal_attention(q, keys, values, lengths)
        else:
            attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=mask is None,
                                                  enable_gqa=True)
        attn = attn.transpose(1, 2).reshape(rows, length, n_q * d).to(self.dtype)
        x = x + F.linear(attn, layer["o"], layer["o_b"])
        gate, up = F.linear(self._norm(x, layer["ln2"]).to(self.dtype), layer["gate_up"]).chunk(2, -1)
        x = x + F.linear(F.silu(gate) * up, layer["down"])
        return x, (k, v)
