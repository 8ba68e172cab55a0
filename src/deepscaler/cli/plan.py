"""`deepscaler plan`: will a training config fit in GPU memory? Each stage's predicted peak per GPU, term by term,
and what would make it fit; --check-on-cpu sets the prediction beside a measured micro-batch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepscaler.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.micro_batch_tokens=16384")
    parser.add_argument("--config", type=Path, help="a YAML training config (see configs/)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs the run uses (torchrun's world size; default 1)")
    parser.add_argument("--gpu-memory-gb", type=float, default=80.0,
                        help="memory of each GPU in GiB (default 80)")
    parser.add_argument("--json", action="store_true", help="end with one JSON object on the last line")
    parser.add_argument("--check-on-cpu", action="store_true",
                        help="also measure one micro-batch of the model at its real widths with 2 layers on this CPU "
                             "and set the prediction for it beside the measurement")
    parser.add_argument("--check-tokens", type=int, default=4096,
                        help="tokens in the checked micro-batch (default 4096)")


def run(args: argparse.Namespace) -> int:
    from deepscaler.config import ConfigError, load_config
    from deepscaler.planner.architecture import UnknownArchitecture, model_dims
    from deepscaler.planner.plan import knobs_from_config, plan_stages, suggestions
    from deepscaler.planner.report import as_json, table
    from deepscaler.recipes.gsm8k import GSM8KRunConfig, is_recipe_config, split_configs
    from deepscaler.trainer.config import TrainConfig

    if args.gpus < 1:
        raise UsageError(f"--gpus must be at least 1, got {args.gpus}")
    if args.gpu_memory_gb <= 0:
        raise UsageError(f"--gpu-memory-gb must be > 0, got {args.gpu_memory_gb:g}")
    if args.check_tokens <= 32:
        raise UsageError(f"--check-tokens must be more than 32, got {args.check_tokens}")
    try:
        if args.config and is_recipe_config(args.config):  # a whole recipe: its GRPO part is what a GPU holds
            _, config = split_configs(load_config(GSM8KRunConfig, args.config, args.overrides))
        else:
            config = load_config(TrainConfig, args.config, args.overrides)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if not config.model.path:
        raise UsageError("model.path is not set: give --config or model.path=FOLDER_OR_HUB_ID")
    try:
        dims = model_dims(config.model.path, config.model.revision)
    except UnknownArchitecture as error:
        raise UsageError(str(error)) from None
    knobs = knobs_from_config(config, args.gpus, args.gpu_memory_gb)
    stages = plan_stages(dims, config, knobs)
    advice = [] if all(stage.fits for stage in stages) else suggestions(dims, config, knobs)
    print(table(stages, args.gpus, args.gpu_memory_gb, advice), flush=True)
    result = as_json(stages, advice)
    if args.check_on_cpu:
        from deepscaler.planner.check import CheckFailed, run_check

        try:
            result["check"] = run_check(dims, config, args.check_tokens)
        except CheckFailed as error:
            raise UsageError(str(error)) from None
        check = result["check"]
        print(f"CPU check, {check['layers']} layers at real widths, {check['tokens']} tokens, {check['dtype']}: "
              f"predicted {check['predicted_gb']:.2f} GiB, measured {check['measured_gb']:.2f} GiB "
              f"({check['error']:+.1%})", flush=True)
    if args.json:
        print(json.dumps(result))
    return 0
