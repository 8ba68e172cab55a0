"""What `LLM.generate` returns: the same shape as vLLM's outputs, plus what RL training needs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CompletionOutput:
    """One sampled completion.

    token_logprobs holds the log-prob of each sampled token under the temperature-scaled distribution
    (log_softmax(logits / temperature), before top-k/top-p), the quantity the trainer recomputes;
    it is filled when SamplingParams.logprobs is not None.
    logprobs (vLLM's layout) holds, per position, {token_id: logprob} for the sampled token and the
    top alternatives.
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
