"""The `deepscaler` command: a thin shell over the library, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand name -> module under deepscaler.cli exposing add_arguments(parser) and run(args) -> int.
# Modules are imported lazily so `deepscaler grade` does not pay for importing torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "grade": ("grade", "score responses against gold answers with the math verifier"),
    "demo": ("demo", "the outcome reward at work on built-in examples and a batch of 2,048"),
    "model": ("model", "model folders: a small random one (model new), or one converted from GGUF (model import-gguf)"),
    "generate": ("generate", "sample completions for prompts, streamed as JSON lines"),
    "eval": ("eval", "pass@1 over k samples (and pass@k, maj@k) on math benchmarks"),
    "chat": ("chat", "talk to a model in the terminal, tokens streamed, <think> dimmed"),
    "serve": ("serve", "an OpenAI-compatible HTTP server for a model"),
    "train": ("train", "GRPO training with iterative context lengthening"),
    "plan": ("plan", "will a training config fit in GPU memory? predicted peak per GPU for each stage"),
    "plot": ("plot", "training curves of a run as PNG, stage boundaries marked"),
    "compare": ("compare", "per-benchmark deltas between two evaluation runs, with bootstrap intervals"),
    "data": ("data", "training data: prepare (curate problem sets into one file), convert (deepscaler <-> verl)"),
}


# --model and --revision, said the same way by every subcommand that loads a model.
MODEL_HELP = "a local Hugging Face model folder or a hub id (org/name: downloaded, or from the cache offline)"
REVISION_HELP = "the hub id's branch, tag or commit hash (default: main)"
THREADS_HELP = ("the built-in engine's torch threads: a number, or auto (default): each decode step on 1 thread "
                "or all, whichever measures faster, so a busy machine does not stall it (vLLM ignores this)")


def threads_option(text: str) -> int | str:
    """--threads: a positive number, or "auto"."""
    if text == "auto":
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a positive number or auto, got {text!r}")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = argparse.ArgumentParser(prog="deepscaler", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv else None
    module = None
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"deepscaler.cli.{module_name}")
            module.add_arguments(sub_parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, module = build_parser(argv)
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(module.run(args) or 0)
    except UsageError as error:
        # One write, line and newline together: ranks under torchrun share the stream, and print's two writes
        # let their lines run into each other.
        sys.stderr.write(f"deepscaler {args.command}: error: {error}\n")
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
