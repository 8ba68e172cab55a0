"""The built-in engine: continuous batching over a lean transformer forward, on any machine.

Every completion is a sequence occupying one KV-cache slot. Live sequences are kept in slots 0..n-1:
when some finish, the last live ones move into the holes, so a decode step always runs on one dense
batch. Waiting sequences are prefilled into free slots in groups (all completions of a prompt share one
prefill), so long and short requests mix freely and no slot idles while work is queued.
"""

from __future__ import annotations

import random
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from deepscaler.inference.engines.generation import Generation
from deepscaler.inference.engines.lean import LeanCausalLM
from deepscaler.inference.engines.parallel import (
    MIN_SEQUENCES_PER_PROCESS,
    EngineWorker,
    SharedWeights,
    split_requests,
)
from deepscaler.inference.engines.sampler import BatchSampler, completion_seed
from deepscaler.inference.engines.threads import ThreadTuner
from deepscaler.inference.models import quiet_transformers
from deepscaler.inference.outputs import CompletionOutput
from deepscaler.inference.params import SamplingParams

# data_parallel="auto" splits work between processes only for models up to this size: each process holds
# its own copy, and a big model's large matmuls already scale across threads.
AUTO_DATA_PARALLEL_MAX_PARAMETERS = 100_000_000
# ... and only calls asking for this many new tokens in all: a worker's first start (seconds) must pay off.
AUTO_MIN_TOKENS_TO_SPLIT = 4096


