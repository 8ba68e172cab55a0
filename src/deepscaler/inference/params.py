"""Sampling parameters, validated once so engines can trust them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    """How to sample completions; the names and meanings follow vLLM's class of the same name.

    temperature: 0 means greedy decoding; otherwise logits are divided by it before sampling.
    top_p: nucleus sampling, keeps the smallest set of tokens whose probability reaches top_p
        (0 < top_p <= 1).
    top_k: keeps the k most likely tokens; -1 (or 0) keeps all.
    max_tokens: the most new tokens a completion may have; reaching it ends with finish_reason "length".
    n: completions per prompt.
    seed: makes sampling reproducible for this request, whatever else runs in the same batch.
    stop: strings that end a completion (not included in the returned text).
    stop_token_ids: token ids that end a completion, besides the tokenizer's end-of-sequence token.
    logprobs: when not None, each completion carries the log-prob of every sampled token
        (and, when > 0, that many most likely alternatives per position).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 16
    n: int = 1
    seed: int | None = None
    stop: list[str] | str | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    logprobs: int | None = None
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop or [])
        checks = [
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (self.top_k == -1 or self.top_k >= 0, f"top_k must be -1 (off) or >= 0, got {self.top_k}"),
            (self.max_tokens >= 1, f"max_tokens must be >= 1, got {self.max_tokens}"),
            (self.n >= 1, f"n must be >= 1, got {self.n}"),
            (self.logprobs is None or self.logprobs >= 0, f"logprobs must be >= 0, got {self.logprobs}"),
            (all(isinstance(s, str) and s for s in self.stop), "stop must be non-empty strings"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
