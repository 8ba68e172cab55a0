"""The training configuration: one documented dataclass per concern, loadable from YAML (see config.py).

Defaults are DeepScaleR's stage-1 settings where they exist; the tiny CPU recipe overrides sizes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal

from deepscaler.algorithms import AdvNorm, AggMode, KLKind
from deepscaler.config import ConfigError
from deepscaler.prompting import PROMPT_TEMPLATE


@dataclass
class ModelConfig:
    # A local Hugging Face folder or a hub id (org/name: downloaded, or from the cache offline); empty: the recipe
    # builds one. Under torchrun rank 0 downloads it while the other ranks wait.
    path: str = ""
    revision: str | None = None  # a hub id's branch, tag or commit hash (default: main)
    # Compute dtype; parameters and optimizer state stay float32 either way (with bfloat16 under
    # distributed.strategy=fsdp each layer is gathered in bfloat16, gradients reduced in float32); the reference
    # policy is kept in it.
    # bfloat16 halves the update's time on a CPU with AMX (bench_grpo_step); float32 is the exact default.
    dtype: Literal["float32", "bfloat16"] = "float32"
    # Trade compute for memory on long responses: each decoder layer recomputed in backward, on the lean forward as on
    # Hugging Face's. Prompt sharing is off with it.
    gradient_checkpointing: bool = False
    # The trainer's own forward for Qwen2/Qwen3/Llama/Mistral (trainer/lean_forward.py): same numbers, faster;
    # it holds a fused copy of the weight matrices during each forward. false: Hugging Face's forward.
    lean_forward: bool = True


@dataclass
class DataConfig:
    train_files: list[str] = field(default_factory=list)  # JSON/JSONL/Parquet with problem + answer
    val_files: list[str] = field(default_factory=list)  # held-out problems for validation
    prompt_template: str = PROMPT_TEMPLATE  # {problem} is replaced; the chat template is applied after
    system_prompt: str | None = None
    max_prompt_tokens: int = 1024  # longer prompts are dropped (and counted) at load time
    shuffle: bool = True


@dataclass
class RolloutConfig:
    engine: Literal["builtin", "vllm"] = "builtin"  # vllm: rollouts on vLLM, weights pushed after each update
    temperature: float = 0.6
    top_p: float = 1.0
    top_k: int = -1
    kv_cache_gb: float = 2.0  # built-in engine's KV cache budget
    # Built-in engine: processes sharing each rollout batch, one thread each (engines/parallel.py); "auto" is 2
    # for a model of at most 100M parameters on 2 or more threads, else 1.
    data_parallel: int | Literal["auto"] = "auto"
    # Built-in engine: torch threads while generating in this process. None: torch's count, fixed (reproducible
    # run to run); "auto": each decode step on 1 thread or all, whichever measures faster (much faster on a busy
    # machine, but near-tied tokens may flip between runs: 1 and 2 threads round some products differently).
    num_threads: int | Literal["auto"] | None = None
    # vLLM engine: every rank runs one beside its trainer, on its own GPU (colocated, as TRL's colocate mode and
    # verl's hybrid engine do); under torchrun it joins torchrun's process group (vLLM's external_launcher).
    # Ranks per vLLM engine. k > 1 shards each engine's weights and KV cache over k consecutive ranks (tensor
    # parallelism, for models too big for one GPU's share): those ranks all generate their k blocks of prompts
    # together and each keeps its own, so the number of ranks must be a multiple of k (checked at start-up).
    # Not with algorithm.dynamic_sampling, whose rounds differ between ranks.
    tensor_parallel_size: int = 1
    # Share of each GPU's memory vLLM may take (weights, activations, KV cache); the trainer has the rest, and all
    # of it during its log-prob and update passes with enable_sleep_mode. Unused on CPU, where vLLM's KV cache is
    # 1 GiB (VLLM_CPU_KVCACHE_SPACE=<GiB> changes it).
    gpu_memory_utilization: float = 0.5
    # Longest prompt + response vLLM plans its KV cache for; None: data.max_prompt_tokens + the longest stage's
    # max_response_tokens. Validation prompts (not filtered by length) must fit too.
    max_model_len: int | None = None
    # Free vLLM's GPU memory (weights and KV cache) after each step's rollouts, for the trainer's passes; the new
    # weights are loaded into woken weight memory before the KV cache is woken. GPU only (vLLM's CPU build
    # refuses it).
    enable_sleep_mode: bool = False


@dataclass
class AlgorithmConfig:
    adv_norm: AdvNorm = "std"  # none = Dr. GRPO (mean-centred only)
    adv_eps: float = 1e-6  # verl and DeepScaleR 1e-6, TRL 1e-4
    clip_low: float = 0.2
    clip_high: float = 0.2  # 0.28 = DAPO's clip-higher
    dual_clip: float | None = None  # cap (> 1) on the loss of negative-advantage tokens
    kl_coef: float = 0.001  # 0 disables the reference model entirely
    kl_kind: KLKind = "low_var_kl"
    kl_clamp: float | None = None
    entropy_coef: float = 0.001
    loss_agg: AggMode = "token-mean"  # how per-token losses become one (algorithms/losses.py aggregate)
    dynamic_sampling: bool = False  # DAPO: drop all-equal groups and draw more prompts to refill
    max_sampling_rounds: int = 3  # dynamic sampling gives up refilling after this many rounds
    mask_truncated: bool = False  # responses cut at the budget contribute no loss
    overlong_cache: int = 0  # DAPO soft overlong penalty over the last N tokens of the budget (0: off)
    overlong_factor: float = 1.0
    is_correction: bool = False  # truncated importance weights for rollout/trainer log-prob mismatch
    is_cap: float = 2.0


@dataclass
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    # Linear warm-up over this many optimizer steps (counted from the optimizer's creation, so a stage with
    # reset_optimizer warms up again), then constant.
    warmup_steps: int = 0
    mini_batches: int = 2  # optimizer steps per training step (DeepScaleR: 2)
    epochs: int = 1  # passes over each step's rollouts
    # Real (prompt + response) tokens per micro-batch, packed into one row without padding and balanced across
    # micro-batches; a sequence longer than this gets a micro-batch of its own (trainer/sequences.py).
    micro_batch_tokens: int = 16384
    # With kl_coef and entropy_coef at 0, a sample of advantage 0 (every sample of a group that all solved or all
    # failed) adds exactly nothing to the gradient: leave it out of the update's forward and backward. The update is
    # the same up to float rounding; actor/* metrics then cover the samples computed.
    skip_zero_advantage: bool = True
    max_bad_steps: int = 3  # consecutive non-finite losses or grad norms before aborting


@dataclass
class StageConfig:
    """One stage of iterative context lengthening."""

    name: str = "8k"
    max_response_tokens: int = 8192
    samples_per_prompt: int = 8
    prompts_per_step: int = 128
    max_steps: int = 1000  # the stage ends after this many steps at the latest
    truncation_trigger: float | None = None  # end when the truncated fraction (mean of `window` steps) exceeds it
    plateau_patience: int | None = None  # ... and validation pass@1 has not improved for this many validations
    window: int = 5
    reset_reference: bool = True  # the reference policy becomes this stage's starting weights (as upstream)
    reset_optimizer: bool = False


@dataclass
class ValidationConfig:
    # Validate every this many steps; 0: only at stage ends, and, for a stage with plateau_patience, at each step
    # its truncation trigger holds (the stage then ends once pass@1 stops improving).
    every_steps: int = 10
    at_stage_end: bool = True  # also validate at the last step of each stage (unless that step just did)
    samples_per_problem: int = 4
    max_problems: int | None = None
    temperature: float = 0.6
    top_p: float = 0.95


@dataclass
class CheckpointConfig:
    every_steps: int = 20
    keep_last: int = 2


@dataclass
class DistributedConfig:
    strategy: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: ddp replicates the model, fsdp (FSDP2) shards it
    # How long a rank waits in a collective for the others before the run fails. Ranks wait while rank 0 downloads
    # the model or writes a checkpoint, and while the slowest rank finishes its validation share at the longest
    # stage's budget; torch's defaults (NCCL 10 minutes, gloo 30) are too short for those.
    timeout_minutes: float = 60.0
    # fsdp only: the reference policy's shards (bfloat16 with model.dtype=bfloat16) live in host memory, each layer's
    # copied to the GPU for its forward (FSDP2's CPUOffloadPolicy; DeepScaleR's `ref param_offload`).
    reference_offload: bool = False


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 0
    out_dir: str = "runs/train"
    tensorboard: bool = True
    # Weights & Biases project to log every step's metrics to (None: off); needs `pip install 'deepscaler[wandb]'`.
    # WANDB_MODE=offline keeps the run on disk (in the run directory) for a later `wandb sync`.
    wandb_project: str | None = None
    # Warn (one line, once per streak, also as metrics.jsonl's "warning") when this many consecutive steps have every
    # group solve-none: no response earns a reward, so only the KL and entropy terms move the policy.
    solve_none_warn_steps: int = 5

    def __post_init__(self) -> None:
        validate(self)


def validate(config: TrainConfig) -> None:
    """Impossible values and combinations fail at start-up, naming the key."""
    if not config.stages:
        raise ConfigError("stages: at least one stage is needed")
    _validate_ranges(config)
    _validate_rollout(config)
    if config.wandb_project is not None and importlib.util.find_spec("wandb") is None:
        raise ConfigError("wandb_project is set but wandb is not installed: pip install 'deepscaler[wandb]'")
    for i, stage in enumerate(config.stages):
        where = f"stages.{i}"
        batch = stage.prompts_per_step * stage.samples_per_prompt
        if stage.samples_per_prompt < 1 or stage.prompts_per_step < 1 or stage.max_response_tokens < 1:
            raise ConfigError(f"{where}: samples_per_prompt, prompts_per_step, max_response_tokens must be >= 1")
        if stage.prompts_per_step % config.optim.mini_batches:
            raise ConfigError(f"{where}.prompts_per_step={stage.prompts_per_step} is not divisible into "
                              f"optim.mini_batches={config.optim.mini_batches} (whole groups per mini-batch)")
        if batch < config.optim.mini_batches:
            raise ConfigError(f"{where}: {batch} responses cannot fill {config.optim.mini_batches} mini-batches")
        if stage.max_steps < 1:
            raise ConfigError(f"{where}.max_steps must be >= 1")
    if config.optim.micro_batch_tokens < max(s.max_response_tokens for s in config.stages):
        raise ConfigError("optim.micro_batch_tokens must hold at least one full response of the longest stage")
    if config.algorithm.dual_clip is not None and config.algorithm.dual_clip <= 1:
        raise ConfigError("algorithm.dual_clip must be > 1")
    if config.optim.lr <= 0:
        raise ConfigError("optim.lr must be > 0")
    if config.distributed.reference_offload and config.distributed.strategy != "fsdp":
        raise ConfigError("distributed.reference_offload needs distributed.strategy=fsdp")
    if config.distributed.timeout_minutes <= 0:
        raise ConfigError("distributed.timeout_minutes must be > 0")


def _positive(value: Any) -> bool:
    return value > 0


def _at_least(minimum: int) -> Any:
    return lambda value: value >= minimum


def _share(value: Any) -> bool:
    return 0 < value <= 1


def _below_one(value: Any) -> bool:
    return 0 <= value < 1


# (key, test, what the test asks) for values that would otherwise fail deep inside a run (a division by zero at
# the first checkpoint, a sampler refusing at the first step) or train on nonsense; None passes where allowed.
_RANGES: tuple[tuple[str, Any, str], ...] = (
    ("seed", _at_least(0), ">= 0"),
    ("data.max_prompt_tokens", _at_least(1), ">= 1"),
    ("rollout.temperature", _at_least(0), ">= 0"),
    ("rollout.top_p", _share, "in (0, 1]"),
    ("rollout.top_k", _at_least(-1), "-1 or 0 (off) or >= 1"),
    ("rollout.kv_cache_gb", _positive, "> 0"),
    ("algorithm.adv_eps", _positive, "> 0"),
    ("algorithm.clip_low", _at_least(0), ">= 0"),
    ("algorithm.clip_high", _at_least(0), ">= 0"),
    ("algorithm.kl_coef", _at_least(0), ">= 0 (0 turns the reference model off)"),
    ("algorithm.kl_clamp", _positive, "> 0 or null"),
    ("algorithm.max_sampling_rounds", _at_least(1), ">= 1"),
    ("algorithm.overlong_cache", _at_least(0), ">= 0"),
    ("algorithm.overlong_factor", _at_least(0), ">= 0"),
    ("algorithm.is_cap", _positive, "> 0"),
    ("optim.weight_decay", _at_least(0), ">= 0"),
    ("optim.beta1", _below_one, "in [0, 1)"),
    ("optim.beta2", _below_one, "in [0, 1)"),
    ("optim.grad_clip", _positive, "> 0"),
    ("optim.warmup_steps", _at_least(0), ">= 0"),
    ("optim.mini_batches", _at_least(1), ">= 1"),
    ("optim.epochs", _at_least(1), ">= 1"),
    ("optim.micro_batch_tokens", _at_least(1), ">= 1"),
    ("optim.max_bad_steps", _at_least(1), ">= 1"),
    ("validation.every_steps", _at_least(0), ">= 0 (0: only at stage ends)"),
    ("validation.samples_per_problem", _at_least(1), ">= 1"),
    ("validation.max_problems", _at_least(1), ">= 1 or null"),
    ("validation.temperature", _at_least(0), ">= 0"),
    ("validation.top_p", _share, "in (0, 1]"),
    ("checkpoint.every_steps", _at_least(1), ">= 1"),
    ("checkpoint.keep_last", _at_least(1), ">= 1"),
)
_STAGE_RANGES: tuple[tuple[str, Any, str], ...] = (
    ("window", _at_least(1), ">= 1"),
    ("truncation_trigger", _share, "in (0, 1] or null"),
    ("plateau_patience", _at_least(1), ">= 1 or null"),
)


def _validate_ranges(config: TrainConfig) -> None:
    checks = [(key, attrgetter(key)(config), test, wanted) for key, test, wanted in _RANGES]
    checks += [(f"stages.{i}.{key}", getattr(stage, key), test, wanted)
               for i, stage in enumerate(config.stages) for key, test, wanted in _STAGE_RANGES]
    for key, value, test, wanted in checks:
        if value is not None and not test(value):
            raise ConfigError(f"{key}={value} must be {wanted}")
    try:
        config.data.prompt_template.format(problem="")
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(f"data.prompt_template must use {{problem}} and double any other braces ({error})") from None


def longest_sequence(config: TrainConfig) -> int:
    """Tokens one rollout can span: the longest prompt kept plus the longest stage's response budget."""
    return config.data.max_prompt_tokens + max(s.max_response_tokens for s in config.stages)


