"""An OpenAI-compatible HTTP server over deepscaler's LLM: /v1/chat/completions, /v1/completions (with
streaming), /v1/models, /health. Bad requests get a 4xx with an OpenAI-style error body; the server
keeps serving."""

from __future__ import annotations

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
from deepscaler.serve.schemas import ChatRequest, CompletionRequest
from deepscaler.serve.streaming import TextStream

MAX_BODY_BYTES = 2_000_000


class HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def create_app(llm: Any, model_name: str, api_key: str | None = None, max_batch: int = 64) -> FastAPI:
    """The FastAPI app serving `llm` (a deepscaler LLM) under the name `model_name`."""
    tokenizer = llm.get_tokenizer()
    engine = llm.engine
    batcher = Batcher(engine, max_batch=max_batch)
    context = getattr(engine, "max_model_len", None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        batcher.close()

    app = FastAPI(title="deepscaler", version="1", lifespan=lifespan)

    @app.exception_handler(HTTPError)
    async def http_error(_: Request, error: HTTPError) -> JSONResponse:
        body = {"error": {"message": error.message, "type": error.kind, "code": error.status}}
        return JSONResponse(body, status_code=error.status)

    @app.get("/health")
    async def health() -> dict:
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
            raise HTTPError(400, "streaming takes a single prompt")
        encoded = [(p if isinstance(p, list) else tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        params = _sampling(body)
        for ids in encoded:
            _check_length(ids, params, context)
        if body.stream:
            return _stream(batcher, encoded[0], params, tokenizer, model_name, chat=False)
        results = [await _generate(batcher, ids, params) for ids in encoded]
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
            raise HTTPError(400, f"messages cannot be rendered with the chat template: {error}") from None
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        params = _sampling(body)
        _check_length(ids, params, context)
        if body.stream:
            return _stream(batcher, ids, params, tokenizer, model_name, chat=True)
        outputs = await _generate(batcher, ids, params)
        choices = [{"index": i, "message": {"role": "assistant", "content": o.text}, "finish_reason": o.finish_reason,
                    "logprobs": _chat_logprobs(o, tokenizer) if body.logprobs else None}
                   for i, o in enumerate(outputs)]
        return _envelope("chat.completion", model_name, choices, [ids], [outputs])

    return app


def _authorize(request: Request, api_key: str | None) -> None:
    if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
        raise HTTPError(401, "invalid or missing API key", "authentication_error")


async def _parse(request: Request, schema: type):
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPError(413, f"request body over {MAX_BODY_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise HTTPError(413, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPError(400, f"body is not valid JSON: {error}") from None
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise HTTPError(400, f"{where}: {first['msg']}") from None


def _check_model(requested: str | None, served: str) -> None:
    if requested not in (None, "", served):
        raise HTTPError(404, f"model {requested!r} is not served here (this server serves {served!r})",
                        "model_not_found")


def _sampling(body: CompletionRequest | ChatRequest) -> SamplingParams:
    try:
        return SamplingParams(
            temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, max_tokens=body.max_output_tokens(),
            n=body.n, seed=body.seed, stop=body.stop, logprobs=body.logprobs_wanted(),
        )
    except ValueError as error:
        raise HTTPError(400, str(error)) from None


def _check_length(ids: list[int], params: SamplingParams, context: int | None) -> None:
    if not ids:
        raise HTTPError(400, "the prompt is empty")
    if context is not None and len(ids) >= context:
        raise HTTPError(400, f"the prompt has {len(ids)} tokens; this model's context is {context} tokens")


async def _generate(batcher: Batcher, ids: list[int], params: SamplingParams) -> list[CompletionOutput]:
    try:
        return await batcher.submit(ids, params)
    except ValueError as error:
        raise HTTPError(400, str(error)) from None


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


def _stream(batcher: Batcher, ids: list[int], params: SamplingParams, tokenizer: Any, model: str,
            chat: bool) -> StreamingResponse:
    """Server-sent events: one chunk per decoded piece of text, then the finish reasons, then [DONE]."""
    request_id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    kind = "chat.completion.chunk" if chat else "text_completion"
    streams = [TextStream(tokenizer, params.stop) for _ in range(params.n)]

    def chunk(index: int, text: str | None, finish: str | None, first: bool = False) -> str:
        if chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish}
        body = {"id": request_id, "object": kind, "created": int(time.time()), "model": model, "choices": [choice]}
        return f"data: {json.dumps(body)}\n\n"

    async def events() -> AsyncIterator[str]:
        import asyncio

        pieces: asyncio.Queue = asyncio.Queue()

        def on_token(index: int, token: int) -> None:
            piece = streams[index].push(token)
            if piece:
                pieces.put_nowait((index, piece))

        task = asyncio.ensure_future(batcher.submit(ids, params, on_token=on_token))
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
            outputs = task.result()
        except Exception as error:
            yield f"data: {json.dumps({'error': {'message': str(error), 'type': 'server_error'}})}\n\n"
            return
        for output in outputs:
            rest = streams[output.index].finish(output.text)
            if rest:
                yield chunk(output.index, rest, None)
            yield chunk(output.index, None, output.finish_reason)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
