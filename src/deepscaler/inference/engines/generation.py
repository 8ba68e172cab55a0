"""One completion in flight: its tokens, when it stops, and the CompletionOutput it becomes."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from deepscaler.inference.outputs import CompletionOutput, tokens_of_text
from deepscaler.inference.params import SamplingParams

Decode = Callable[[list[int]], str]  # token ids -> text, special tokens skipped


@dataclass
class Generation:
    """The state of completion `index` of request `request`."""

    request: int
    index: int
    prompt: list[int]
    params: SamplingParams
    budget: int  # most new tokens, after capping at the context length
    stop_ids: frozenset[int]  # end-of-sequence ids (unless ignored) and the request's stop_token_ids
    eos_ids: frozenset[int]
    rng: random.Random | None  # own stream for seeded requests; None draws from the engine's
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[dict[int, float]] = field(default_factory=list)
    cached: int = 0  # tokens whose keys/values are in the KV cache
    finish_reason: str | None = None
    stop_reason: str | int | None = None

    def append(self, token: int, logprob: float, decode: Decode) -> None:
        """Add a sampled token and decide whether the completion has finished."""
        self.tokens.append(token)
        self.logprobs.append(logprob)
        if token in self.stop_ids:
            self.finish_reason = "stop"
            self.stop_reason = None if token in self.eos_ids else token
        elif self.params.stop and self._hit_stop_string(decode):
            self.finish_reason = "stop"
        elif len(self.tokens) >= self.budget:
            self.finish_reason = "length"

    def _hit_stop_string(self, decode: Decode) -> bool:
        # A stop string just completed ends in the newest token, so a short tail is enough to find it;
        # the margin covers tokens that decode to nothing (specials) or to partial characters.
        window = max(len(s) for s in self.params.stop) + 8
        tail = decode(self.tokens[-window:])
        return any(stop in tail for stop in self.params.stop)

    def output(self, decode: Decode) -> CompletionOutput:
        """The finished completion: text decoded and cut at a stop string, a stop token left out of it."""
        tokens = self.tokens
        by_token = self.finish_reason == "stop" and tokens[-1] in self.stop_ids
        text = decode(tokens[:-1] if by_token else tokens)
        kept = len(tokens)
        if self.finish_reason == "stop" and not by_token:
            found = [(text.find(s), s) for s in self.params.stop if s in text]
            if found:
                cut, self.stop_reason = min(found)
                text = text[:cut]
                kept = tokens_of_text(tokens, text, decode)  # the stop string's tokens go with it
        want = self.params.logprobs is not None
        per_position = self.top or [{t: lp} for t, lp in zip(tokens, self.logprobs, strict=True)]
        return CompletionOutput(
            index=self.index,
            text=text,
            token_ids=tokens[:kept],
            finish_reason=self.finish_reason or "length",
            token_logprobs=self.logprobs[:kept] if want else None,
            logprobs=per_position[:kept] if want else None,
            stop_reason=self.stop_reason,
        )
