"""Concurrent requests batched onto one engine: a worker thread drains a queue into engine.generate calls.

Requests that arrive while a batch runs wait (at most one batch) and go together into the next one, so
64 clients cost a few batched engine calls rather than 64 sequential ones. Token callbacks, when the
engine offers them, feed streaming responses.

A watchdog for /health: the batcher notes the time of the engine's last sign of life (a call starting
or ending, a token). An engine with work pending that has shown none for `stall_seconds` has stopped
answering, as has a worker thread that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deepscaler.inference.outputs import CompletionOutput
from deepscaler.inference.params import SamplingParams

logger = logging.getLogger(__name__)

TokenCallback = Callable[[int, int], None]  # (completion index, token id)


@dataclass
class Job:
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    on_token: TokenCallback | None = None
    queued_at: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, engine: Any, max_batch: int = 64, wait_seconds: float = 0.005,
                 stall_seconds: float = 300.0) -> None:
        self.engine, self.max_batch, self.wait_seconds = engine, max_batch, wait_seconds
        self.stall_seconds = stall_seconds
        self.streams_tokens = "on_token" in inspect.signature(engine.generate).parameters
        if not self.streams_tokens:
            logger.warning("the %s engine cannot stream tokens: streamed responses arrive whole, at the end",
                           getattr(engine, "name", type(engine).__name__))
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending = 0  # jobs submitted and not yet resolved
        self._in_engine = False  # inside engine.generate (possibly for jobs whose clients gave up)
        self._last_progress = time.monotonic()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="deepscaler-batcher", daemon=True)
        self._thread.start()

    async def submit(self, prompt_ids: list[int], params: SamplingParams,
                     on_token: TokenCallback | None = None) -> list[CompletionOutput]:
        if self._closed:
            raise RuntimeError("the server is shutting down")
        loop = asyncio.get_running_loop()
        job = Job(prompt_ids, params, loop, loop.create_future(), on_token)
        with self._lock:
            if self._pending == 0:
                self._last_progress = time.monotonic()  # an idle engine's silence is not a stall
            self._pending += 1
        job.future.add_done_callback(self._done)
        self._queue.put(job)
        return await job.future

    def problem(self) -> str | None:
        """Why the engine is not answering, or None while it is."""
        if not self._thread.is_alive():
            return "the engine's worker thread has stopped"
        silent = time.monotonic() - self._last_progress
        if (self._pending or self._in_engine) and silent > self.stall_seconds:
            return f"the engine has not progressed for {silent:.0f} s ({self._pending} request(s) waiting)"
        return None

    def close(self, wait_seconds: float = 1.0) -> None:
        """Stop taking work; a batch in the engine gets `wait_seconds` to finish (a hung engine is left behind:
        the thread is a daemon), and queued requests are refused."""
        self._closed = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                _resolve(job, error=RuntimeError("the server is shutting down"))
        self._queue.put(None)
        self._thread.join(timeout=wait_seconds)

    def _done(self, _: asyncio.Future) -> None:
        with self._lock:
            self._pending -= 1

    def _progress(self) -> None:
        self._last_progress = time.monotonic()

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            deadline = time.monotonic() + self.wait_seconds
            while len(jobs) < self.max_batch:
                try:
                    more = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                jobs.append(more)
            jobs = [j for j in jobs if not j.future.done()]  # timed out or cancelled while queued
            if jobs:
                self._run(jobs)

    def _run(self, jobs: list[Job]) -> None:
        kwargs = {}
        if self.streams_tokens:
            def on_token(request: int, index: int, token: int) -> None:
                self._last_progress = time.monotonic()
                callback = jobs[request].on_token
                if callback is not None:
                    _call_soon(jobs[request].loop, callback, index, token)

            kwargs["on_token"] = on_token
        self._progress()
        self._in_engine = True
        try:
            results = self.engine.generate([j.prompt_ids for j in jobs], [j.params for j in jobs], **kwargs)
        except Exception as error:  # one bad batch must not take the server down: each request gets the error
            self._progress()
            self._in_engine = False
            if len(jobs) > 1:  # find the culprit: rerun one by one
                for job in jobs:
                    self._run([job])
                return
            _resolve(jobs[0], error=error)
            return
        self._progress()
        self._in_engine = False
        for job, outputs in zip(jobs, results):
            _resolve(job, outputs=outputs)


def _resolve(job: Job, outputs: list[CompletionOutput] | None = None, error: Exception | None = None) -> None:
    def finish() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(outputs)

    _call_soon(job.loop, finish)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable, *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop (the server is gone): nobody is waiting any more
        loop.call_soon_threadsafe(callback, *args)
