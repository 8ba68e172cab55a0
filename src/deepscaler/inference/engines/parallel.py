"""Data-parallel decoding: a generate call's requests split between this process and worker processes.

Why processes: a small model's decode step is a few dozen short operators. Two OpenMP threads on one
step meet at a barrier after each operator, and when the host is busy one of them is often descheduled
there (the thread tuner has then measured two-thread steps slower than one-thread ones); two processes,
each decoding half the batch on one thread, wait for nothing until the end of the call, and one thread
is what the fused decode kernels (kernels.py, attention.py) run on. Measured on 2 cores
(bench/bench_inference.py): 1.01x to 1.33x a single process without those kernels, 1.23x to 1.31x with
the Numba ones, 1.37x to 1.84x with the compiled attention (runs on a host whose speed varies).
Threads would share the GIL, which the step's Python overhead holds.

A worker is `python -m deepscaler.inference.engines.parallel`, a built-in engine of its own on the same
model folder. It reads pickled requests from its stdin and writes pickled replies to its stdout (the
rest of its output goes to stderr), one reply per request, so neither side can block on the other.
It exits when its stdin closes, so it never outlives the engine that started it.
The weights live in one shared file mapping (`SharedWeights`) that every process's model views, so a
weight update written by the main engine is at once the workers' too: nothing is copied per update.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from deepscaler.inference.params import SamplingParams

# Fewer sequences than this per process and a split costs more (a round trip, thinner batches) than it saves.
MIN_SEQUENCES_PER_PROCESS = 8


def split_requests(prompts: Sequence[list[int]], params: Sequence[SamplingParams], shards: int) -> list[list[int]]:
    """Request indices for each of `shards` processes, whole requests only (the completions of a prompt
    share one prefill), balanced by the tokens each request may take: longest first, to the lightest shard.

    Deterministic: the same requests always split the same way, so seeded results do not depend on timing.
    """
    work = [p.n * (len(prompt) + p.max_tokens) for prompt, p in zip(prompts, params, strict=True)]
    loads = [0] * shards
    assigned: list[list[int]] = [[] for _ in range(shards)]
    for request in sorted(range(len(work)), key=lambda i: (-work[i], i)):
        lightest = min(range(shards), key=lambda s: (loads[s], s))
        assigned[lightest].append(request)
        loads[lightest] += work[request]
    return [sorted(indices) for indices in assigned]


class SharedWeights:
    """A model's weights (LeanCausalLM.tensors()) moved into one memory-mapped file that other processes map too.

    The file is deleted once every worker has mapped it (`unlink`); the mappings outlive it.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        dtype = next(iter(tensors.values())).dtype
        if any(t.dtype != dtype for t in tensors.values()):
            raise ValueError("shared weights must all have one dtype")
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        handle, self.path = tempfile.mkstemp(prefix="deepscaler-weights-", dir=folder)
        os.close(handle)
        self.dtype = dtype
        self.layout: list[tuple[str, int, tuple[int, ...]]] = []
        offset = 0
        for name, tensor in tensors.items():
            self.layout.append((name, offset, tuple(tensor.shape)))
            offset += tensor.numel()
        self.size = offset
        self.views = self.map(self.path, self.layout, self.size, dtype)
        for name, tensor in tensors.items():
            self.views[name].copy_(tensor)
        # Deleted at the latest when this object is collected or the interpreter exits.
        self._finalizer = weakref.finalize(self, _remove, self.path)

    @staticmethod
    def map(path: str, layout, size: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        flat = torch.from_file(path, shared=True, size=size, dtype=dtype)
        return {name: flat[offset : offset + math.prod(shape)].view(shape) for name, offset, shape in layout}

    @property
    def linked(self) -> bool:
        """Whether new processes can still map the weights."""
        return self._finalizer.alive

    def unlink(self) -> None:
        self._finalizer()


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class EngineWorker:
    """One worker process: started at once, waited for only when first given work."""

    def __init__(self, spec: dict[str, Any], weights: SharedWeights) -> None:
        import deepscaler

        env = dict(os.environ)
        package_root = str(Path(deepscaler.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        threads = str(spec["num_threads"])
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deepscaler.inference.engines.parallel"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        self.started = False  # until its acknowledgement that it has mapped the shared weights is read
        try:
            self._send(spec)
            self._send((weights.path, weights.layout, weights.size, weights.dtype))
        except RuntimeError:
            self.close()
            raise

    def _send(self, message: Any) -> None:
        try:
            pickle.dump(message, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.process.stdin.flush()
        except OSError as error:
            raise RuntimeError(f"data-parallel worker exited ({self._exit()})") from error
        except (pickle.PicklingError, TypeError, AttributeError) as error:  # e.g. a tokenizer that cannot be sent
            raise RuntimeError(f"data-parallel worker could not be sent its work ({error})") from error

    def _exit(self) -> str:
        code = self.process.poll()
        return "still running" if code is None else f"exit code {code}"

    def _receive(self) -> Any:
        try:
            status, payload = pickle.load(self.process.stdout)
        except (EOFError, pickle.UnpicklingError, OSError) as error:
            raise RuntimeError(f"data-parallel worker exited ({self._exit()})") from error
        if status != "ok":
            raise RuntimeError(f"data-parallel worker failed: {payload}")
        return payload

    def submit(self, prompts: list[list[int]], params: list[SamplingParams], weights_version: int) -> None:
        """Send a shard; returns at once. weights_version changes when the shared weights have been updated."""
        self._send((prompts, params, weights_version))

    def collect(self) -> list[list[Any]]:
        """The submitted shard's outputs: per request, a list of CompletionOutput."""
        if not self.started:
            self._receive()
            self.started = True
        return self._receive()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=5)  # an idle worker exits at once; a busy one is killed
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()


def _serve(requests, replies) -> None:
    from deepscaler.inference.engines.builtin import BuiltinEngine

    def reply(message) -> None:
        pickle.dump(message, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()

    spec = pickle.load(requests)
    torch.set_num_threads(spec["num_threads"])
    engine = BuiltinEngine(**spec)
    engine.model.adopt(SharedWeights.map(*pickle.load(requests)))
    reply(("ok", None))
    version = 0
    while True:
        try:
            prompts, params, weights_version = pickle.load(requests)
        except EOFError:
            return
        try:
            if weights_version != version:  # keys and values cached under the old weights are stale
                engine.model.clear_cache()
                version = weights_version
            reply(("ok", engine.generate(prompts, params)))
        except Exception as error:  # reported to the main process, which raises it there
            reply(("error", f"{type(error).__name__}: {error}"))


def main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the reply stream
    _serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
