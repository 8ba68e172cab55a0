"""A client with LLM's `generate` / `chat` interface for any OpenAI-compatible server (vLLM serve, SGLang,
TGI, `deepscaler serve`): a concurrency limit, retries with exponential backoff, and timeouts."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deepscaler.inference.outputs import CompletionOutput, RequestOutput
from deepscaler.inference.params import SamplingParams

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class RemoteError(RuntimeError):
    """The server refused a request, or kept failing after all retries."""


def wait_until_serving(root_url: str, server: Any = None, timeout: float = 300.0) -> None:
    """Block until the server at `root_url` (http://host:port) answers GET /health with 200: a server started a
    moment ago loads its model first. RemoteError when `server` (a subprocess.Popen) exits first or `timeout`
    seconds pass."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{root_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server is not None and server.poll() is not None:
            raise RemoteError(f"the server exited (code {server.returncode}) before it answered {root_url}/health")
        time.sleep(0.2)
    raise RemoteError(f"{root_url}/health did not answer 200 within {timeout:.0f} s")


class RemoteLLM:
    """Generate through an OpenAI-compatible server at `base_url` (e.g. http://127.0.0.1:8000/v1).

    model: the served model name (default: the server's first). concurrency: requests in flight at once.
    retries: further attempts after a connection error, a time-out or a 408/429/5xx answer, waiting
    backoff·2^k seconds between them. Token counts come from the per-token log-probs the server returns.
    """

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, concurrency: int = 16,
                 timeout: float = 600.0, retries: int = 3, backoff: float = 0.5) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                   limits=httpx.Limits(max_connections=concurrency))
        self.concurrency, self.retries, self.backoff = concurrency, retries, backoff
        self.model = model or self._first_model()

    def _first_model(self) -> str:
        listing = self._request("GET", "/models")
        models = [entry["id"] for entry in listing.get("data", [])]
        if not models:
            raise RemoteError(f"{self.base_url}/models lists no model")
        return models[0]

    def get_tokenizer(self) -> None:
        return None  # the server applies its own chat template

    def generate(self, prompts: str | Sequence[str], sampling_params: SamplingParams | Sequence[SamplingParams]
                 | None = None, use_tqdm: bool = False) -> list[RequestOutput]:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        bodies = [{"prompt": p} for p in prompts]
        return self._run("/completions", bodies, prompts, sampling_params, chat=False)

    def chat(self, messages: Sequence[Mapping[str, str]] | Sequence[Sequence[Mapping[str, str]]],
             sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
             use_tqdm: bool = False) -> list[RequestOutput]:
        conversations = [messages] if messages and isinstance(messages[0], Mapping) else list(messages)
        bodies = [{"messages": [dict(m) for m in conversation]} for conversation in conversations]
        return self._run("/chat/completions", bodies, [None] * len(bodies), sampling_params, chat=True)

    def _run(self, path: str, bodies: list[dict], prompts: list, sampling_params, chat: bool) -> list[RequestOutput]:
        if sampling_params is None or isinstance(sampling_params, SamplingParams):
            params = [sampling_params or SamplingParams()] * len(bodies)
        else:
            params = list(sampling_params)
        requests = [{**body, **_sampling_fields(p, chat), "model": self.model} for body, p in zip(bodies, params)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            answers = list(pool.map(lambda body: self._request("POST", path, body), requests))
        return [RequestOutput(answer.get("id", str(i)), prompt, [], _completions(answer, chat))
                for i, (prompt, answer) in enumerate(zip(prompts, answers))]

    def _request(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        import httpx

        for attempt in range(self.retries + 1):
            try:
                response = self.client.request(method, path, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as error:
                failure = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    return response.json()
                failure = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in RETRY_STATUS:
                    raise RemoteError(f"{self.base_url}{path}: {failure}")
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        raise RemoteError(f"{self.base_url}{path}: failed after {self.retries + 1} attempts ({failure})")

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RemoteLLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _sampling_fields(params: SamplingParams, chat: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"temperature": params.temperature, "top_p": params.top_p, "n": params.n,
                              "max_tokens": params.max_tokens, "logprobs": True if chat else 0}
    if params.top_k not in (-1, 0):
        fields["top_k"] = params.top_k  # an extension vLLM, SGLang and deepscaler accept
    if params.seed is not None:
        fields["seed"] = params.seed
    if params.stop:
        fields["stop"] = params.stop
    return fields


def _completions(answer: dict[str, Any], chat: bool) -> list[CompletionOutput]:
    outputs = []
    for choice in sorted(answer.get("choices", []), key=lambda c: c.get("index", 0)):
        text = (choice["message"].get("content") or "") if chat else choice.get("text", "")
        logprobs = choice.get("logprobs") or {}
        values = [entry.get("logprob", 0.0) for entry in logprobs.get("content") or []] if chat \
            else list(logprobs.get("token_logprobs") or [])
        # Token ids are not part of the OpenAI protocol; the count of per-token log-probs gives the length.
        outputs.append(CompletionOutput(index=choice.get("index", len(outputs)), text=text,
                                        token_ids=[-1] * len(values), finish_reason=choice.get("finish_reason")
                                        or "stop", token_logprobs=values or None))
    return outputs
