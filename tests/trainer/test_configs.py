from pathlib import Path

import pytest

from deepscaler.algorithms import AGG_MODES
from deepscaler.config import ConfigError, load_config
from deepscaler.trainer.config import TrainConfig
from deepscaler.trainer.rollout import engine_options

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    # A config with a `recipe:` section is a whole recipe's (recipes/gsm8k.py), as `deepscaler train` reads it.
    from deepscaler.recipes.gsm8k import GSM8KRunConfig, is_recipe_config

    config = load_config(GSM8KRunConfig if is_recipe_config(path) else TrainConfig, path)
    assert config.stages


def test_deepscaler_preset_is_the_published_recipe():
    config = load_config(TrainConfig, Path(CONFIGS[0]).parent / "deepscaler-1.5b.yaml")
    assert config.model.path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert (config.optim.lr, config.rollout.temperature, config.rollout.top_p) == (1e-6, 0.6, 1.0)
    algorithm = config.algorithm
    assert (algorithm.kl_coef, algorithm.kl_kind, algorithm.entropy_coef) == (0.001, "low_var_kl", 0.001)
    assert config.algorithm.clip_low == 0.2 and config.optim.mini_batches == 2 and config.data.max_prompt_tokens == 1024
    assert [(s.max_response_tokens, s.prompts_per_step, s.samples_per_prompt) for s in config.stages] == [
        (8192, 128, 8), (16384, 128, 8), (24576, 128, 16)]
    # Sharded with bfloat16 compute over float32 master weights; the bfloat16 reference sharded, on the GPUs.
    assert (config.distributed.strategy, config.model.dtype, config.distributed.reference_offload) == (
        "fsdp", "bfloat16", False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rollout.tensor_parallel_size=2"], "tensor_parallel_size > 1 needs rollout.engine=vllm"),
        (["rollout.engine=vllm", "rollout.tensor_parallel_size=0"], "tensor_parallel_size must be at least 1"),
        (["rollout.engine=vllm", "rollout.tensor_parallel_size=2", "algorithm.dynamic_sampling=true"],
         "does not work with algorithm.dynamic_sampling"),
        (["rollout.gpu_memory_utilization=1.5"], r"gpu_memory_utilization must be in \(0, 1\]"),
        (["rollout.max_model_len=9000"], "max_model_len=9000 cannot hold"),  # 1024 + 8192 needed
        (["rollout.num_threads=0"], "rollout.num_threads must be 'auto' or at least 1"),
        (["rollout.num_threads=many"], "rollout.num_threads"),
        (["distributed.reference_offload=true"], "reference_offload needs distributed.strategy=fsdp"),
    ],
)
def test_rollout_settings_that_cannot_work_fail_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, overrides)


def test_colocated_vllm_options():
    config = load_config(TrainConfig, None, ["rollout.engine=vllm", "rollout.tensor_parallel_size=2",
                                             "rollout.enable_sleep_mode=true", "stages.1.max_response_tokens=16384"])
    assert engine_options(config, world_size=4) == {
        "tensor_parallel_size": 2, "gpu_memory_utilization": 0.5, "enable_sleep_mode": True,
        "max_model_len": 1024 + 16384, "distributed_executor_backend": "external_launcher"}
    with pytest.raises(ConfigError, match="must divide the number of ranks"):
        engine_options(config, world_size=3)
    single = load_config(TrainConfig, None, ["rollout.engine=vllm", "rollout.max_model_len=20000"])
    assert engine_options(single, world_size=1) == {
        "tensor_parallel_size": 1, "gpu_memory_utilization": 0.5, "enable_sleep_mode": False, "max_model_len": 20000}


def test_builtin_engine_threads_come_from_the_config():
    assert engine_options(load_config(TrainConfig, None, []), world_size=1)["num_threads"] is None
    for value, expected in (("1", 1), ("auto", "auto")):
        config = load_config(TrainConfig, None, [f"rollout.num_threads={value}"])
        assert engine_options(config, world_size=1)["num_threads"] == expected


def test_loss_agg_accepts_every_aggregation_the_loss_has():
    # The config's choices are the loss's own names (one Literal), so a mode the loss gains is configurable at once.
    for mode in AGG_MODES:
        assert load_config(TrainConfig, None, [f"algorithm.loss_agg={mode}"]).algorithm.loss_agg == mode
    assert "seq-mean-token-sum" in AGG_MODES
    with pytest.raises(ConfigError, match="algorithm.loss_agg: 'sum' is not one of"):
        load_config(TrainConfig, None, ["algorithm.loss_agg=sum"])
