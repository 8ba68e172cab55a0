"""Results on stdout, library chatter elsewhere: `generate`'s JSON lines parse, whatever the engine logs."""

import subprocess
import sys

RESERVED = """
import os, subprocess, sys
from deepscaler.cli.quiet import stdout_for_results
print("before")
with stdout_for_results() as results:
    print("a print")
    sys.stdout.flush()
    os.write(1, b"a raw write\\n")
    subprocess.run(["echo", "a child process"], check=True)
    results.write('{"result": 1}\\n')
print("after")
"""


def test_only_results_reach_stdout_while_it_is_reserved():
    run = subprocess.run([sys.executable, "-c", RESERVED], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == 'before\n{"result": 1}\nafter\n'
    assert run.stderr.splitlines() == ["a print", "a raw write", "a child process"]

