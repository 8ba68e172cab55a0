"""Request bodies of the OpenAI-compatible endpoints.

Types are strict (a boolean is not a number, a number is not a string) and every number finite and
bounded here, before anything reaches an engine; the bounds that depend on the model (vocabulary,
context) are checked against the engine in `limits.py`. Unknown fields are accepted and ignored, as
clients send many optional ones."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_N = 64
MAX_PROMPTS = 64  # prompts in one /v1/completions request
MAX_STOP = 16
MAX_LOGPROBS = 20  # vLLM's default max_logprobs, and OpenAI's
MAX_TEMPERATURE = 2.0  # vLLM refuses more (and OpenAI): the same bound for both engines
SEED_RANGE = (0, 2**63 - 1)  # vLLM seeds a torch.Generator, which takes a signed 64-bit integer

_STRICT = ConfigDict(extra="allow", strict=True)


class _Sampling(BaseModel):
    model_config = _STRICT

    model: str | None = None
    temperature: float = Field(1.0, ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    top_k: int = Field(-1, ge=-1)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = Field(None, max_length=MAX_STOP)
    seed: int | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)


PROMPT_FORMS = (f"a string, a list of 1 to {MAX_PROMPTS} strings, a list of token ids, or a list of 1 to "
                f"{MAX_PROMPTS} lists of token ids")


class CompletionRequest(_Sampling):
    prompt: (str | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
             | Annotated[list[int], Field(min_length=1)]
             | Annotated[list[list[int]], Field(min_length=1, max_length=MAX_PROMPTS)])
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    def prompt_list(self) -> list[str | list[int]]:
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(t, int) for t in prompt):
            return [list(prompt)]  # one prompt given as token ids
        return list(prompt)

    def max_output_tokens(self) -> int:
        return self.max_tokens or 16  # the OpenAI completions default

    def logprobs_wanted(self) -> int | None:
        return self.logprobs


class ContentPart(BaseModel):
    model_config = _STRICT
    type: str = "text"
    text: str = ""


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: str
    content: str | list[ContentPart] | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    def plain_messages(self) -> list[dict[str, str]]:
        plain = []
        for message in self.messages:
            content = message.content
            if isinstance(content, list):
                content = "".join(part.text for part in content if part.type == "text")
            plain.append({"role": message.role, "content": content or ""})
        return plain

    def max_output_tokens(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 1 << 20  # up to the context, as OpenAI does

    def logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None
