"""The model-dependent bounds of a request, checked against the engine's real limits before it gets any
work, so both engines refuse the same requests in the same words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepscaler.serve.errors import HTTPError


@dataclass(frozen=True)
class EngineLimits:
    context: int  # most tokens (prompt and completion) in one sequence
    vocab: int  # token ids run from 0 to vocab - 1

    @classmethod
    def of(cls, engine: Any, tokenizer: Any) -> EngineLimits:
        """The engine's context and the ids both the model and the tokenizer know (a model's embedding may
        have rows no token uses: decoding those would fail)."""
        return cls(context=int(engine.max_model_len), vocab=min(int(engine.vocab_size), len(tokenizer)))

    def check_prompt(self, ids: list[int], param: str) -> None:
        if not ids:
            raise HTTPError(400, "the prompt is empty", param=param)
        if len(ids) >= self.context:
            raise HTTPError(400, f"the prompt has {len(ids)} tokens; this model's context is {self.context} "
                                 "tokens, leaving no room to generate", param=param)
        low, high = min(ids), max(ids)
        if low < 0 or high >= self.vocab:
            bad = low if low < 0 else high
            raise HTTPError(400, f"token id {bad} is outside this model's vocabulary [0, {self.vocab})",
                            param=param)

    def check_top_k(self, top_k: int) -> None:
        if top_k > self.vocab:
            raise HTTPError(400, f"top_k {top_k} is larger than the vocabulary ({self.vocab})", param="top_k")

    def room(self, ids: list[int], max_tokens: int) -> int:
        """max_tokens cut to what the context leaves after the prompt (what both engines would stop at)."""
        return min(max_tokens, self.context - len(ids))
