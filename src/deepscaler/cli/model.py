"""`deepscaler model new`: write a small randomly initialised Qwen2 model with a local math tokenizer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepscaler.cli import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new", help="create a randomly initialised model folder",
                             description="Create a randomly initialised Qwen2 model and its tokenizer.")
    new.add_argument("--preset", choices=("tiny", "small", "medium"), default="tiny",
                     help="tiny: ~4.3M parameters; small: ~26M; medium: ~146M (default tiny)")
    new.add_argument("--out", type=Path, required=True, help="folder to write (created if missing)")
    new.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    new.add_argument("--force", action="store_true", help="overwrite a model already in --out")


def run(args: argparse.Namespace) -> int:
    from deepscaler.inference.models import count_parameters, make_tiny_model

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if (out / "config.json").exists() and not args.force:
        raise UsageError(f"{out} already holds a model (use --force to overwrite it)")
    try:
        folder = make_tiny_model(out, preset=args.preset, seed=args.seed)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    size = count_parameters(folder)
    print(f"{args.preset} Qwen2 model, {size:,} parameters, seed {args.seed}", file=sys.stderr)
    print(folder)
    return 0
