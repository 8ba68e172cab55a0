"""deepscaler: RL on verifiable math rewards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LLM", "SamplingParams", "__version__"]

if TYPE_CHECKING:
    from deepscaler.inference.llm import LLM
    from deepscaler.inference.params import SamplingParams

# Resolved on first access so `import deepscaler` stays cheap (no torch, no transformers).
_LAZY = {"LLM": "deepscaler.inference.llm", "SamplingParams": "deepscaler.inference.params"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepscaler' has no attribute {name!r}")
