"""Request bodies read within bounds of size and time, as a raw ASGI middleware.

The bytes are counted as they arrive, so a chunked body (no Content-Length) is refused with a 413 as
soon as it passes the limit instead of being held whole first; a client that stops sending (a
Content-Length larger than what it sends, one byte now and then) gets a 408 once it has been silent
for `idle_seconds` or has taken `total_seconds` in all. The app then reads the body from memory.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from deepscaler.serve.errors import HTTPError, error_body

Scope = dict[str, Any]


class BodyLimit:
    def __init__(self, app: Any, max_bytes: int, idle_seconds: float = 10.0, total_seconds: float = 60.0) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.idle_seconds, self.total_seconds = idle_seconds, total_seconds

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
        except HTTPError as error:
            await _send_error(send, error)
            return
        if body is None:  # the client went away
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # later calls wait for the disconnect, as streaming responses do
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Any) -> bytes | None:
        too_large = HTTPError(413, f"request body over {self.max_bytes} bytes")
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        chunks, size = [], 0
        deadline = time.monotonic() + self.total_seconds
        while True:
            wait = min(self.idle_seconds, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.0))
            except asyncio.TimeoutError:
                raise HTTPError(408, f"request body not received in time ({size} bytes read)") from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _send_error(send: Any, error: HTTPError) -> None:
    payload = json.dumps(error_body(error)).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
