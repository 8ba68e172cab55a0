"""`deepscaler plot RUN_DIR`: training curves as PNG, stage boundaries marked."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepscaler.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a training run directory (holds metrics.jsonl)")
    parser.add_argument("--out", type=Path, help="PNG path (default RUN_DIR/plots/training.png)")


def run(args: argparse.Namespace) -> int:
    from deepscaler.plot import plot_run

    try:
        print(plot_run(args.run_dir, args.out))
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    return 0
