"""One vLLM server on the real model (vLLM starts slowly: its checks share it): streaming token by token on both
engines, and greedy answers identical to the built-in engine's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.real.conftest import HUB_ID
from tests.serve.conftest import running_server

pytestmark = [pytest.mark.slow, pytest.mark.real_model]
AUTH = {"Authorization": "Bearer secret"}  # running_server's API key
# The built-in engine's greedy chat answers (test_real_builtin.test_generate_greedy).
BUILTIN_GREEDY = {"What is 12+30?": "12 + 30 = 32.", "Name a prime number.": "The prime number I'm referring to is 2."}


@contextmanager
def serving(engine: str, env: dict) -> Iterator[str]:
    with running_server(HUB_ID, engine, "--read-timeout", "60", env=env) as server:
        yield server["base_url"]


@pytest.fixture(scope="module")
def vllm_server(hub_env: dict) -> Iterator[str]:
    with serving("vllm", hub_env) as base_url:
        yield base_url


def streamed_contents(base_url: str) -> list[str]:
    body = {"model": "tiny", "stream": True, "temperature": 0, "max_tokens": 32,
            "messages": [{"role": "user", "content": "What is 12+30?"}]}
    events = []
    with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=120, headers=AUTH) as response:
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
        body = {"model": "tiny", "temperature": 0, "max_tokens": 32,
                "messages": [{"role": "user", "content": prompt}]}
        answer = httpx.post(f"{vllm_server}/chat/completions", json=body, timeout=120, headers=AUTH).json()
        assert answer["choices"][0]["message"]["content"] == builtin
        assert answer["choices"][0]["finish_reason"] == "stop"
