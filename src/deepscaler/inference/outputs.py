"""What `LLM.generate` returns: the same shape as vLLM's outputs, plus what RL training needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CompletionOutput:
    """One sampled completion.

    token_logprobs holds the log-prob of each sampled token under the temperature-scaled distribution
    (log_softmax(logits / temperature), before top-k/top-p), the quantity the trainer recomputes;
    it is filled when SamplingParams.logprobs is not None.
    logprobs (vLLM's layout) holds, per position, {token_id: logprob} for the sampled token and the
    top alternatives.
    token_ids and both log-prob lists cover the tokens of `text`, plus the stop token that ended it (an
    end-of-sequence or stop_token_ids id, whose log-prob training needs); a stop string's tokens are cut
    with the string (see `tokens_of_text`).
    """

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" or "length"
    token_logprobs: list[float] | None = None
    logprobs: list[dict[int, float]] | None = None
    stop_reason: str | int | None = None

    @property
    def cumulative_logprob(self) -> float | None:
        return None if self.token_logprobs is None else float(sum(self.token_logprobs))


@dataclass
class RequestOutput:
    """All completions of one prompt."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)
    finished: bool = True


def tokens_of_text(token_ids: list[int], text: str, decode: Callable[[list[int]], str]) -> int:
    """How many of token_ids make up `text`, a prefix of their decoding cut at a stop string: the fewest
    whose decoding still starts with it. A token straddling the cut (text and the stop string's start)
    is kept; the tokens after it, which are the stop string's alone, are not. Decodes once per dropped
    token plus one, from the end."""
    kept = len(token_ids)
    while kept > 0 and decode(token_ids[: kept - 1]).startswith(text):
        kept -= 1
    return kept
