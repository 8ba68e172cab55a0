"""The README's `LLM` snippet runs as written (on the tiny model), including `llm.chat` for instruct models."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.slow
def test_the_readme_snippet_generates_and_chats(tiny_model_dir: Path) -> None:
    section = README.read_text(encoding="utf-8").split("## Inference", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "llm.chat(" in snippet  # instruct models answer messages, not raw prompts
    # The tiny model on the built-in engine, a few tokens: the snippet's calls, not its model, are under test.
    snippet = snippet.replace('LLM(model="path/to/model")', f'LLM(model={str(tiny_model_dir)!r}, engine="builtin")')
    snippet = snippet.replace("max_tokens=512", "max_tokens=4, seed=0")
    run = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    printed = run.stdout.splitlines()
    assert printed[0].startswith("What is 2 + 3?") and len(printed) >= 2  # the prompt, then the chat's answer
