"""`deepscaler model new` and `deepscaler generate`, run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DEEPSCALER = str(Path(sys.executable).parent / "deepscaler")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([DEEPSCALER, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_model_new_then_generate_round_trip(tmp_path: Path, tiny_model_dir: Path) -> None:
    made = cli("model", "new", "--preset", "tiny", "--out", str(tmp_path / "m"), "--seed", "0")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(tmp_path / "m")
    assert "4,296,960 parameters" in made.stderr
    # The same seed writes the same weights as the session's model.
    weights = (tmp_path / "m" / "model.safetensors").read_bytes()
    assert weights == (tiny_model_dir / "model.safetensors").read_bytes()
    again = cli("model", "new", "--out", str(tmp_path / "m"))
    assert again.returncode == 2 and "already holds a model" in again.stderr

    out = tmp_path / "out.jsonl"
    run = cli("generate", "--model", str(tmp_path / "m"), "--prompt", "What is 2+2?", "--prompt", "x",
              "--temperature", "0", "--max-tokens", "6", "--n", "2", "--chat", "--out", str(out))
    assert run.returncode == 0, run.stderr
    lines = read_jsonl(out)
    assert [line["index"] for line in lines] == [0, 1]
    assert lines[0]["prompt"] == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    for line in lines:
        assert [c["num_tokens"] for c in line["completions"]] == [6, 6]
        assert {c["finish_reason"] for c in line["completions"]} == {"length"}
        assert line["completions"][0]["text"] == line["completions"][1]["text"]  # greedy
    assert "generating" in run.stderr  # the progress bar goes to stderr


@pytest.mark.slow
def test_generate_from_a_jsonl_file_to_stdout(tmp_path: Path, tiny_model_dir: Path) -> None:
    from deepscaler import LLM, SamplingParams

    prompts = tmp_path / "prompts.jsonl"
    rows = [
        {"id": "a", "prompt": "Solve 3x = 9."},
        "plain string",
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"prompt_token_ids": [5, 6, 7]},
    ]
    prompts.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    run = cli("generate", "--model", str(tiny_model_dir), "--engine", "builtin", "--file", str(prompts),
              "--temperature", "0.8", "--seed", "4", "--max-tokens", "5", "--batch-size", "3")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2, 3]
    assert lines[0]["id"] == "a" and "id" not in lines[1]
    assert lines[2]["prompt"].startswith("<|im_start|>user\nHi")
    assert lines[3]["prompt"] is None
    # Prompt i is sampled with seed 4 + i: the library gives the same text.
    llm = LLM(model=str(tiny_model_dir), engine="builtin")
    params = SamplingParams(temperature=0.8, seed=4, max_tokens=5)
    expected = llm.generate("Solve 3x = 9.", params, use_tqdm=False)
    assert lines[0]["completions"][0]["text"] == expected[0].outputs[0].text


@pytest.mark.slow
def test_generate_on_vllm_writes_only_json_lines_to_stdout(tiny_model_dir: Path) -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed")
    run = subprocess.run([DEEPSCALER, "generate", "--model", str(tiny_model_dir), "--engine", "vllm", "--prompt",
                          "What is 2+2?", "--prompt", "x", "--max-tokens", "4", "--seed", "0"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]  # every line is JSON
    assert [line["index"] for line in lines] == [0, 1]
    assert " INFO " not in run.stderr  # vLLM logs warnings only, unless --verbose


@pytest.mark.parametrize(("content", "message"), [
    ('{"prompt": "ok"}\n{"prompt": \n', "prompts.jsonl:2: not valid JSON"),
    ('{"text": "no prompt key"}\n', "prompts.jsonl:1: expected a string or an object"),
    ('{"prompt_token_ids": ["a"]}\n', "prompts.jsonl:1: 'prompt_token_ids' has the wrong type"),
    ('{"messages": [{"role": "user"}]}\n', "prompts.jsonl:1: 'messages' has the wrong type"),
    ("\n\n", "holds no prompts"),
])
def test_bad_prompt_files_fail_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    run = cli("generate", "--model", "unused", "--file", str(path))
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--file", "missing.jsonl"], "missing.jsonl: no such file"),
    (["--prompt", "x", "--top-p", "1.5"], "top_p must be in (0, 1]"),
    (["--prompt", "x", "--temperature", "-1"], "temperature must be >= 0"),
    (["--prompt", "x", "--max-tokens", "0"], "max_tokens must be >= 1"),
])
def test_bad_arguments_fail_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    run = cli("generate", "--model", "unused", *args, cwd=tmp_path)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_missing_model_fails_in_one_line(tmp_path: Path) -> None:
    run = cli("generate", "--model", str(tmp_path / "nope"), "--prompt", "x")
    assert run.returncode == 2
    assert run.stderr.strip() == f"deepscaler generate: error: model folder not found: '{tmp_path / 'nope'}'"


@pytest.mark.parametrize(("flag", "value"), [("--request-timeout", "0"), ("--read-timeout", "-1"),
                                             ("--stall-timeout", "nan"), ("--request-timeout", "inf")])
def test_serve_refuses_a_bad_time_limit_before_loading(tmp_path: Path, flag: str, value: str) -> None:
    run = cli("serve", "--model", str(tmp_path / "nope"), flag, value)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"deepscaler serve: error: {flag} must be a positive number of seconds"
