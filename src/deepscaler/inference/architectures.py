"""What deepscaler's own forward passes (the built-in engine's, inference/engines/lean.py, and the trainer's,
trainer/lean_forward.py) implement: the decoder families, the rotary variants, and the q/k row order that
turns rotary embeddings into one complex multiplication."""

from __future__ import annotations

import torch

SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "llama", "mistral")
# Rotary variants whose frequencies do not depend on the sequence length (so they can be tabulated once).
STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")


def rope_type(config) -> str:
    """A Hugging Face config's rotary variant ("default" when it names none)."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return rope.get("rope_type", rope.get("type", "default"))


def pair_order(head_dim: int) -> torch.Tensor:
    """One head's q/k rows reordered into interleaved rotary pairs: pair (2i, 2i+1) takes Hugging Face's rows
    (i, i + head_dim / 2). The same order on q and k leaves every q·k product unchanged."""
    half = torch.arange(head_dim // 2)
    return torch.stack([half, half + head_dim // 2], 1).flatten()
