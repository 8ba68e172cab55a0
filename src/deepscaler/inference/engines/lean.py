"""A lean Qwen2 / Llama / Qwen3 / Mistral forward pass in plain torch, with a preallocated KV cache.

On a CPU a small model's decode step is its matmuls (compute-bound from a few dozen rows), attention
(bound by reading the KV cache from memory) and a long tail of short operators, so the weights are
rearranged once at load time to make each step a few large operators: q/k/v are one matmul, gate/up one
matmul, residual adds ride on addmm, the attention scale is folded into the query weights, and
matrices (the output projection too) are stored [in, out] for torch.mm. Rotary embeddings, SiLU-times-up
and the residuals after the MLP are computed in place, in the matmuls' outputs.
Rotary embeddings use complex multiplication; for that, each head's q/k output rows are permuted from
Hugging Face's "two halves" layout to interleaved pairs. Attention scores are dot products of q and k,
which the same permutation on both sides leaves unchanged, so logits match Hugging Face's.
Prefill stops the last layer at its keys and values for all positions: attention, output projection and
MLP run for each prompt's last position only, the one whose logits are needed.
A float32 decode step on one thread goes further: the norms, SiLU x up, the rotation with its cache
writes are Numba kernels (kernels.py) and the attention is compiled LLVM IR (attention.py), leaving
PyTorch only the matmuls. A float32 prefill on one thread uses the norm and SiLU x up kernels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from deepscaler.inference.architectures import STATIC_ROPE_TYPES, SUPPORTED_MODEL_TYPES, pair_order, rope_type
from deepscaler.inference.engines import fused

# Largest tied embedding that also gets a transposed copy for the output projection.
LM_HEAD_COPY_BYTES = 64 * 2**20
_LAYER_NAME = re.compile(r"^(?:model\.)?layers\.(\d+)\.(.+)$")


class LeanCausalLM:
    """Weights and KV cache of a decoder-only model, with batched prefill and one-token decode steps.

    The cache has `slots` rows; row i holds the keys/values of whichever sequence occupies slot i, and
    each slot has its own length, so sequences of different lengths share a batch without padding.
    """

    def __init__(self, hf_model: torch.nn.Module) -> None:
        config = hf_model.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise NotImplementedError(
                f"the built-in engine supports {', '.join(SUPPORTED_MODEL_TYPES)} models, "
                f"not {config.model_type!r}"
            )
        if (rope := rope_type(config)) not in STATIC_ROPE_TYPES:
            raise NotImplementedError(f"the built-in engine does not support {rope!r} rotary embeddings")
        self.config = config
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.hidden = config.hidden_size
        self.inter = config.intermediate_size
        self.n_layers = config.num_hidden_layers
        self.eps = config.rms_norm_eps
        self.tied = bool(getattr(config, "tie_word_embeddings", False))
        first = hf_model.model.layers[0]
        self.dtype = first.self_attn.q_proj.weight.dtype
        self.qkv_bias = first.self_attn.q_proj.bias is not None
        self.o_bias = first.self_attn.o_proj.bias is not None
        self.qk_norm = hasattr(first.self_attn, "q_norm")
        if first.mlp.gate_proj.bias is not None:
            raise NotImplementedError("MLP biases are not supported by the built-in engine")
        d = self.head_dim
        self.pair_perm = pair_order(d)
        self.scale = d**-0.5
        self._allocate()
        for name, tensor in hf_model.state_dict().items():
            if name == "lm_head.weight" and self.tied:
                continue
            self.load(name, tensor)
        rotary = hf_model.model.rotary_emb
        self.inv_freq = rotary.inv_freq.float().clone()
        self.rope_scaling = float(getattr(rotary, "attention_scaling", 1.0))
        self.freqs: torch.Tensor | None = None
        self.k_cache: list[torch.Tensor] = []
        self.v_cache: list[torch.Tensor] = []
        # Float32 steps on one thread (each data-parallel process has one) run on the single-threaded kernels
        # of engines/kernels.py and attention.py (decode: all of them; prefill: norms and SiLU x up); with more
        # threads, a head size the attention kernel does not take, or kernels that cannot be compiled here
        # (engines/fused.py), PyTorch's operators. False: never.
        self.fused_kernels = self.dtype == torch.float32
        self._kernels = self._attention = None  # compiled on the first fused step

    def _allocate(self) -> None:
        H, d, n_q, n_kv, inter = self.hidden, self.head_dim, self.n_heads, self.n_kv, self.inter
        qkv_rows = (n_q + 2 * n_kv) * d

        def empty(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, dtype=self.dtype)

        self.embed = empty(self.config.vocab_size, H)
        # The output projection is also kept as [in, out] for torch.mm (~20% faster than F.linear here):
        # untied, that is its only storage; tied, a copy of the embedding when it is small.
        vocab = self.config.vocab_size
        small = vocab * H * self.embed.element_size() <= LM_HEAD_COPY_BYTES
        self.lm_head_t = empty(H, vocab) if not self.tied or small else None
        self.lm_head = self.embed if self.tied else self.lm_head_t.t()
        self.final_norm = empty(H)
        self.layers = []
        for _ in range(self.n_layers):
            # Matrices are stored transposed, [in, out]: torch.mm on that layout is ~15% faster on CPU
            # than F.linear's x @ W.T, and addmm folds the residual add into the matmul.
            layer = {
                "ln1": empty(H), "ln2": empty(H), "qkv": empty(H, qkv_rows), "o": empty(n_q * d, H),
                "gate_up": empty(H, 2 * inter), "down": empty(inter, H),
                "qkv_b": empty(qkv_rows) if self.qkv_bias else None,
                "o_b": empty(H) if self.o_bias else None,
            }
            if self.qk_norm:
                layer["q_norm"], layer["k_norm"] = empty(d), empty(d)
            self.layers.append(layer)

    @property
    def has_weights(self) -> bool:
        return bool(self.layers)

    def release_weights(self) -> None:
        """Drop the weights (for a sleeping engine); `restore_weights` makes room for them again."""
        self.embed = self.lm_head = self.lm_head_t = self.final_norm = None
        self.layers = []

    def restore_weights(self) -> None:
        """Allocate the weights again, zeros until every one is loaded."""
        self._allocate()

    def _rows(self, tensor: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
        """Reorder a q or k projection's output rows (weight or bias) into interleaved rotary pairs."""
        shaped = tensor.reshape(heads, self.head_dim, *tensor.shape[1:])
        return (shaped[:, self.pair_perm] * scale).reshape(tensor.shape)

    @staticmethod
    def _view(tensor: torch.Tensor | None) -> torch.Tensor | None:
        """A stored tensor seen in Hugging Face's orientation ([out, in] for matrices)."""
        return tensor.t() if tensor is not None and tensor.dim() == 2 else tensor

    @torch.inference_mode()
    def load(self, name: str, tensor: torch.Tensor) -> None:
        """Copy one Hugging Face-named tensor into the fused weights (used at load and by update_weights)."""
        tensor = tensor.detach().to(self.dtype)
        q_rows, kv_rows = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        # With q/k norms the scale must follow the norm, so it goes into q_norm instead of q's rows.
        q_scale = 1.0 if self.qk_norm else self.scale
        if name in ("model.embed_tokens.weight", "embed_tokens.weight"):
            target, value = self.embed, tensor
        elif name == "lm_head.weight":
            target, value = self.lm_head, tensor
        elif name in ("model.norm.weight", "norm.weight"):
            target, value = self.final_norm, tensor
        else:
            match = _LAYER_NAME.match(name)
            if match is None or int(match.group(1)) >= self.n_layers:
                raise KeyError(f"unknown weight name {name!r}")
            layer, key = self.layers[int(match.group(1))], match.group(2)
            kind = key.rsplit(".", 1)[-1]
            fused = {"weight": "qkv", "bias": "qkv_b"}.get(kind)
            slices = {
                "self_attn.q_proj": (fused, 0, q_rows, self.n_heads, q_scale),
                "self_attn.k_proj": (fused, q_rows, q_rows + kv_rows, self.n_kv, 1.0),
                "self_attn.v_proj": (fused, q_rows + kv_rows, q_rows + 2 * kv_rows, None, 1.0),
                "mlp.gate_proj": ("gate_up", 0, self.inter, None, 1.0),
                "mlp.up_proj": ("gate_up", self.inter, 2 * self.inter, None, 1.0),
            }
            simple = {
                "input_layernorm.weight": "ln1", "post_attention_layernorm.weight": "ln2",
                "self_attn.o_proj.weight": "o", "self_attn.o_proj.bias": "o_b",
                "mlp.down_proj.weight": "down",
            }
            module = key.rsplit(".", 1)[0]
            if module in slices and kind in ("weight", "bias"):
                slot, start, stop, heads, scale = slices[module]
                value = self._rows(tensor, heads, scale) if heads else tensor
                fused_tensor = self._view(layer.get(slot))
                target = fused_tensor[start:stop] if fused_tensor is not None else None
            elif key in ("self_attn.q_norm.weight", "self_attn.k_norm.weight") and self.qk_norm:
                which = "q_norm" if "q_norm" in key else "k_norm"
                target = layer[which]
                value = tensor[self.pair_perm] * (self.scale if which == "q_norm" else 1.0)
            elif key in simple:
                target, value = self._view(layer.get(simple[key])), tensor
            else:
                target = None
            if target is None:
                raise KeyError(f"unknown weight name {name!r}")
        if target.shape != value.shape:
            raise ValueError(f"{name}: expected shape {tuple(target.shape)}, got {tuple(value.shape)}")
        target.copy_(value)
        if target is self.embed and self.tied and self.lm_head_t is not None:
            self.lm_head_t.copy_(value.t())

    def load_many(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        for name, tensor in named_tensors:
            self.load(name, tensor)
        self.clear_cache()

    def tensors(self) -> dict[str, torch.Tensor]:
        """The weights in this class's own fused layout, by name (for a copy of the model elsewhere)."""
        named = {"embed": self.embed, "final_norm": self.final_norm}
        if self.lm_head_t is not None:
            named["lm_head_t"] = self.lm_head_t
        for i, layer in enumerate(self.layers):
            named.update({f"{i}.{key}": value for key, value in layer.items() if value is not None})
        return named

    def adopt(self, named: dict[str, torch.Tensor]) -> None:
        """Take the given tensors (names, shapes and dtype as in `tensors()`) as the weights themselves, not
        copies: views of memory shared with other processes, which then see every update."""
        own = self.tensors()
        if own.keys() != named.keys():
            raise KeyError(f"weights do not match this model: {sorted(own.keys() ^ named.keys())[:5]}")
        for name, tensor in named.items():
            if tensor.shape != own[name].shape or tensor.dtype != own[name].dtype:
                raise ValueError(f"{name}: expected {tuple(own[name].shape)} {own[name].dtype}, "
                                 f"got {tuple(tensor.shape)} {tensor.dtype}")
            if "." in name:
                layer, key = name.split(".", 1)
                self.layers[int(layer)][key] = tensor
            else:
                setattr(self, name, tensor)
        self.lm_head = self.embed if self.tied else self.lm_head_t.t()

    def allocate_cache(self, slots: int, max_len: int) -> None:
        """Make room for `slots` sequences of up to `max_len` tokens, reusing a big enough cache.

        A new cache is zeros and a reused one holds keys/values of finite earlier tokens: a masked
        position has probability 0, and 0 * v is only 0 when v is finite, never NaN.
        """
        if not self.k_cache or self.k_cache[0].shape[0] < slots or self.k_cache[0].shape[2] < max_len:
            self.release_cache()  # free the old cache before the new one is allocated
            shape = (slots, self.n_kv, max_len, self.head_dim)
            self.k_cache = [torch.zeros(shape, dtype=self.dtype) for _ in range(self.n_layers)]
            self.v_cache = [torch.zeros(shape, dtype=self.dtype) for _ in range(self.n_layers)]
        if self.freqs is None or self.freqs.shape[0] < max_len:
            angles = torch.outer(torch.arange(max_len, dtype=torch.float32), self.inv_freq)
            self.freqs = torch.polar(torch.full_like(angles, self.rope_scaling), angles)

    def release_cache(self) -> None:
        self.k_cache, self.v_cache = [], []

    def clear_cache(self) -> None:
        """Zero the cache in place (after a weight update, old keys/values could be anything)."""
        for cache in self.k_cache + self.v_cache:
            cache.zero_()

    def cache_bytes_per_slot(self, max_len: int) -> int:
        return 2 * self.n_layers * self.n_kv * max_len * self.head_dim * self.embed.element_size()

    def _rope_(self, qk: torch.Tensor, freqs: torch.Tensor) -> None:
        """Rotate, in place, interleaved pairs of q and k (a view [..., heads, head_dim]) by `freqs`."""
        if qk.dtype == torch.float32:
            # A complex view of the pairs multiplied in place: one operator, no copy.
            torch.view_as_complex(qk.unflatten(-1, (-1, 2))).mul_(freqs)
        else:  # no complex type for bfloat16: rotate in float32 and copy back
            pairs = torch.view_as_complex(qk.float().unflatten(-1, (-1, 2)))
            qk.copy_(torch.view_as_real(pairs * freqs).flatten(-2))

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm over the last dim (bit-identical to Hugging Face's in float32)."""
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def _fused_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm of contiguous float32 rows [n, hidden] in one kernel call (single-threaded float32 steps)."""
        out = torch.empty_like(x)
        self._kernels.rms_norm(x.numpy(), weight.numpy(), self.eps, out.numpy())
        return out

    def _qkv(self, layer: dict, h: torch.Tensor) -> torch.Tensor:
        """Rows of h [tokens, hidden] -> qkv [tokens, (heads + 2 kv heads) * d], q/k-normed if the model
        has those norms, not yet rotated."""
        n_q, n_kv, d = self.n_heads, self.n_kv, self.head_dim
        qkv = torch.mm(h, layer["qkv"]) if layer["qkv_b"] is None else torch.addmm(layer["qkv_b"], h, layer["qkv"])
        if self.qk_norm:
            qk = qkv[:, : (n_q + n_kv) * d].unflatten(-1, (n_q + n_kv, d))
            qk[:, :n_q] = self._norm(qk[:, :n_q], layer["q_norm"])
            qk[:, n_q:] = self._norm(qk[:, n_q:], layer["k_norm"])
        return qkv

    def _kernels_apply(self) -> bool:
        if not (self.fused_kernels and torch.get_num_threads() == 1):  # the kernels are single-threaded
            return False
        if self._attention is None:
            self._kernels = fused.kernels()
            self._attention = fused.decode_attention(self.head_dim, self.n_heads, self.n_kv)
            self.fused_kernels = self._kernels is not None and self._attention is not None
        return self.fused_kernels

    def _mlp_and_out(self, layer: dict, x: torch.Tensor, attn: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """Output projection and MLP, each with its residual, for rows x [tokens, hidden]."""
        x = torch.addmm(x, attn, layer["o"])
        if layer["o_b"] is not None:
            x += layer["o_b"]
        if fused:
            gate_up = torch.mm(self._fused_norm(x, layer["ln2"]), layer["gate_up"])
            act = torch.empty(x.shape[0], self.inter, dtype=x.dtype)
            self._kernels.silu_and_multiply(gate_up.numpy(), act.numpy())
        else:
            gate_up = torch.mm(self._norm(x, layer["ln2"]), layer["gate_up"])
            # silu(gate) * up in place, in gate's half of gate_up (a strided view, which addmm reads as is).
            act = F.silu(gate_up[:, : self.inter], inplace=True).mul_(gate_up[:, self.inter :])
        return x.addmm_(act, layer["down"])

    def logits(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """Float32 logits [rows, vocab] for final hidden states x [rows, hidden]."""
        h = (self._fused_norm if fused else self._norm)(x, self.final_norm)
        if self.lm_head_t is None:
            return F.linear(h, self.lm_head).float()
        return torch.mm(h, self.lm_head_t).float()

    @torch.inference_mode()
    def prefill(
        self, tokens: torch.Tensor, lengths: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """Run right-padded prompts `tokens` [k, T]; cache slot `slots[j]` gets the keys/values of prompt
        `rows[j]`, so several completions of one prompt share a single prefill.

        Returns the logits after each prompt's last token, [k, vocab].
        """
        k_rows, T = tokens.shape
        n_q, n_kv, d = self.n_heads, self.n_kv, self.head_dim
        fused = self._kernels_apply()  # for the norms and SiLU x up; attention stays sdpa
        norm = self._fused_norm if fused else self._norm
        x = F.embedding(tokens.flatten(), self.embed)
        freqs = self.freqs[:T].unsqueeze(1)  # broadcast over prompts and heads
        for i, layer in enumerate(self.layers):
            h = norm(x, layer["ln1"])
            qkv = self._qkv(layer, h).view(k_rows, T, n_q + 2 * n_kv, d)
            self._rope_(qkv[:, :, : n_q + n_kv], freqs)
            q, k, v = (t.transpose(1, 2) for t in qkv.split([n_q, n_kv, n_kv], dim=2))
            self.k_cache[i][slots, :, :T] = k[rows]
            self.v_cache[i][slots, :, :T] = v[rows]
            if i == self.n_layers - 1:
                break
            # Right padding needs no mask beyond causality: a real query never sees a later pad key.
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0, enable_gqa=True)
            x = self._mlp_and_out(layer, x, attn.transpose(1, 2).reshape(k_rows * T, -1), fused)
        # Past the last layer's keys and values only each prompt's last position matters: its query
        # attends to the prompt's keys, and the output projection and MLP run on k rows, not k * T.
        last = torch.arange(k_rows), lengths - 1
        group = n_q // n_kv
        q_last = q[last[0], :, last[1]].view(k_rows, n_kv, group, d)
        hidden_keys = torch.arange(T) >= lengths.view(k_rows, 1, 1, 1)
        bias = torch.zeros(k_rows, 1, 1, T, dtype=self.dtype).masked_fill_(hidden_keys, -torch.inf)
        attn = F.scaled_dot_product_attention(q_last, k, v, attn_mask=bias, scale=1.0).view(k_rows, -1)
        x = self._mlp_and_out(layer, x.view(k_rows, T, -1)[last], attn, fused)
        return self.logits(x, fused)

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, span: int) -> torch.Tensor:
        """One step for slots 0..n-1: token i goes at `positions[i]` of slot i; returns logits [n, vocab].

        `span` is max(positions) + 1, passed in because the caller knows it without reading the tensor.
        """
        n = tokens.shape[0]
        n_q, n_kv, d, group = self.n_heads, self.n_kv, self.head_dim, self.n_heads // self.n_kv
        x = F.embedding(tokens, self.embed)
        if self._kernels_apply():
            return self._decode_fused(x, positions)
        freqs = self.freqs[positions].unsqueeze(1)
        hidden_keys = torch.arange(span) > positions.view(n, 1, 1, 1)
        bias = torch.zeros(n, 1, 1, span, dtype=self.dtype).masked_fill_(hidden_keys, -torch.inf)
        # Flat row index of (slot, kv head, position) in a cache viewed as [slots * n_kv * max_len, d].
        rows = (torch.arange(n) * n_kv).unsqueeze(1) + torch.arange(n_kv)
        flat = (rows * self.k_cache[0].shape[2] + positions.unsqueeze(1)).flatten()
        for i, layer in enumerate(self.layers):
            qkv = self._qkv(layer, self._norm(x, layer["ln1"]))
            self._rope_(qkv[:, : (n_q + n_kv) * d].unflatten(-1, (n_q + n_kv, d)), freqs)
            k_cache, v_cache = self.k_cache[i], self.v_cache[i]
            k_cache.view(-1, d).index_copy_(0, flat, qkv[:, n_q * d : (n_q + n_kv) * d].reshape(-1, d))
            v_cache.view(-1, d).index_copy_(0, flat, qkv[:, (n_q + n_kv) * d :].reshape(-1, d))
            # The `group` query heads sharing a kv head play the role of that head's query positions.
            attn = F.scaled_dot_product_attention(
                qkv[:, : n_q * d].view(n, n_kv, group, d), k_cache[:n, :, :span], v_cache[:n, :, :span],
                attn_mask=bias, scale=1.0,
            ).view(n, -1)
            x = self._mlp_and_out(layer, x, attn)
        return self.logits(x)

    def _decode_fused(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """`decode` with kernels.py doing the norms and rotation with cache writes, attention.py the attention."""
        n_q, n_kv, at = self.n_heads, self.n_kv, positions.numpy()
        rotation = torch.view_as_real(self.freqs).numpy()  # (cos, sin) per position and pair: a view, no copy
        for i, layer in enumerate(self.layers):
            qkv = self._qkv(layer, self._fused_norm(x, layer["ln1"]))
            self._kernels.rotate_and_store(qkv.numpy(), rotation, at, self.k_cache[i].numpy(), self.v_cache[i].numpy(),
                                     n_q, n_kv)
            attn = torch.empty(x.shape[0], n_q * self.head_dim, dtype=x.dtype)
            self._attention(qkv, self.k_cache[i], self.v_cache[i], positions, attn)
            x = self._mlp_and_out(layer, x, attn, fused=True)
        return self.logits(x, fused=True)

    @torch.inference_mode()
    def move_slots(self, src: torch.Tensor, dst: torch.Tensor, span: int) -> None:
        """Copy cache rows src -> dst (first `span` positions), to keep live sequences in slots 0..n-1."""
        for cache in self.k_cache + self.v_cache:
            cache[dst, :, :span] = cache[src, :, :span]
