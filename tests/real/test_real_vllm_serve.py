"""One vLLM server on the real model (vLLM starts slowly: its checks share it): streaming token by token on both
engines, and greedy answers identical to the built-in engine's."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from deepscaler.inference.remote import wait_until_serving
from tests.real.conftest import HUB_ID
from tests.serve.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.real_model]
# The built-in engine's greedy chat answers (test_real_builtin.test_generate_greedy).
BUILTIN_GREEDY = {"What is 12+30?": "12 + 30 = 32.", "Name a prime number.": "The prime number I'm referring to is 2."}


@contextmanager
def serving(engine: str, env: dict) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "deepscaler.cli", "serve", "--model", HUB_ID, "--engine", engine,
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process, timeout=300)
        yield f"{base}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def vllm_server(hub_env: dict) -> Iterator[str]:
    with serving("vllm", hub_env) as base_url:
        yield base_url


def streamed_contents(base_url: str) -> list[str]:
    body = {"model": "SmolLM2-135M-Instruct", "stream": True, "temperature": 0, "max_tokens": 32,
            "messages": [{"role": "user", "content": "What is 12+30?"}]}
    events = []
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    pieces = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1] if json.loads(e)["choices"]]
    contents = [p for p in pieces if p]
    return contents


def test_the_vllm_server_streams_token_by_token(vllm_server: str) -> None:
    contents = streamed_contents(vllm_server)
    assert len(contents) >= 5 and "".join(contents) == BUILTIN_GREEDY["What is 12+30?"]


def test_the_builtin_server_streams_token_by_token(hub_env: dict) -> None:
    with serving("builtin", hub_env) as base_url:
        contents = streamed_contents(base_url)
    assert len(contents) >= 5 and "".join(contents) == BUILTIN_GREEDY["What is 12+30?"]


def test_greedy_answers_match_the_builtin_engine(vllm_server: str) -> None:
    for prompt, builtin in BUILTIN_GREEDY.items():
        body = {"model": "SmolLM2-135M-Instruct", "temperature": 0, "max_tokens": 32,
                "messages": [{"role": "user", "content": prompt}]}
        answer = httpx.post(f"{vllm_server}/chat/completions", json=body, timeout=120).json()
        assert answer["choices"][0]["message"]["content"] == builtin
        assert answer["choices"][0]["finish_reason"] == "stop"
