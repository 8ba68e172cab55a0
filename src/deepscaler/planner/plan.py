"""A training config's memory plan: each stage's predicted peak per GPU, whether it fits, and the settings that would
make it fit. Pure functions of (model widths, config, GPU count, GPU memory); the memory model is memory.py."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from deepscaler.planner.architecture import ModelDims
from deepscaler.planner.memory import GIB, Breakdown, Setup, predict
from deepscaler.trainer.config import TrainConfig


@dataclass
class StagePlan:
    name: str
    tokens: int  # tokens in the stage's largest micro-batch
    breakdown: Breakdown
    budget_bytes: float

    @property
    def fits(self) -> bool:
        return self.breakdown.peak <= self.budget_bytes


@dataclass(frozen=True)
class Knobs:
    """The config's memory-relevant settings, plus the machine: what suggestions change."""

    setup: Setup
    micro_batch_tokens: int
    max_prompt_tokens: int
    gpu_bytes: float
    utilization: float  # rollout.gpu_memory_utilization (0 without a colocated vLLM)


def knobs_from_config(config: TrainConfig, gpus: int, gpu_memory_gb: float) -> Knobs:
    """Read a config's settings. `distributed.reference_offload` is read when the config has it."""
    gpu_bytes = gpu_memory_gb * GIB
    vllm = config.rollout.engine == "vllm"
    utilization = config.rollout.gpu_memory_utilization if vllm else 0.0
    if not config.algorithm.kl_coef:
        reference = "none"
    else:
        reference = "offload" if getattr(config.distributed, "reference_offload", False) else "resident"
    setup = Setup(gpus=gpus, strategy=config.distributed.strategy, compute_dtype=config.model.dtype,
                  checkpointing=config.model.gradient_checkpointing, reference=reference, device="cuda",
                  vllm_share_bytes=utilization * gpu_bytes, vllm_sleeps=vllm and config.rollout.enable_sleep_mode)
    return Knobs(setup=setup, micro_batch_tokens=config.optim.micro_batch_tokens,
                 max_prompt_tokens=config.data.max_prompt_tokens, gpu_bytes=gpu_bytes, utilization=utilization)


def stage_tokens(knobs: Knobs, max_response_tokens: int) -> int:
    """Tokens of a stage's largest micro-batch: micro-batches fill up to optim.micro_batch_tokens, and one sequence
    longer than that (the longest prompt with a full response) gets a micro-batch of its own."""
    return max(knobs.micro_batch_tokens, knobs.max_prompt_tokens + max_response_tokens)


def plan_stages(dims: ModelDims, config: TrainConfig, knobs: Knobs) -> list[StagePlan]:
    return [StagePlan(stage.name, tokens, predict(dims, knobs.setup, tokens), knobs.gpu_bytes)
            for stage in config.stages for tokens in [stage_tokens(knobs, stage.max_response_tokens)]]


def fits(dims: ModelDims, config: TrainConfig, knobs: Knobs) -> bool:
    return all(stage.fits for stage in plan_stages(dims, config, knobs))


def _with(knobs: Knobs, **setup_changes) -> Knobs:
    setup = dataclasses.replace(knobs.setup, **setup_changes)
    return dataclasses.replace(knobs, setup=setup)


def _candidates(config: TrainConfig, knobs: Knobs) -> list[tuple[str, Knobs]]:
    """Single changes that lower the peak, as the key=value (or flag) a user would give, cheapest first."""
    setup, options = knobs.setup, []
    if not setup.checkpointing:
        options.append(("model.gradient_checkpointing=true", _with(knobs, checkpointing=True)))
    if setup.compute_dtype != "bfloat16":
        options.append(("model.dtype=bfloat16", _with(knobs, compute_dtype="bfloat16")))
    if setup.vllm_share_bytes and not setup.vllm_sleeps:
        options.append(("rollout.enable_sleep_mode=true", _with(knobs, vllm_sleeps=True)))
    if setup.reference == "resident":
        options.append(("distributed.reference_offload=true", _with(knobs, reference="offload")))
    if setup.strategy != "fsdp" and setup.gpus > 1:
        options.append(("distributed.strategy=fsdp", _with(knobs, strategy="fsdp")))
    longest = max(s.max_response_tokens for s in config.stages)
    tokens = knobs.micro_batch_tokens // 2
    while tokens >= longest:
        options.append((f"optim.micro_batch_tokens={tokens}", dataclasses.replace(knobs, micro_batch_tokens=tokens)))
        tokens //= 2
    if knobs.utilization:
        for tenths in range(int(knobs.utilization * 10 - 0.5), 0, -1):
            share = tenths / 10
            options.append((f"rollout.gpu_memory_utilization={share:g}",
                            dataclasses.replace(_with(knobs, vllm_share_bytes=share * knobs.gpu_bytes),
                                                utilization=share)))
    gpus = setup.gpus * 2
    while gpus <= 1024:
        options.append((f"--gpus {gpus} distributed.strategy=fsdp", _with(knobs, gpus=gpus, strategy="fsdp")))
        gpus *= 2
    return options


def suggestions(dims: ModelDims, config: TrainConfig, knobs: Knobs) -> list[str]:
    """What would make every stage fit: each single change that does it alone (one per kind: the mildest micro-batch,
    vLLM share and GPU count), else the changes so far combined, one at a time, until they do."""
    found: list[str] = []
    kinds: set[str] = set()
    for name, changed in _candidates(config, knobs):
        kind = name.split("=")[0].split(" ")[0]
        if kind not in kinds and fits(dims, config, changed):
            found.append(name)
            kinds.add(kind)
    if found:
        return found
    # Nothing alone: the on/off changes accumulated in order until they fit (then the mildest scalar change on top of
    # them all), and each one dropped again that the others do without.
    scalar = ("optim.micro_batch_tokens", "rollout.gpu_memory_utilization", "--gpus")
    switches = [name for name, _ in _candidates(config, knobs) if not name.startswith(scalar)]
    for count in range(1, len(switches) + 1):
        if fits(dims, config, _apply(config, knobs, switches[:count])):
            return [" ".join(_pruned(dims, config, knobs, switches[:count]))]
    combined = _apply(config, knobs, switches)
    for name, changed in _candidates(config, combined):
        if name.startswith(scalar) and fits(dims, config, changed):
            return [" ".join([*_pruned(dims, config, knobs, switches, name), name])]
    return []


def _apply(config: TrainConfig, knobs: Knobs, names: list[str]) -> Knobs:
    """`knobs` with the named changes of `_candidates` made one after another."""
    for name in names:
        knobs = dict(_candidates(config, knobs)).get(name, knobs)
    return knobs


def _pruned(dims: ModelDims, config: TrainConfig, knobs: Knobs, names: list[str], last: str | None = None) -> list[str]:
    """`names` without each change the others (and `last`, applied after them) fit without."""
    kept = list(names)
    for name in names:
        fewer = [n for n in kept if n != name]
        if fits(dims, config, _apply(config, knobs, fewer + ([last] if last else []))):
            kept = fewer
    return kept