def _validate_rollout(config: TrainConfig) -> None:
    rollout = config.rollout
    if rollout.data_parallel != "auto" and rollout.data_parallel < 1:
        raise ConfigError(f"rollout.data_parallel must be 'auto' or at least 1, got {rollout.data_parallel}")
    if rollout.num_threads not in (None, "auto") and rollout.num_threads < 1:
        raise ConfigError(f"rollout.num_threads must be 'auto' or at least 1, got {rollout.num_threads}")
    if rollout.tensor_parallel_size < 1:
        raise ConfigError(f"rollout.tensor_parallel_size must be at least 1, got {rollout.tensor_parallel_size}")
    if rollout.tensor_parallel_size > 1 and rollout.engine != "vllm":
        raise ConfigError("rollout.tensor_parallel_size > 1 needs rollout.engine=vllm")
    if rollout.tensor_parallel_size > 1 and config.algorithm.dynamic_sampling:
        raise ConfigError("rollout.tensor_parallel_size > 1 does not work with algorithm.dynamic_sampling: the ranks "
                          "of one engine must generate together, and dynamic sampling's rounds differ between ranks")
    if not 0 < rollout.gpu_memory_utilization <= 1:
        raise ConfigError(f"rollout.gpu_memory_utilization must be in (0, 1], got {rollout.gpu_memory_utilization}")
    if rollout.max_model_len is not None and rollout.max_model_len < longest_sequence(config):
        raise ConfigError(f"rollout.max_model_len={rollout.max_model_len} cannot hold a prompt of "
                          f"data.max_prompt_tokens={config.data.max_prompt_tokens} and the longest stage's response "
                          f"({longest_sequence(config)} tokens); leave it unset to take that sum")
