"""The built-in rollout engine gives its memory back while the trainer updates: one step on the tiny model, looked
at from inside the optimizer step (a real hook on the real optimizer)."""

import pytest
import torch

from deepscaler.config import load_config
from deepscaler.trainer.config import TrainConfig
from deepscaler.trainer.loop import Trainer
from tests.trainer.conftest import train_args

pytestmark = pytest.mark.slow


def test_engine_holds_no_weights_or_cache_during_the_update_and_the_new_weights_after(tiny_run_inputs, tmp_path):
    config = load_config(TrainConfig, None, train_args(tiny_run_inputs, tmp_path / "run", steps=1, extra=[
        "rollout.data_parallel=1", "stages.0.max_response_tokens=8"]))
    trainer = Trainer(config)
    engine = trainer.llm.engine.model
    seen = []
    trainer.optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append((engine.has_weights, len(engine.k_cache))))
    try:
        trainer.step(config.stages[0])
        assert seen == [(False, 0)] * config.optim.mini_batches
        embedding = trainer.policy.get_input_embeddings().weight.detach()
        assert engine.has_weights and torch.equal(engine.tensors()["embed"], embedding)
    finally:
        trainer.close()
