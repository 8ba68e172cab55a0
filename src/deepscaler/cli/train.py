"""`deepscaler train`: GRPO with iterative context lengthening; with no arguments, the embedded default."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepscaler.cli import UsageError

EMBEDDED_HELP = """\
With no --config, --resume or model.path: the embedded default, the whole recipe in miniature on
this machine (a tiny Qwen2 model distilled on an imperfect teacher's traces, then three GRPO stages
with growing budgets, held-out evaluation after each; 5 to 7 minutes on 2 CPU cores). Its GRPO
settings take KEY=VALUE like any run, its Stage 0 settings stage0.KEY=VALUE, e.g.
  deepscaler train --out runs/demo stage0.sft_problems=12000 stage0.families=[modular,recurrence]
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EMBEDDED_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.lr=2e-6 stages.0.max_steps=50")
    parser.add_argument("--config", type=Path, help="a YAML config (see configs/)")
    parser.add_argument("--out", help="run directory (same as out_dir=...)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    parser.add_argument("--skip-memory-check", action="store_true",
                        help="start even when `deepscaler plan` predicts a stage will not fit in GPU memory")


def run(args: argparse.Namespace) -> int:
    from deepscaler.config import ConfigError, load_config
    from deepscaler.trainer.config import TrainConfig

    overrides = list(args.overrides)
    config_path = args.config
    if not args.config and not args.resume and not any(o.startswith("model.path=") for o in overrides):
        return _embedded(args, overrides)
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
        raise UsageError("model.path is not set (give --config, model.path=FOLDER_OR_HUB_ID, or recipe=tiny)")
    if not args.skip_memory_check:
        _check_memory(config)
    from deepscaler.inference.hub import ModelNotFoundError
    from deepscaler.trainer.loop import Trainer, TrainingAborted

    try:
        trainer = Trainer(config, resume=bool(args.resume), progress=_printer())
    except (ConfigError, ModelNotFoundError) as error:  # what only start-up finds out, e.g. W&B refusing to start
        raise UsageError(str(error)) from None
    try:
        trainer.train()
    except TrainingAborted as error:
        raise UsageError(str(error)) from None
    finally:
        trainer.close()
    return 0


def _check_memory(config) -> None:
    """Refuse, with the plan's table, a run on GPUs where some stage will not fit (see planner/startup.py)."""
    import os
    import sys

    from deepscaler.planner import startup
    from deepscaler.planner.architecture import UnknownArchitecture

    target = startup.gpu_target()
    if target is None:
        return
    main_rank = os.environ.get("RANK", "0") == "0"
    try:
        refusal = startup.memory_refusal(config, *target)
    except UnknownArchitecture as error:
        if main_rank:
            sys.stderr.write(f"deepscaler train: memory check skipped: {error}\n")
        return
    if refusal is not None:
        if main_rank:
            print(refusal, flush=True)
        raise UsageError("a stage will not fit in GPU memory (plan above); --skip-memory-check starts anyway")


def _printer():
    def show(metrics: dict) -> None:
        print(f"step {metrics['step']:>4} stage {metrics['stage/name']:>4} reward {metrics['reward/mean']:.3f} "
              f"len {metrics['response_length/mean']:.0f} trunc {metrics['truncation_ratio']:.2f} "
              f"gap {metrics['rollout/logprob_gap']:.1e} {metrics['time/step']:.1f}s", flush=True)

    return show


def _embedded(args: argparse.Namespace, overrides: list[str]) -> int:
    """No model given: the embedded default, the whole recipe in miniature on this machine."""
    from deepscaler.config import ConfigError
    from deepscaler.recipes.embedded import run_embedded

    out = Path(args.out or "runs/embedded")
    try:
        summary = run_embedded(out, overrides)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    _print_summary(summary, out)
    return 0


def _print_summary(summary: dict, out: Path) -> None:
    """The one-screen ending: held-out results per model, the gain, and where the files are."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="held-out problems (never trained on)")
    for column in ("model", "pass@1", "pass@8", "maj@8", "worked", "mean length", "truncated"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, values in summary["eval"].items():
        if name != "final":
            table.add_row(name, *(f"{values.get(key, float('nan')):.3f}" for key in ("pass@1", "pass@8", "maj@8")),
                          f"{values.get('worked_rate', 0):.0%}", f"{values.get('mean_length', 0):.0f}",
                          f"{values.get('truncation_rate', 0):.2f}")
    console = Console()
    console.print(table)
    sft, final = summary["eval"]["sft"]["pass@1"], summary["eval"]["final"]["pass@1"]
    console.print(f"pass@1 {sft:.3f} -> {final:.3f} ({final - sft:+.3f}) in {summary['wall_seconds'] / 60:.1f} "
                  f"minutes. Report: {out / 'report.md'}; plots: {out / 'plots'}; summary: {out / 'summary.json'}")
