"""The contract every engine (built-in, vLLM, remote) fulfils; the `LLM` facade talks only to this."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import torch

from deepscaler.inference.outputs import CompletionOutput
from deepscaler.inference.params import SamplingParams


class Engine(Protocol):
    name: str

    def generate(
        self, prompts: Sequence[list[int]], params: Sequence[SamplingParams], use_tqdm: bool = False
    ) -> list[list[CompletionOutput]]:
        """Sample params[i].n completions for each tokenised prompt; text decoded, stops applied."""
        ...

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace model weights in place (Hugging Face parameter names), e.g. after a training step."""
        ...

    def close(self) -> None:
        ...