def resolve_dtype(dtype: str | torch.dtype, config_dtype: torch.dtype | str | None) -> torch.dtype:
    """'auto' means the checkpoint's dtype, except float16, which CPUs run poorly (float32 instead)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        name = str(config_dtype or "float32").replace("torch.", "")
        return torch.float32 if name == "float16" else getattr(torch, name)
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {dtype!r}")
    return getattr(torch, dtype)


class BuiltinEngine:
    """Engine on a Hugging Face causal LM folder (Qwen2, Qwen3, Llama, Mistral), CPU or GPU-less machines.

    max_num_seqs: most sequences decoded together; kv_cache_gb: memory the KV cache may use;
    max_num_batched_tokens: most (padded) prompt tokens in one prefill call. num_threads: torch threads
    while generating, None for torch's current count; "auto" picks 1 or all per step, whichever measures
    faster, which helps on a busy machine but gives up run-to-run reproducibility: some matrix products
    round differently on 1 and 2 threads, and near-tied tokens then flip.
    data_parallel: processes sharing a generate call (see engines/parallel.py): this one and
    data_parallel - 1 workers, each on its share of the threads; "auto" is 2 for a model of at most
    100M parameters when torch has 2 or more threads, else 1, and then splits only calls asking for 4096
    new tokens or more in all. A call is split only when each process gets at least 8 sequences and no
    per-token callback is set (streaming stays in this process). Results
    are reproducible for a given setting; a split batch rounds a little differently from a whole one.
    """

    name = "builtin"

    def __init__(
        self,
        model: str | Path,
        tokenizer: Any = None,
        dtype: str | torch.dtype = "auto",
        max_model_len: int | None = None,
        seed: int = 0,
        max_num_seqs: int = 256,
        max_num_batched_tokens: int = 8192,
        kv_cache_gb: float = 4.0,
        num_threads: int | str | None = None,
        data_parallel: int | str = "auto",
    ) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        path = Path(model)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no model found at {str(model)!r} (expected a folder with config.json)")
        config = AutoConfig.from_pretrained(path)
        self.dtype = resolve_dtype(dtype, getattr(config, "dtype", None))
        with quiet_transformers():
            hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).eval()
        self.model = LeanCausalLM(hf_model)
        del hf_model
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
        context = int(config.max_position_embeddings)
        if getattr(config, "use_sliding_window", True) and getattr(config, "sliding_window", None):
            # Within one window sliding attention equals full attention, so cap the context there.
            context = min(context, int(config.sliding_window))
        if max_model_len is not None and max_model_len > context:
            raise ValueError(f"max_model_len {max_model_len} exceeds the model's context of {context} tokens")
        self.max_model_len = int(max_model_len or context)
        self.eos_ids = frozenset(self._eos_ids(config, path, GenerationConfig))
        self.vocab_size = int(config.vocab_size)
        self.rng = random.Random(seed)
        if not (num_threads is None or num_threads == "auto" or (isinstance(num_threads, int) and num_threads > 0)):
            raise ValueError(f"num_threads must be a positive integer, None or 'auto', not {num_threads!r}")
        self.num_threads = num_threads
        if not (data_parallel == "auto" or (isinstance(data_parallel, int) and data_parallel > 0)):
            raise ValueError(f"data_parallel must be a positive integer or 'auto', not {data_parallel!r}")
        self.data_parallel = data_parallel
        self._tuner: ThreadTuner | None = None
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.kv_cache_bytes = int(kv_cache_gb * 2**30)
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        self._decode = backend.decode if backend is not None else self.tokenizer.decode
        # Seconds spent per phase in the last generate call (bench/bench_inference.py prints them).
        self.timings: dict[str, float] = {}
        self._on_token: Callable[[int, int, int], None] | None = None
        self._parameters = sum(t.numel() for t in self.model.tensors().values())
        self._seed = seed
        self._workers: list[EngineWorker] = []
        self._shared: SharedWeights | None = None  # the weights, once workers share them
        self._weights_version = 0  # bumped by update_weights: workers then drop their cached keys/values
        self._worker_spec = dict(model=str(path), tokenizer=tokenizer, dtype=self.dtype,
                                 max_model_len=self.max_model_len, max_num_seqs=max_num_seqs,
                                 max_num_batched_tokens=max_num_batched_tokens, kv_cache_gb=kv_cache_gb)
        weakref.finalize(self, _close_all, self._workers)

    def _eos_ids(self, config, path: Path, generation_config_cls) -> set[int]:
        ids: set[int] = set()
        candidates = [getattr(config, "eos_token_id", None), self.tokenizer.eos_token_id]
        if (path / "generation_config.json").is_file():
            candidates.append(generation_config_cls.from_pretrained(path).eos_token_id)
        for value in candidates:
            ids.update([value] if isinstance(value, int) else list(value or []))
        return ids

    def _validate(self, prompt: list[int]) -> None:
        if not prompt:
            raise ValueError("empty prompt: a prompt needs at least one token")
        if len(prompt) >= self.max_model_len:
            raise ValueError(
                f"prompt has {len(prompt)} tokens but the model's context (max_model_len) is "
                f"{self.max_model_len}, leaving no room to generate"
            )
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            raise ValueError(f"prompt token ids must be in [0, {self.vocab_size})")

    def _expand(self, prompts: Sequence[list[int]], params: Sequence[SamplingParams]) -> list[Generation]:
        seqs = []
        for request, (prompt, p) in enumerate(zip(prompts, params, strict=True)):
            self._validate(prompt)
            eos = frozenset() if p.ignore_eos else self.eos_ids
            for index in range(p.n):
                rng = None if p.seed is None else random.Random(completion_seed(p.seed, index))
                budget = min(p.max_tokens, self.max_model_len - len(prompt))
                stop_ids = eos | set(p.stop_token_ids)
                seqs.append(Generation(request, index, list(prompt), p, budget, stop_ids, eos, rng))
        return seqs

    def generate(
        self,
        prompts: Sequence[list[int]],
        params: Sequence[SamplingParams],
        use_tqdm: bool = False,
        on_token: Callable[[int, int, int], None] | None = None,
    ) -> list[list[CompletionOutput]]:
        """Sample params[i].n completions for each tokenised prompt; text decoded, stops applied.

        on_token(request, index, token_id), if given, is called for every sampled token as it is
        produced (for streaming); `request` indexes `prompts`, `index` is the completion's index.
        """
        self._on_token = on_token
        self.timings = dict.fromkeys(("prefill", "decode forward", "sampling", "bookkeeping"), 0.0)
        seqs = self._expand(prompts, params)
        if not seqs:
            return []
        processes = self._processes(params, len(seqs), on_token)
        threads = max(1, self._total_threads() // processes)
        remote = []
        if processes > 1:
            shards = split_requests(prompts, params, processes)
            try:
                remote = self._submit(prompts, params, shards[1:])
            except RuntimeError as error:
                self._stop_parallel(error)
            else:
                mine = set(shards[0])
                seqs = [s for s in seqs if s.request in mine]
        progress = None
        if use_tqdm:
            from tqdm import tqdm

            total = sum(p.n for p in params)
            progress = tqdm(total=total, desc="generating", unit="seq", dynamic_ncols=True)
        try:
            self._generate_here(seqs, progress, threads if remote else None)
            results: list[list[CompletionOutput]] = [[] for _ in prompts]
            for seq in seqs:
                results[seq.request].append(seq.output(self._text))
            self._collect(remote, prompts, params, results)
            if progress is not None:
                progress.update(progress.total - progress.n)  # the workers' share arrives all at once
        except BaseException:
            self._close_workers()  # their replies would otherwise be read as the next call's
            raise
        finally:
            if progress is not None:
                progress.close()
        return results

    def _total_threads(self) -> int:
        return self.num_threads if isinstance(self.num_threads, int) else torch.get_num_threads()

    def _pool_size(self) -> int:
        """Processes this engine may split a call between (data_parallel, resolved)."""
        if self.data_parallel != "auto":
            return self.data_parallel
        small = self._parameters <= AUTO_DATA_PARALLEL_MAX_PARAMETERS
        return 2 if small and self._total_threads() >= 2 else 1

    def _processes(self, params: Sequence[SamplingParams], sequences: int, on_token) -> int:
        """How many processes share this call: 1 unless splitting pays (see the class docstring)."""
        if on_token is not None:
            return 1
        if self.data_parallel == "auto" and sum(p.n * p.max_tokens for p in params) < AUTO_MIN_TOKENS_TO_SPLIT:
            return 1  # too little work to pay for starting the worker
        return max(1, min(self._pool_size(), sequences // MIN_SEQUENCES_PER_PROCESS, len(params)))

    def _stop_parallel(self, error: Exception) -> None:
        warnings.warn(f"{error}; generating in this process only from now on", stacklevel=4)
        self.data_parallel = 1
        self._close_workers()

    def _submit(self, prompts, params, shards: list[list[int]]):
        """Start the workers' shards (launching workers on first use); returns [(worker, request indices)]."""
        if not self._workers:  # all at once: workers started later could not map the shared weights
            threads = max(1, self._total_threads() // self._pool_size())
            if self._shared is None or not self._shared.linked:
                self._shared = SharedWeights(self.model.tensors())
                self.model.adopt(self._shared.views)
            for number in range(1, self._pool_size()):
                spec = dict(self._worker_spec, num_threads=threads, data_parallel=1,
                            seed=completion_seed(self._seed, number),
                            kv_cache_gb=self._worker_spec["kv_cache_gb"] / self._pool_size())
                self._workers.append(EngineWorker(spec, self._shared))
        remote = []
        for worker, indices in zip(self._workers, shards, strict=False):
            worker.submit([prompts[i] for i in indices], [params[i] for i in indices], self._weights_version)
            remote.append((worker, indices))
        return remote

    def _collect(self, remote, prompts, params, results: list[list[CompletionOutput]]) -> None:
        """Fill `results` with the workers' shards; a shard whose worker failed is generated here instead."""
        start = time.perf_counter()
        failed: list[int] = []
        for worker, indices in remote:
            try:
                outputs = worker.collect()
            except RuntimeError as error:
                self._stop_parallel(error)
                failed.extend(indices)
                continue
            for request, completions in zip(indices, outputs, strict=True):
                results[request] = completions
        if remote:
            self.timings["waiting for workers"] = time.perf_counter() - start
            if all(worker.started for worker in self._workers):
                self._shared.unlink()  # every worker has mapped it
        if failed:
            redo = self.generate([prompts[i] for i in failed], [params[i] for i in failed])
            for request, completions in zip(failed, redo, strict=True):
                results[request] = completions

    def _generate_here(self, seqs: list[Generation], progress, fixed_threads: int | None) -> None:
        """Run `seqs` to completion in this process (fixed_threads: the thread count, else the engine's)."""
        max_len = max(len(s.prompt) + s.budget for s in seqs)
        per_slot = self.model.cache_bytes_per_slot(max_len)
        slots = min(self.max_num_seqs, len(seqs), max(1, self.kv_cache_bytes // per_slot))
        self.model.allocate_cache(slots, max_len)
        threads = torch.get_num_threads()
        fixed = fixed_threads or (None if self.num_threads == "auto" else self.num_threads or threads)
        if self._tuner is None or (self._tuner.fixed, max(self._tuner.options)) != (fixed, fixed or threads):
            self._tuner = ThreadTuner(threads, fixed=fixed)
        try:
            self._run(deque(seqs), slots, progress)
        finally:
            torch.set_num_threads(threads)

    def _run(self, waiting: deque[Generation], slots: int, progress) -> None:
        active: list[Generation] = []
        last = torch.zeros(slots, dtype=torch.long)
        positions = torch.zeros(slots, dtype=torch.long)
        sampler: BatchSampler | None = None
        refill_at = max(1, slots // 4)
        timings, clock, tuner = self.timings, time.perf_counter, self._tuner
        while waiting or active:
            free = slots - len(active)
            t0 = clock()
            if waiting and free and (not active or free >= min(refill_at, len(waiting))):
                tuner.apply_best()
                admitted, logits, prefill_sampler = self._prefill(waiting, len(active), free)
                tokens, logprobs = prefill_sampler.sample(logits)
                t1 = t2 = clock()
                timings["prefill"] += t1 - t0
                start = len(active)
                active.extend(admitted)
                last[start : len(active)] = tokens
                positions[start : len(active)] = torch.tensor([s.cached for s in admitted])
                self._record(admitted, tokens, logprobs, prefill_sampler, logits)
                sampler = None
            else:
                n = len(active)
                if sampler is None:
                    sampler = self._sampler(active)
                span = max(s.cached for s in active) + 1
                tuner.choose()
                t0 = clock()
                logits = self.model.decode(last[:n], positions[:n], span)
                t1 = clock()
                tokens, logprobs = sampler.sample(logits)
                t2 = clock()
                timings["decode forward"] += t1 - t0
                timings["sampling"] += t2 - t1
                tuner.record(t2 - t0, n)
                last[:n] = tokens
                positions[:n] += 1
                for seq in active:
                    seq.cached += 1
                self._record(active, tokens, logprobs, sampler, logits)
            done = [i for i, s in enumerate(active) if s.finish_reason is not None]
            if done:
                self._compact(active, done, last, positions)
                sampler = None
                if progress is not None:
                    progress.update(len(done))
            timings["bookkeeping"] += clock() - t2

    def _sampler(self, seqs: Sequence[Generation]) -> BatchSampler:
        return BatchSampler([s.params for s in seqs], [s.rng for s in seqs], self.rng)

    def _prefill(self, waiting: deque[Generation], first_slot: int, free: int):
        """Admit waiting sequences into free slots and prefill their prompts.

        Returns the admitted sequences, the logits for their first token, and their sampler.
        """
        admitted: list[Generation] = []
        prompts: list[list[int]] = []
        rows: list[int] = []
        while waiting and len(admitted) < free:
            seq = waiting[0]
            new_prompt = not admitted or admitted[-1].request != seq.request
            longest = max([len(p) for p in prompts] + [len(seq.prompt)])
            if new_prompt and prompts and longest * (len(prompts) + 1) > self.max_num_batched_tokens:
                break
            if new_prompt:
                prompts.append(seq.prompt)
            rows.append(len(prompts) - 1)
            admitted.append(waiting.popleft())
        width = max(len(p) for p in prompts)
        tokens = torch.zeros(len(prompts), width, dtype=torch.long)
        for i, p in enumerate(prompts):
            tokens[i, : len(p)] = torch.tensor(p)
        lengths = torch.tensor([len(p) for p in prompts])
        slot_ids = torch.arange(first_slot, first_slot + len(admitted))
        logits = self.model.prefill(tokens, lengths, slot_ids, torch.tensor(rows))[rows]
        for seq in admitted:
            seq.cached = len(seq.prompt)
        return admitted, logits, self._sampler(admitted)

    def _record(self, seqs: Sequence[Generation], tokens, logprobs, sampler: BatchSampler, logits) -> None:
        """Append each sequence's new token and decide whether it has finished."""
        if any(s.params.logprobs for s in seqs):
            self._record_top(seqs, sampler, logits, tokens, logprobs)
        for seq, token, logprob in zip(seqs, tokens.tolist(), logprobs.tolist(), strict=True):
            seq.append(token, logprob, self._text)
            if self._on_token is not None:
                self._on_token(seq.request, seq.index, token)

    def _record_top(self, seqs, sampler: BatchSampler, logits, tokens, logprobs) -> None:
        k = max(s.params.logprobs or 0 for s in seqs)
        ids, values = sampler.top_logprobs(logits, k)
        for i, seq in enumerate(seqs):
            if seq.params.logprobs:
                k_i = seq.params.logprobs
                entry = dict(zip(ids[i, :k_i].tolist(), values[i, :k_i].tolist(), strict=True))
                entry[int(tokens[i])] = float(logprobs[i])
                seq.top.append(entry)

    def _compact(
        self, active: list[Generation], done: list[int], last: torch.Tensor, positions: torch.Tensor
    ) -> None:
        """Drop finished sequences, moving the last live ones into their slots."""
        keep = len(active) - len(done)
        holes = [i for i in done if i < keep]
        movers = [i for i in range(keep, len(active)) if active[i].finish_reason is None]
        if holes:
            src, dst = torch.tensor(movers), torch.tensor(holes)
            span = max(active[i].cached for i in movers) + 1
            self.model.move_slots(src, dst, span)
            last[dst] = last[src]
            positions[dst] = positions[src]
            for h, m in zip(holes, movers, strict=True):
                active[h] = active[m]
        del active[keep:]

    def _text(self, tokens: list[int]) -> str:
        return self._decode(tokens, skip_special_tokens=True)

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace model weights in place (Hugging Face parameter names), e.g. after a training step.

        Each tensor is copied into the engine's own (shared, with workers) weights as it comes, from any device."""
        self.model.load_many(named_tensors)
        self._weights_version += 1

    def sleep(self, level: int = 1) -> None:
        """Give the trainer back host memory between rollouts, as vLLM's sleep mode does on a GPU: level 1 frees
        the KV cache; level 2 the weights too, which then come back as zeros at `wake_up` for `update_weights` to
        fill (all of them: the trainer sends every parameter). While data-parallel workers share the weights they
        are kept (the workers map them)."""
        self.model.release_cache()
        if level >= 2 and not self._workers:
            self.model.release_weights()

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        """Take the weights' memory back after a level-2 `sleep` (the KV cache is allocated by each generate)."""
        if (tags is None or "weights" in tags) and not self.model.has_weights:
            self.model.restore_weights()

    def close(self) -> None:
        """Free the KV cache (kept between generate calls, like vLLM's, to save re-allocating it) and stop
        the data-parallel workers."""
        self.model.release_cache()
        self._close_workers()

    def _close_workers(self) -> None:
        _close_all(self._workers)
        if self._shared is not None:
            self._shared.unlink()


def _close_all(workers: list[EngineWorker]) -> None:
    while workers:
        workers.pop().close()
