"""Grading in child processes that can be killed: the only hard time limit that works from any thread.

`signal.alarm` only interrupts the main thread, and a SymPy call cannot be cancelled from outside, so
work that may run long is sent to a `python -m deepscaler.reward.worker` child over pipes (JSON lines)
and the child is killed and replaced when it overruns. The child runs with a memory cap, and never
writes files.

JSON lines rather than the pickles of the engine's workers (inference/engines/parallel.py): the child feeds
text a model wrote (adversarial at worst) to a large library, so the parent trusts nothing it sends back and
reads only data, which unpickling is not (it can run code); the messages are only strings and numbers; and
every read has a deadline, which select() on the pipe gives to a line but not to pickle.load on a stream.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

STARTUP_TIMEOUT = 30.0  # a cold child imports SymPy (~0.5 s); generous for a loaded machine


class WorkerDied(RuntimeError):
    """The child exited or closed its pipe."""


class WorkerProcess:
    """One grading child. Not thread-safe: one request in flight at a time."""

    def __init__(self) -> None:
        env = dict(os.environ, DEEPSCALER_REWARD_WORKER="1", PYTHONDONTWRITEBYTECODE="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deepscaler.reward.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            close_fds=True,
        )
        self._buffer = b""
        self.ready = False

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        if not self.ready:
            if self.receive(timeout) is None:
                self.kill()
                raise WorkerDied("grading worker did not start")
            self.ready = True

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as error:
            raise WorkerDied(str(error)) from None

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None when none arrives within timeout seconds."""
        deadline = time.monotonic() + timeout
        stream = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([stream], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(stream, 1 << 16)
            if not chunk:
                raise WorkerDied("grading worker exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def fileno(self) -> int:
        return self.process.stdout.fileno()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def alive(self) -> bool:
        return self.process.poll() is None


class SharedWorkers:
    """Process-wide idle children for one-off calls; a thread checks one out per request."""

    def __init__(self, max_workers: int = 2 * (os.cpu_count() or 1)) -> None:
        self._idle: list[WorkerProcess] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_workers)
        atexit.register(self.close)

    def run(self, message: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """The child's answer, or None when it took longer than timeout (the child is then killed).

        At most max_workers children run at once; a thread that cannot get one within `timeout` gets
        None too, so the bound holds however many threads call.
        """
        if not self._slots.acquire(timeout=timeout):
            return None
        try:
            return self._run(message, timeout)
        finally:
            self._slots.release()

    def _run(self, message: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None or not worker.alive():
            worker = WorkerProcess()
        try:
            worker.wait_ready()
            worker.send(message)
            answer = worker.receive(timeout)
        except WorkerDied:
            worker.kill()
            return None
        if answer is None:
            worker.kill()
            return None
        with self._lock:
            self._idle.append(worker)
        return answer

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


shared_workers = SharedWorkers()
