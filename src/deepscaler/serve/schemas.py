"""Request bodies of the OpenAI-compatible endpoints (unknown fields are accepted and ignored, as
clients send many optional ones)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_N = 64


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = -1
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(None, ge=0, le=20)

    def prompt_list(self) -> list[str | list[int]]:
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(t, int) for t in prompt):
            return [list(prompt)]  # one prompt given as token ids
        return list(prompt)

    def max_output_tokens(self) -> int:
        return self.max_tokens or 16  # the OpenAI completions default

    def logprobs_wanted(self) -> int | None:
        return self.logprobs


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: str = ""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

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
