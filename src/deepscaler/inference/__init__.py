"""Generation: the `LLM` facade, sampling parameters, outputs, engines and local test models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "make_tiny_model"]

if TYPE_CHECKING:
    from deepscaler.inference.llm import LLM
    from deepscaler.inference.models import make_tiny_model
    from deepscaler.inference.outputs import CompletionOutput, RequestOutput
    from deepscaler.inference.params import SamplingParams

# Lazy, so importing deepscaler.inference.params (no torch) does not pull in the engines.
_LAZY = {
    "LLM": "deepscaler.inference.llm",
    "SamplingParams": "deepscaler.inference.params",
    "RequestOutput": "deepscaler.inference.outputs",
    "CompletionOutput": "deepscaler.inference.outputs",
    "make_tiny_model": "deepscaler.inference.models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepscaler.inference' has no attribute {name!r}")
