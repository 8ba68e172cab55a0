from pathlib import Path

import pytest

from deepscaler.config import load_config
from deepscaler.trainer.config import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(TrainConfig, path)
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
