"""`deepscaler train`: GRPO with iterative context lengthening; with no arguments, the embedded default."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepscaler.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.lr=2e-6 stages.0.max_steps=50")
    parser.add_argument("--config", type=Path, help="a YAML config (see configs/)")
    parser.add_argument("--out", help="run directory (same as out_dir=...)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its latest checkpoint")


def run(args: argparse.Namespace) -> int:
    from deepscaler.config import ConfigError, load_config
    from deepscaler.trainer.config import TrainConfig

    overrides = list(args.overrides)
    config_path = args.config
    if args.resume:
        config_path = args.resume / "config.yaml"
        if not config_path.is_file():
            raise UsageError(f"{args.resume}: not a run directory (no config.yaml)")
        overrides.append(f"out_dir={args.resume}")
    if args.out:
        overrides.append(f"out_dir={args.out}")
    try:
        config = load_config(TrainConfig, config_path, overrides)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if not config.model.path:
        raise UsageError("model.path is not set (give --config, model.path=DIR, or recipe=tiny)")
    from deepscaler.trainer.loop import Trainer, TrainingAborted

    trainer = Trainer(config, resume=bool(args.resume), progress=_printer())
    try:
        trainer.train()
    except TrainingAborted as error:
        raise UsageError(str(error)) from None
    finally:
        trainer.close()
    return 0


def _printer():
    def show(metrics: dict) -> None:
        print(f"step {metrics['step']:>4} stage {metrics['stage/name']:>4} reward {metrics['reward/mean']:.3f} "
              f"len {metrics['response_length/mean']:.0f} trunc {metrics['truncation_ratio']:.2f} "
              f"gap {metrics['rollout/logprob_gap']:.1e} {metrics['time/step']:.1f}s", flush=True)

    return show
