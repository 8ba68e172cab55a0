"""The built-in engine: continuous batching over a lean transformer forward, on any machine.

This module is the engine's face: loading the model, checking requests, and one generate call's course.
The step loop is scheduler.py, the split of a call between processes parallel.py (workers: worker.py),
the choice of thread count per step threads.py.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from deepscaler.inference.engines.generation import Generation
from deepscaler.inference.engines.lean import LeanCausalLM
from deepscaler.inference.engines.parallel import DataParallel, split_requests
from deepscaler.inference.engines.sampler import completion_seed
from deepscaler.inference.engines.scheduler import TIMED_PHASES, Scheduler
from deepscaler.inference.models import quiet_transformers
from deepscaler.inference.outputs import CompletionOutput
from deepscaler.inference.params import SamplingParams


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
        if not (num_threads is None or num_threads == "auto" or (isinstance(num_threads, int) and num_threads > 0)):
            raise ValueError(f"num_threads must be a positive integer, None or 'auto', not {num_threads!r}")
        self.num_threads = num_threads
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        # Not a method: the scheduler holds it, and a bound method would tie the engine into a reference cycle
        # that delays closing its workers when it is dropped.
        self._text = partial(backend.decode if backend is not None else self.tokenizer.decode,
                             skip_special_tokens=True)
        # Seconds spent per phase in the last generate call (bench/bench_inference.py prints them).
        self.timings: dict[str, float] = {}
        self.scheduler = Scheduler(self.model, self._text, random.Random(seed), max_num_seqs,
                                   max_num_batched_tokens, int(kv_cache_gb * 2**30))
        worker_spec = dict(model=str(path), tokenizer=tokenizer, dtype=self.dtype, max_model_len=self.max_model_len,
                           max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                           kv_cache_gb=kv_cache_gb)
        parameters = sum(t.numel() for t in self.model.tensors().values())
        self.parallel = DataParallel(data_parallel, parameters, worker_spec, seed)
        self._weights_version = 0  # bumped by update_weights: workers then drop their cached keys/values

    @property
    def data_parallel(self) -> int | str:
        """The data_parallel setting in force: as given, or 1 once a worker has failed."""
        return self.parallel.setting

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
        self.timings = dict.fromkeys(TIMED_PHASES, 0.0)
        seqs = self._expand(prompts, params)
        if not seqs:
            return []
        total_threads = self._total_threads()
        processes = self.parallel.processes(params, len(seqs), on_token is not None, total_threads)
        remote = []
        if processes > 1:
            shards = split_requests(prompts, params, processes)
            remote = self.parallel.submit(self.model, prompts, params, shards[1:], self._weights_version,
                                          total_threads)
            if remote:
                mine = set(shards[0])
                seqs = [s for s in seqs if s.request in mine]
        progress = None
        if use_tqdm:
            from tqdm import tqdm

            total = sum(p.n for p in params)
            progress = tqdm(total=total, desc="generating", unit="seq", dynamic_ncols=True)
        try:
            fixed_threads = max(1, total_threads // processes) if remote else self._fixed_threads()
            self.scheduler.run(seqs, self.timings, progress, fixed_threads, on_token)
            results: list[list[CompletionOutput]] = [[] for _ in prompts]
            for seq in seqs:
                results[seq.request].append(seq.output(self._text))
            if remote:
                start = time.perf_counter()
                failed = self.parallel.collect(remote, results)
                self.timings["waiting for workers"] = time.perf_counter() - start
                if failed:
                    redo = self.generate([prompts[i] for i in failed], [params[i] for i in failed])
                    for request, completions in zip(failed, redo, strict=True):
                        results[request] = completions
            if progress is not None:
                progress.update(progress.total - progress.n)  # the workers' share arrives all at once
        except BaseException:
            self.parallel.close()  # their replies would otherwise be read as the next call's
            raise
        finally:
            if progress is not None:
                progress.close()
        return results

    def _total_threads(self) -> int:
        return self.num_threads if isinstance(self.num_threads, int) else torch.get_num_threads()

    def _fixed_threads(self) -> int | None:
        """The thread count for a call run whole here; None lets the thread tuner choose step by step."""
        if self.num_threads == "auto":
            return None
        return self.num_threads or torch.get_num_threads()

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
        if level >= 2 and not self.parallel.workers:
            self.model.release_weights()

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        """Take the weights' memory back after a level-2 `sleep` (the KV cache is allocated by each generate)."""
        if (tags is None or "weights" in tags) and not self.model.has_weights:
            self.model.restore_weights()

    def close(self) -> None:
        """Free the KV cache (kept between generate calls, like vLLM's, to save re-allocating it) and stop
        the data-parallel workers."""
        self.model.release_cache()
        self.parallel.close()
