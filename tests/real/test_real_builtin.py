"""The CLI on a real model, by its hub id, offline, with the built-in engine: generate, chat, eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.real.conftest import DATA_DIR, HUB_ID, cli

pytestmark = [pytest.mark.slow, pytest.mark.real_model]
PROMPTS = ["What is 12+30?", "Name a prime number."]


def test_generate_greedy(hub_env: dict) -> None:
    args = [arg for prompt in PROMPTS for arg in ("--prompt", prompt)]
    run = cli("generate", "--model", HUB_ID, "--engine", "builtin", "--chat", "--temperature", "0",
              "--max-tokens", "32", *args, env=hub_env)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["index"] for r in records] == [0, 1]
    # ChatML with the model's own default system prompt, then the model's (wrong, but its own) greedy answers.
    assert records[0]["prompt"].startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    texts = [r["completions"][0]["text"] for r in records]
    assert texts == ["12 + 30 = 32.", "The prime number I'm referring to is 2."]
    assert [r["completions"][0]["finish_reason"] for r in records] == ["stop", "stop"]


def test_chat_from_stdin(hub_env: dict) -> None:
    run = cli("chat", "--model", HUB_ID, "--engine", "builtin", "--temperature", "0", "--max-tokens", "32",
              stdin="What is 12+30?\n", env=hub_env)
    assert run.returncode == 0, run.stderr
    assert "12 + 30 = 32." in run.stdout


def test_eval_three_gsm8k_problems(hub_env: dict, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    run = cli("eval", "--model", HUB_ID, "--engine", "builtin", "--benchmarks", "gsm8k", "--data-dir", str(DATA_DIR),
              "--limit", "3", "--n", "1", "--temperature", "0", "--max-tokens", "48", "--workers", "1",
              "--out", str(out), env=hub_env)
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "summary.json").read_text())["problems"] == 3
    samples = sorted(out.rglob("*.jsonl"))
    assert samples, sorted(p.name for p in out.rglob("*"))
    records = [json.loads(line) for file in samples for line in file.read_text().splitlines()]
    assert len(records) == 3
