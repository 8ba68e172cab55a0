"""A stand-in for vLLM for the trainer's colocated-engine tests: no GPU, no vLLM, a few milliseconds a call.

Put its folder (tests/trainer/fake_vllm) first on PYTHONPATH. It pretends to be a GPU build and supports exactly
what engines/vllm_engine.py calls; it generates deterministic completions with log-probs, and appends every call
that matters to the colocated protocol to $FAKE_VLLM_LOG/rank<RANK>.jsonl, one JSON object a line.
"""

from __future__ import annotations

import json
import os
import random
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace

import torch


def _log(event: str, **fields) -> None:
    path = Path(os.environ["FAKE_VLLM_LOG"]) / f"rank{os.environ.get('RANK', '0')}.jsonl"
    with path.open("a") as log:
        log.write(json.dumps({"event": event, **fields}) + "\n")


class SamplingParams:
    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)


class LLM:
    def __init__(self, model: str, dtype: str = "auto", **kwargs) -> None:
        _log("init", kwargs=kwargs)
        hf_config = json.loads((Path(model) / "config.json").read_text())
        tied = hf_config.get("tie_word_embeddings", False)
        # "auto" as a GPU build serving a bfloat16 checkpoint (DeepScaleR's): the trainer's float32 weights must
        # arrive cast.
        config = SimpleNamespace(dtype=torch.bfloat16 if dtype == "auto" else getattr(torch, dtype),
                                 hf_text_config=SimpleNamespace(tie_word_embeddings=tied),
                                 max_model_len=kwargs.get("max_model_len") or hf_config["max_position_embeddings"],
                                 get_vocab_size=lambda: hf_config["vocab_size"])
        self.llm_engine = SimpleNamespace(model_config=config, engine_core=SimpleNamespace(shutdown=_shutdown))

    def generate(self, prompts: list[dict], params: list[SamplingParams], use_tqdm: bool = False) -> list:
        _log("generate", prompts=[p["prompt_token_ids"] for p in prompts], seeds=[p.seed for p in params])
        return [SimpleNamespace(outputs=[_completion(p["prompt_token_ids"], sp, i) for i in range(sp.n)])
                for p, sp in zip(prompts, params, strict=True)]

    def collective_rpc(self, method, kwargs: dict | None = None):
        if callable(method):  # a function run on the worker: this one has nothing to hook
            return [method(SimpleNamespace())]
        assert method == "reload_weights", method
        return [_reload(**kwargs)]

    def reset_prefix_cache(self) -> None:
        _log("reset_prefix_cache")

    def sleep(self, level: int = 1) -> None:
        _log("sleep", level=level)

    def wake_up(self, tags: list[str] | None = None) -> None:
        _log("wake_up", tags=tags)


def _shutdown() -> None:
    """Like vLLM's: the last thing it does is tear down the distributed state."""
    from vllm.v1.engine import core

    _log("shutdown")
    core.cleanup_dist_env_and_memory()


def _completion(prompt: list[int], params: SamplingParams, index: int) -> SimpleNamespace:
    """A few ordinary token ids and a boxed number (right or wrong), the same on every rank for the same request."""
    rng = random.Random(f"{params.seed}/{prompt}/{index}")
    tokens = [rng.randrange(10, 500) for _ in range(rng.randint(1, params.max_tokens))]
    logprobs = [{token: SimpleNamespace(logprob=-1.0)} for token in tokens]
    return SimpleNamespace(index=index, text=f"\\boxed{{{rng.randint(2, 18)}}}", token_ids=tokens,
                           finish_reason="length" if len(tokens) == params.max_tokens else "stop",
                           logprobs=logprobs if params.logprobs is not None else None, stop_reason=None)


def _reload(weights_iterator) -> None:
    """Consume the weights as vLLM's reload does, recording the most memory blocks of the tensors received so far
    alive at once: a stream keeps one or two (the current tensor, a tied embedding), a whole state dict all."""
    names, dtypes, received, most_alive = [], set(), [], 0
    for name, tensor in weights_iterator:
        names.append(name)
        dtypes.add(str(tensor.dtype))
        received.append(weakref.ref(tensor.untyped_storage()))  # a storage lives exactly as long as its memory
        most_alive = max(most_alive, len({id(ref()) for ref in received if ref() is not None}))
    _log("reload_weights", names=names, dtypes=sorted(dtypes), most_alive=most_alive,
         iterator=isinstance(weights_iterator, Iterator), mapping=isinstance(weights_iterator, Mapping))
