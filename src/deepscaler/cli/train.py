"""`deepscaler train`: GRPO with iterative context lengthening; with no arguments, the embedded default."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from deepscaler.cli import UsageError, threads_option

# What a run writes into its directory, and so what --overwrite deletes; files of the user's own stay.
RUN_FILES = ("metrics.jsonl", "checkpoints", "config.yaml", "tensorboard", "wandb", "wandb_id", "plots")

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
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in a run directory that holds an earlier run: its metrics, checkpoints, "
                             "logs and plots are deleted first (without this, such a directory is refused)")
    parser.add_argument("--threads", type=threads_option,
                        help="the built-in rollout engine's threads, a number or auto (same as rollout.num_threads=)")
    parser.add_argument("--skip-memory-check", action="store_true",
                        help="start even when `deepscaler plan` predicts a stage will not fit in GPU memory")


def run(args: argparse.Namespace) -> int:
    from deepscaler.config import ConfigError, load_config
    from deepscaler.trainer.config import TrainConfig

    overrides = list(args.overrides)
    if args.threads is not None:
        overrides.append(f"rollout.num_threads={args.threads}")
    config_path = args.config
    if args.resume and args.overwrite:
        raise UsageError("--resume continues a run and --overwrite deletes it: give one of them")
    if args.resume and (args.out or any(o.startswith("out_dir=") for o in overrides)):
        raise UsageError("--resume continues the run in its own folder: drop --out / out_dir=")
    if not args.config and not args.resume and not any(o.startswith("model.path=") for o in overrides):
        return _embedded(args, overrides)
    if args.config and not args.resume:
        from deepscaler.recipes.gsm8k import is_recipe_config

        if is_recipe_config(args.config):
            return _recipe(args, overrides)
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
        raise UsageError("model.path is not set: give it in --config or as model.path=FOLDER_OR_HUB_ID")
    _check_data_files(config)
    if not args.resume:
        folder = Path(config.out_dir)
        _claim_run_folder(folder, args.overwrite, f"out_dir={folder} holds an earlier run: continue it with --resume "
                          f"{folder}, start afresh there with --overwrite (deletes its metrics and checkpoints), or "
                          "choose another out_dir")
    if not args.skip_memory_check:
        _check_memory(config)
    from deepscaler.data.problems import ProblemFileError
    from deepscaler.inference.hub import ModelNotFoundError
    from deepscaler.trainer.loop import Trainer, TrainingAborted

    try:
        trainer = Trainer(config, resume=bool(args.resume), progress=_printer())
    except (ConfigError, ModelNotFoundError, ProblemFileError) as error:  # what only start-up finds, e.g. a bad row
        raise UsageError(str(error)) from None
    try:
        trainer.train()
    except TrainingAborted as error:
        raise UsageError(str(error)) from None
    finally:
        trainer.close()
    return 0


def _holds_run(folder: Path) -> bool:
    """Whether a run has logged a step or written a checkpoint in `folder`."""
    metrics, checkpoints = folder / "metrics.jsonl", folder / "checkpoints"
    return (metrics.is_file() and metrics.stat().st_size > 0) or (checkpoints.is_dir() and any(checkpoints.iterdir()))


def _claim_run_folder(folder: Path, overwrite: bool, refusal: str) -> None:
    """A new run must not write into an earlier run's folder: restarting from step 0 there would append to its
    metrics.jsonl and mix its checkpoints with the new ones. --overwrite deletes the earlier run's files first
    (on rank 0 only: under torchrun every rank runs this, and the trainer's start-up waits for rank 0)."""
    if not _holds_run(folder):
        return
    if not overwrite:
        raise UsageError(refusal)
    if os.environ.get("RANK", "0") != "0":
        return
    for name in RUN_FILES:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _check_data_files(config) -> None:
    """Every data file is there before the model loads; files given by benchmark name are looked up."""
    from deepscaler.data.problems import ProblemFileError, resolve

    if not config.data.train_files:
        raise UsageError("data.train_files is empty: give at least one JSON, JSONL or Parquet file of problems")
    for key in ("train_files", "val_files"):
        for index, name in enumerate(getattr(config.data, key)):
            try:
                resolve(name)
            except ProblemFileError as error:
                raise UsageError(f"data.{key}.{index}: {error}") from None


def _check_memory(config) -> None:
    """Refuse, with the plan's table, a run on GPUs where some stage will not fit (see planner/startup.py)."""
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
        gap = metrics.get("rollout/logprob_gap")  # absent when the update computed no sample
        print(f"step {metrics['step']:>4} stage {metrics['stage/name']:>4} reward {metrics['reward/mean']:.3f} "
              f"len {metrics['response_length/mean']:.0f} trunc {metrics['truncation_ratio']:.2f} "
              f"gap {'-' if gap is None else f'{gap:.1e}'} {metrics['time/step']:.1f}s", flush=True)

    return show


def _embedded(args: argparse.Namespace, overrides: list[str]) -> int:
    """No model given: the embedded default, the whole recipe in miniature on this machine."""
    from deepscaler.config import ConfigError
    from deepscaler.recipes.embedded import run_embedded

    out = Path(args.out or "runs/embedded")
    _claim_run_folder(out / "rl", args.overwrite,  # the embedded default's GRPO run lives in <out>/rl
                      f"{out} holds an earlier run of the embedded default: give --overwrite to replace it, or "
                      "another --out")
    if args.overwrite:  # else its held-out evaluations would resume from the earlier run's samples
        shutil.rmtree(out / "eval", ignore_errors=True)
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


def _recipe(args: argparse.Namespace, overrides: list[str]) -> int:
    """A config with a `recipe:` section: SFT warm start, GRPO stages and held-out evaluation (recipes/gsm8k.py)."""
    from deepscaler.config import ConfigError, load_config
    from deepscaler.data.problems import ProblemFileError
    from deepscaler.inference.hub import ModelNotFoundError
    from deepscaler.recipes.gsm8k import GSM8KRunConfig, run_gsm8k

    if args.out:
        overrides.append(f"out_dir={args.out}")
    try:
        run = load_config(GSM8KRunConfig, args.config, overrides)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    out = Path(run.out_dir)
    _claim_run_folder(out / "rl", args.overwrite, f"{out} holds an earlier run of this recipe: give --overwrite to "
                      "replace it, or another --out")
    if args.overwrite:  # else its evaluations would resume from the earlier run's samples
        shutil.rmtree(out / "eval", ignore_errors=True)
    try:
        run_gsm8k(run)
    except (ConfigError, ModelNotFoundError, ProblemFileError, ValueError) as error:
        raise UsageError(str(error)) from None
    return 0
