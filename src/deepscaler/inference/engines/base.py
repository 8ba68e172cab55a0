"""The contract every engine (built-in, vLLM, remote) fulfils; the `LLM` facade talks only to this."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import torch

from deepscaler.inference.outputs import CompletionOutput
from deepscaler.inference.params import SamplingParams


class Engine(Protocol):
    name: str
    dtype: torch.dtype  # what the model computes in: weights given to update_weights are best sent in it

    def generate(
        self, prompts: Sequence[list[int]], params: Sequence[SamplingParams], use_tqdm: bool = False
    ) -> list[list[CompletionOutput]]:
        """Sample params[i].n completions for each tokenised prompt; text decoded, stops applied."""
        ...

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace model weights in place (Hugging Face parameter names), e.g. after a training step.

        Any iterable, consumed once, one tensor at a time: a stream need never hold the whole model."""
        ...

    def sleep(self, level: int = 1) -> None:
        """Free the engine's device memory for someone else (a colocated trainer) until `wake_up`: level 1 keeps
        the weights in host memory, level 2 discards them (send new ones after waking them); the KV cache is
        discarded either way. Engines without such a mode do nothing."""
        ...

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        """Take back what `sleep` freed: "weights", "kv_cache", or both (None). Nothing to do when awake."""
        ...

    def close(self) -> None:
        ...
