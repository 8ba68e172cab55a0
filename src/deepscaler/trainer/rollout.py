"""Rollouts: sample a group of responses per prompt with the inference layer, score them with the verifier."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch

from deepscaler.config import ConfigError
from deepscaler.inference import SamplingParams
from deepscaler.reward import RewardScorer
from deepscaler.trainer.config import RolloutConfig, StageConfig, TrainConfig, longest_sequence
from deepscaler.trainer.data import Prompt
from deepscaler.trainer.sequences import Sample


def engine_options(config: TrainConfig, world_size: int) -> dict[str, Any]:
    """The rollout engine's options beyond model and seed: the built-in engine's, or those of a vLLM engine
    colocated with this rank's trainer."""
    rollout = config.rollout
    if rollout.engine == "builtin":
        return {"kv_cache_gb": rollout.kv_cache_gb, "data_parallel": rollout.data_parallel,
                "num_threads": rollout.num_threads}
    if world_size % rollout.tensor_parallel_size:
        raise ConfigError(f"rollout.tensor_parallel_size={rollout.tensor_parallel_size} must divide the number of "
                          f"ranks ({world_size}): each vLLM engine spans that many ranks")
    options = {
        "tensor_parallel_size": rollout.tensor_parallel_size,
        "gpu_memory_utilization": rollout.gpu_memory_utilization,
        "max_model_len": rollout.max_model_len or longest_sequence(config),
        "enable_sleep_mode": rollout.enable_sleep_mode,
    }
    if world_size > 1:
        # vLLM's single-process executor would put every rank's engine on GPU 0. This one (vLLM 0.32's
        # ExecutorWithExternalLauncher) takes RANK and LOCAL_RANK from torchrun's environment and builds vLLM's
        # groups on torchrun's process group: tensor-parallel groups of consecutive ranks, the groups themselves
        # independent engines ("external data parallel", vllm/distributed/parallel_state.py).
        options["distributed_executor_backend"] = "external_launcher"
    return options


def rollout_seed(seed: int, step: int, uid: str, round_: int = 0) -> int:
    """Sampling seed of one prompt at one step: independent of batching, of ranks and of resuming."""
    digest = hashlib.sha256(f"{seed}/{step}/{round_}/{uid}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def generate_groups(
    llm: Any, prompts: Sequence[Prompt], first_group: int, stage: StageConfig, rollout: RolloutConfig,
    seed: int, step: int, round_: int = 0,
) -> tuple[list[Sample], list[str], list[list[str]]]:
    """samples_per_prompt responses for each prompt, as Samples (group ids from first_group on), with
    their texts and golds for scoring."""
    params = [
        SamplingParams(temperature=rollout.temperature, top_p=rollout.top_p, top_k=rollout.top_k,
                       max_tokens=stage.max_response_tokens, n=stage.samples_per_prompt, logprobs=0,
                       seed=rollout_seed(seed, step, p.uid, round_))
        for p in prompts
    ]
    outputs = llm.generate([{"prompt_token_ids": p.token_ids} for p in prompts], params, use_tqdm=False)
    samples, texts, golds = [], [], []
    for offset, (prompt, output) in enumerate(zip(prompts, outputs)):
        for completion in output.outputs:
            samples.append(Sample(
                prompt=prompt.token_ids, response=list(completion.token_ids), group=first_group + offset,
                truncated=completion.finish_reason == "length",
                rollout_logp=torch.tensor(completion.token_logprobs, dtype=torch.float32),
            ))
            texts.append(completion.text)
            golds.append(prompt.answers)
    return samples, texts, golds


def score(samples: list[Sample], texts: list[str], golds: list[list[str]], scorer: RewardScorer) -> dict[str, float]:
    """Set each sample's reward (1 correct, 0 not); returns the scorer's counts."""
    rewards = scorer.score(texts, golds)
    for sample, reward in zip(samples, rewards):
        sample.reward = reward
    stats = scorer.stats
    return {"score/timeouts": float(stats.timeouts), "score/no_answer": float(stats.no_answer)}


def informative_groups(samples: list[Sample]) -> list[list[Sample]]:
    """Groups whose rewards are not all equal (DAPO's dynamic sampling keeps only these: an all-equal
    group has zero advantage everywhere and teaches nothing)."""
    groups: dict[int, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.group, []).append(sample)
    return [members for members in groups.values() if len({m.reward for m in members}) > 1]
