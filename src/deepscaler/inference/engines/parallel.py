"""Data-parallel decoding: a generate call's requests split between this process and worker processes.

Why processes: a small model's decode step is a few dozen short operators. Two OpenMP threads on one
step meet at a barrier after each operator, and when the host is busy one of them is often descheduled
there (the thread tuner has then measured two-thread steps slower than one-thread ones); two processes,
each decoding half the batch on one thread, wait for nothing until the end of the call, and one thread
is what the fused decode kernels (kernels.py, attention.py) run on. Measured on 2 cores
(bench/bench_inference.py): 1.01x to 1.33x a single process without those kernels, 1.23x to 1.31x with
the Numba ones, 1.37x to 1.84x with the compiled attention (runs on a host whose speed varies).
Threads would share the GIL, which the step's Python overhead holds.

A worker is `python -m deepscaler.inference.engines.worker`, a built-in engine of its own on the same
model folder, one reply per request, so neither side can block on the other. It exits when its stdin
closes, so it never outlives the engine that started it. The weights live in one shared file mapping
(shared_weights.py) that every process's model views: nothing is copied per weight update.

Messages are pickled, unlike the grading children's JSON lines (reward/workers.py): both ends are this
package's own code on trusted data, the messages are Python objects (SamplingParams, CompletionOutput, a
tokenizer, a torch dtype) that JSON cannot carry, and a call waits for its whole shard, so a blocking read
needs no deadline.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepscaler.inference.engines.lean import LeanCausalLM
from deepscaler.inference.engines.sampler import completion_seed
from deepscaler.inference.engines.shared_weights import SharedWeights
from deepscaler.inference.outputs import CompletionOutput
from deepscaler.inference.params import SamplingParams

# data_parallel="auto" splits work between processes only for models up to this size: each process holds
# its own copy, and a big model's large matmuls already scale across threads.
AUTO_DATA_PARALLEL_MAX_PARAMETERS = 100_000_000
# ... and only calls asking for this many new tokens in all: a worker's first start (seconds) must pay off.
AUTO_MIN_TOKENS_TO_SPLIT = 4096
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
            [sys.executable, "-m", "deepscaler.inference.engines.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        self.started = False  # until its acknowledgement that it has mapped the shared weights is read
        try:
            self._send(spec)
            self._send(weights.address)
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


class DataParallel:
    """One engine's worker processes, and how each of its generate calls is split between them and it.

    setting: the engine's data_parallel (a process count or "auto"); it drops to 1 for good when a worker
    fails. worker_spec: the engine's keyword arguments for a worker's own engine.
    """

    def __init__(self, setting: int | str, parameters: int, worker_spec: dict[str, Any], seed: int) -> None:
        if not (setting == "auto" or (isinstance(setting, int) and setting > 0)):
            raise ValueError(f"data_parallel must be a positive integer or 'auto', not {setting!r}")
        self.setting = setting
        self.parameters = parameters
        self.worker_spec = worker_spec
        self.seed = seed
        self.workers: list[EngineWorker] = []
        self.shared: SharedWeights | None = None  # the weights, once workers share them
        weakref.finalize(self, _close_all, self.workers)

    def pool_size(self, threads: int) -> int:
        """Processes a call may be split between (the setting, resolved for a model on `threads` threads)."""
        if self.setting != "auto":
            return self.setting
        return 2 if self.parameters <= AUTO_DATA_PARALLEL_MAX_PARAMETERS and threads >= 2 else 1

    def processes(self, params: Sequence[SamplingParams], sequences: int, streaming: bool, threads: int) -> int:
        """How many processes share this call: 1 unless splitting pays (see BuiltinEngine's docstring)."""
        if streaming:
            return 1  # per-token callbacks run in this process
        if self.setting == "auto" and sum(p.n * p.max_tokens for p in params) < AUTO_MIN_TOKENS_TO_SPLIT:
            return 1  # too little work to pay for starting the worker
        return max(1, min(self.pool_size(threads), sequences // MIN_SEQUENCES_PER_PROCESS, len(params)))

    def submit(self, model: LeanCausalLM, prompts: Sequence[list[int]], params: Sequence[SamplingParams],
               shards: list[list[int]], weights_version: int, threads: int) -> list[tuple[EngineWorker, list[int]]]:
        """Start the workers' shards, launching the workers on first use (the model then moves into shared
        weights); returns [(worker, request indices)], or [] when a worker could not be given its shard (a
        warning says so, and the call runs here whole)."""
        try:
            if not self.workers:  # all at once: workers started later could not map the shared weights
                self._launch(model, threads)
            remote = []
            for worker, indices in zip(self.workers, shards, strict=False):
                worker.submit([prompts[i] for i in indices], [params[i] for i in indices], weights_version)
                remote.append((worker, indices))
            return remote
        except RuntimeError as error:
            self.stop(error)
            return []

    def _launch(self, model: LeanCausalLM, threads: int) -> None:
        size = self.pool_size(threads)
        if self.shared is None or not self.shared.linked:
            self.shared = SharedWeights(model.tensors())
            model.adopt(self.shared.views)
        for number in range(1, size):
            spec = dict(self.worker_spec, num_threads=max(1, threads // size), data_parallel=1,
                        seed=completion_seed(self.seed, number), kv_cache_gb=self.worker_spec["kv_cache_gb"] / size)
            self.workers.append(EngineWorker(spec, self.shared))

    def collect(self, remote: list[tuple[EngineWorker, list[int]]],
                results: list[list[CompletionOutput]]) -> list[int]:
        """Fill `results` with the workers' shards; returns the requests of shards whose worker failed (a
        warning says so), for the caller to generate itself."""
        failed: list[int] = []
        for worker, indices in remote:
            try:
                outputs = worker.collect()
            except RuntimeError as error:
                self.stop(error)
                failed.extend(indices)
                continue
            for request, completions in zip(indices, outputs, strict=True):
                results[request] = completions
        if remote and self.workers and all(worker.started for worker in self.workers):
            self.shared.unlink()  # every worker has mapped it
        return failed

    def stop(self, error: Exception) -> None:
        """Give up on workers for good: warn, close them, and split no call from now on."""
        warnings.warn(f"{error}; generating in this process only from now on", stacklevel=5)
        self.setting = 1
        self.close()

    def close(self) -> None:
        _close_all(self.workers)
        if self.shared is not None:
            self.shared.unlink()


def _close_all(workers: list[EngineWorker]) -> None:
    while workers:
        workers.pop().close()
