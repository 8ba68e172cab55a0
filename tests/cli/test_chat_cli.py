import io
import subprocess
import sys

import pytest
from rich.console import Console

from deepscaler.cli.chat import ThinkPrinter
from deepscaler.inference import make_tiny_model


def test_think_section_is_dimmed_across_split_tags():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard", width=200)
    printer = ThinkPrinter(console, hide=False)
    for piece in ["<thi", "nk>add 2 and 2", "</th", "ink> The answer is 4."]:
        printer.feed(piece)
    printer.close()
    out = buffer.getvalue()
    assert "\x1b[2m" in out  # dim
    plain = Console(file=io.StringIO(), width=200)
    folded = ThinkPrinter(plain, hide=True)
    for piece in ["<think>secret", " work</think>", " The answer is 4."]:
        folded.feed(piece)
    folded.close()
    text = plain.file.getvalue()
    assert "secret" not in text and "(thinking…)" in text and "The answer is 4." in text


def test_chat_session_over_stdin(tmp_path):
    folder = make_tiny_model(tmp_path / "tiny", preset="tiny", seed=0)
    result = subprocess.run([sys.executable, "-m", "deepscaler.cli", "chat", "--model", str(folder), "--engine",
                             "builtin", "--max-tokens", "8"], input="hello\n/reset\nagain\n/exit\n",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "builtin" in result.stdout and len(result.stdout.splitlines()) >= 3


def test_chat_unknown_model_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "deepscaler.cli", "chat", "--model", str(tmp_path / "nope")],
                            input="", capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "nope" in result.stderr


@pytest.mark.slow
def test_chat_on_vllm_opens_without_its_log(tmp_path):
    pytest.importorskip("vllm", reason="vLLM is not installed")
    folder = make_tiny_model(tmp_path / "tiny", preset="tiny", seed=0)
    result = subprocess.run([sys.executable, "-m", "deepscaler.cli", "chat", "--model", str(folder), "--engine",
                             "vllm", "--max-tokens", "4"], input="hello\n/exit\n", capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(str(folder))  # the banner first: no screen of log lines before it
    assert " INFO " not in result.stdout + result.stderr and "WARNING" not in result.stdout  # warnings: stderr
