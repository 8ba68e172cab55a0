"""Keep library chatter out of a command's output: vLLM's log level, and stdout reserved for results.

vLLM logs to stdout at INFO (dozens of lines per engine start, from this process and its engine-core
child), which broke `deepscaler generate`'s JSON lines and opened `chat` with a screen of them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

VERBOSE_HELP = "show the inference libraries' log lines (vLLM's INFO messages)"


def quiet_libraries(verbose: bool) -> None:
    """vLLM logs to stderr, and only warnings and errors unless verbose. Through the environment, read when
    vLLM is imported, here and in its engine-core child; the level also on the logger, for a vLLM this process
    already imported."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if verbose:
        return
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    logging.getLogger("vllm").setLevel(os.environ["VLLM_LOGGING_LEVEL"])


@contextmanager
def stdout_for_results() -> Iterator[TextIO]:
    """A stream on the real stdout, for results only: meanwhile file descriptor 1 points at stderr, so that
    whatever else writes to stdout (a library's print or log handler, C++ code, a child process that
    inherits the descriptor) lands on stderr instead of between the results."""
    sys.stdout.flush()
    results_fd = os.dup(1)
    os.dup2(2, 1)
    results = os.fdopen(results_fd, "w", encoding="utf-8")
    try:
        yield results
    finally:
        try:
            results.flush()
        finally:
            sys.stdout.flush()
            os.dup2(results_fd, 1)
            results.close()
