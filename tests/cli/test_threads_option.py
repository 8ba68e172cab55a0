"""`--threads` on every command that loads a model, down to the built-in engine."""

import subprocess
import sys

import pytest

from deepscaler.cli import build_parser

COMMANDS = {
    "generate": ["--model", "m", "--prompt", "x"],
    "chat": ["--model", "m"],
    "eval": ["--model", "m"],
    "serve": ["--model", "m"],
    "train": [],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_model_command_takes_threads(command):
    def parse(*extra):
        argv = [command, *COMMANDS[command], *extra]
        parser, _ = build_parser(argv)
        return parser.parse_args(argv).threads

    assert parse("--threads", "3") == 3
    assert parse("--threads", "auto") == "auto"
    assert parse() == (None if command == "train" else "auto")  # train: rollout.num_threads decides


def test_bad_threads_is_a_usage_error():
    run = subprocess.run([sys.executable, "-m", "deepscaler.cli", "generate", "--model", "m", "--prompt", "x",
                          "--threads", "0"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--threads: expected a positive number or auto, got '0'" in run.stderr

