"""The memory check `deepscaler train` runs before it loads anything: the plan for the GPUs it is about to use,
and the table to refuse with when a stage will not fit. Runs on CUDA GPUs only: on a CPU (the embedded default, the
tests) memory is the host's, shared and swappable, and a plan for it would only get in the way."""

from __future__ import annotations

import os

from deepscaler.planner.architecture import model_dims
from deepscaler.planner.memory import GIB
from deepscaler.planner.plan import knobs_from_config, plan_stages, suggestions
from deepscaler.planner.report import table
from deepscaler.trainer.config import TrainConfig


def gpu_target() -> tuple[int, float] | None:
    """(GPUs in the run, bytes of memory per GPU) when this process trains on CUDA, else None. The GPU count is
    torchrun's world size (WORLD_SIZE), 1 without torchrun."""
    import torch

    if not torch.cuda.is_available():
        return None
    device = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
    return int(os.environ.get("WORLD_SIZE", "1")), float(torch.cuda.get_device_properties(device).total_memory)


def memory_refusal(config: TrainConfig, gpus: int, gpu_bytes: float) -> str | None:
    """The plan's table when some stage will not fit on `gpus` GPUs of `gpu_bytes` each, else None.
    Raises UnknownArchitecture when the model's widths cannot be known without downloading it."""
    dims = model_dims(config.model.path, config.model.revision)
    knobs = knobs_from_config(config, gpus, gpu_bytes / GIB)
    stages = plan_stages(dims, config, knobs)
    if all(stage.fits for stage in stages):
        return None
    return table(stages, gpus, gpu_bytes / GIB, suggestions(dims, config, knobs))
