"""An OpenAI-compatible HTTP server over deepscaler's LLM: /v1/chat/completions, /v1/completions (with
streaming), /v1/models, /health. Bad requests get a 4xx with an OpenAI-style error body; the server
keeps serving."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from deepscaler.inference.outputs import CompletionOutput
from deepscaler.inference.params import SamplingParams
from deepscaler.serve.batcher import Batcher
from deepscaler.serve.body import BodyLimit
from deepscaler.serve.errors import HTTPError, error_body, install_error_handlers
from deepscaler.serve.limits import EngineLimits
from deepscaler.serve.schemas import PROMPT_FORMS, ChatRequest, CompletionRequest
from deepscaler.serve.streaming import TextStream

MAX_BODY_BYTES = 2_000_000


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """request: the most a generation may take, queueing included (504 past it). body_idle / body_total: how
    long a request body may pause / take in all (408). stall: how long an engine with work may show no
    progress before /health reports it (503)."""

    request: float = 600.0
    body_idle: float = 10.0
    body_total: float = 60.0
    stall: float = 300.0


def create_app(llm: Any, model_name: str, api_key: str | None = None, max_batch: int = 64,
               timeouts: Timeouts = Timeouts()) -> FastAPI:
    """The FastAPI app serving `llm` (a deepscaler LLM) under the name `model_name`."""
    tokenizer = llm.get_tokenizer()
    engine = llm.engine
    batcher = Batcher(engine, max_batch=max_batch, stall_seconds=timeouts.stall)
    if not batcher.streams_tokens:
        # Without token callbacks (vLLM) progress shows only when a whole call ends, which may rightly take as
        # long as a request may.
        batcher.stall_seconds = max(timeouts.stall, timeouts.request)
    limits = EngineLimits.of(engine, tokenizer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(title="deepscaler", version="1", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, idle_seconds=timeouts.body_idle,
                       total_seconds=timeouts.body_total)

    def generate(ids: list[int], params: SamplingParams, on_token: Any = None) -> Any:
        problem = batcher.problem()
        if problem is not None:
            raise HTTPError(503, problem)
        return asyncio.wait_for(_generate(batcher, ids, params, on_token), timeout=timeouts.request)

    @app.get("/health")
    async def health():
        problem = batcher.problem()
        if problem is not None:
            return JSONResponse({"status": "unhealthy", **error_body(HTTPError(503, problem))}, status_code=503)
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        _authorize(request, api_key)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "deepscaler"}]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        _authorize(request, api_key)
        body = await _parse(request, CompletionRequest)
        _check_model(body.model, model_name)
        prompts = body.prompt_list()
        if len(prompts) != 1 and body.stream:
            raise HTTPError(400, "streaming takes a single prompt", param="stream")
        encoded = [(p if isinstance(p, list) else _encode(tokenizer, p)) for p in prompts]
        params = _sampling(body, limits)
        for ids in encoded:
            limits.check_prompt(ids, "prompt")
        fitted = [dataclasses.replace(params, max_tokens=limits.room(ids, params.max_tokens)) for ids in encoded]
        if body.stream:
            return _stream(generate, encoded[0], fitted[0], tokenizer, model_name, chat=False,
                           deadline=timeouts.request)
        results = await _timed(asyncio.gather(*(generate(ids, p) for ids, p in zip(encoded, fitted))))
        choices = []
        for outputs in results:
            for output in outputs:
                choices.append({"index": len(choices), "text": output.text, "finish_reason": output.finish_reason,
                                "logprobs": _completion_logprobs(output, tokenizer) if body.logprobs is not None
                                else None})
        return _envelope("text_completion", model_name, choices, encoded, results)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        _authorize(request, api_key)
        body = await _parse(request, ChatRequest)
        _check_model(body.model, model_name)
        try:
            text = tokenizer.apply_chat_template(body.plain_messages(), tokenize=False, add_generation_prompt=True)
        except Exception as error:  # a template may reject a message order (e.g. two system messages)
            raise HTTPError(400, f"messages cannot be rendered with the chat template: {error}",
                            param="messages") from None
        ids = _encode(tokenizer, text)
        params = _sampling(body, limits)
        limits.check_prompt(ids, "messages")
        params = dataclasses.replace(params, max_tokens=limits.room(ids, params.max_tokens))
        if body.stream:
            return _stream(generate, ids, params, tokenizer, model_name, chat=True, deadline=timeouts.request)
        outputs = await _timed(generate(ids, params))
        choices = [{"index": i, "message": {"role": "assistant", "content": o.text}, "finish_reason": o.finish_reason,
                    "logprobs": _chat_logprobs(o, tokenizer) if body.logprobs else None}
                   for i, o in enumerate(outputs)]
        return _envelope("chat.completion", model_name, choices, [ids], [outputs])

    return app


def _authorize(request: Request, api_key: str | None) -> None:
    if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
        raise HTTPError(401, "invalid or missing API key", "authentication_error")


async def _parse(request: Request, schema: type):
    raw = await request.body()  # BodyLimit has bounded its size and time
    try:
        data = json.loads(raw)
        # A lone surrogate (an escape such as "\\ud800") is valid JSON but no text: refuse it here, not
        # in the tokenizer.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (json.JSONDecodeError, UnicodeError) as error:
        raise HTTPError(400, f"body is not valid JSON text: {error}") from None
    except RecursionError:
        raise HTTPError(400, "body is nested too deeply") from None
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        param = str(first["loc"][0]) if first["loc"] else None
        if param == "prompt":  # pydantic would name one arm of the union, as if it were the one meant
            raise HTTPError(400, f"prompt must be {PROMPT_FORMS}", param=param) from None
        raise HTTPError(400, f"{where or 'body'}: {first['msg']}", param=param) from None


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _check_model(requested: str | None, served: str) -> None:
    if requested not in (None, "", served):
        raise HTTPError(404, f"model {requested!r} is not served here (this server serves {served!r})",
                        "model_not_found")


def _sampling(body: CompletionRequest | ChatRequest, limits: EngineLimits) -> SamplingParams:
    limits.check_top_k(body.top_k)
    try:
        return SamplingParams(
            temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, max_tokens=body.max_output_tokens(),
            n=body.n, seed=body.seed, stop=body.stop, logprobs=body.logprobs_wanted(),
        )
    except ValueError as error:  # its messages begin with the field's name
        raise HTTPError(400, str(error), param=str(error).split(" ", 1)[0]) from None


async def _generate(batcher: Batcher, ids: list[int], params: SamplingParams,
                    on_token: Any = None) -> list[CompletionOutput]:
    try:
        return await batcher.submit(ids, params, on_token=on_token)
    except ValueError as error:  # what the engine refuses that the checks above let through
        raise HTTPError(400, str(error)) from None
    except RuntimeError as error:
        raise HTTPError(503, str(error)) from None


async def _timed(work: Any) -> Any:
    try:
        return await work
    except asyncio.TimeoutError:
        raise HTTPError(504, "the request did not finish within the server's time limit") from None


def _envelope(kind: str, model: str, choices: list, prompts: list[list[int]], results: list) -> dict:
    completion_tokens = sum(len(o.token_ids) for outputs in results for o in outputs)
    prompt_tokens = sum(len(p) for p in prompts)
    return {"id": f"{'chatcmpl' if kind.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex}", "object": kind,
            "created": int(time.time()), "model": model, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def _token_strings(output: CompletionOutput, tokenizer: Any) -> list[str]:
    return [tokenizer.decode([t]) for t in output.token_ids]


def _completion_logprobs(output: CompletionOutput, tokenizer: Any) -> dict:
    return {"tokens": _token_strings(output, tokenizer), "token_logprobs": output.token_logprobs or [],
            "top_logprobs": [{tokenizer.decode([t]): v for t, v in entry.items()} for entry in output.logprobs or []]}


def _chat_logprobs(output: CompletionOutput, tokenizer: Any) -> dict:
    tokens = _token_strings(output, tokenizer)
    values = output.token_logprobs or [0.0] * len(tokens)
    return {"content": [{"token": t, "logprob": v, "bytes": list(t.encode()), "top_logprobs": []}
                        for t, v in zip(tokens, values)]}


def _stream(generate: Any, ids: list[int], params: SamplingParams, tokenizer: Any, model: str,
            chat: bool, deadline: float) -> StreamingResponse:
    """Server-sent events: one chunk per decoded piece of text, then the finish reasons, then [DONE].

    Everything that can be refused is refused before the 200 (the generation is queued here, so a stalled
    engine answers 503); an engine error or the deadline mid-stream ends it with an error event."""
    request_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    kind = "chat.completion.chunk" if chat else "text_completion"
    streams = [TextStream(tokenizer, params.stop) for _ in range(params.n)]
    pieces: asyncio.Queue = asyncio.Queue()

    def on_token(index: int, token: int) -> None:
        piece = streams[index].push(token)
        if piece:
            pieces.put_nowait((index, piece))

    task = asyncio.ensure_future(generate(ids, params, on_token))

    def chunk(index: int, text: str | None, finish: str | None, first: bool = False) -> str:
        if chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish}
        body = {"id": request_id, "object": kind, "created": int(time.time()), "model": model, "choices": [choice]}
        return f"data: {json.dumps(body)}\n\n"

    async def events() -> AsyncIterator[str]:
        try:
            if chat:
                for index in range(params.n):
                    yield chunk(index, None, None, first=True)
            while not task.done() or not pieces.empty():
                try:
                    index, piece = await asyncio.wait_for(pieces.get(), timeout=0.05)
                    yield chunk(index, piece, None)
                except asyncio.TimeoutError:
                    continue
            try:
                outputs = await _timed(task)
            except Exception as error:  # noqa: BLE001 - after the 200 an error event is all a client can get
                failure = error if isinstance(error, HTTPError) else HTTPError(500, f"generation failed: {error}")
                yield f"data: {json.dumps(error_body(failure))}\n\n"
                return
            for output in outputs:
                rest = streams[output.index].finish(output.text)
                if rest:
                    yield chunk(output.index, rest, None)
                yield chunk(output.index, None, output.finish_reason)
            yield "data: [DONE]\n\n"
        finally:  # the client left (or the stream ended): a request still queued need not run
            task.cancel()

    return StreamingResponse(events(), media_type="text/event-stream")
