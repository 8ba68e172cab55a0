"""Property: whatever JSON a client sends to the generation endpoints, the answer is a 200 or an
OpenAI-shaped 4xx, never a 500, and the server goes on answering. In-process, on the real built-in engine
(the HTTP layer in front of it is tested for real in test_bad_requests.py)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deepscaler.inference import LLM
from deepscaler.serve.app import create_app

ODD_NUMBERS = st.one_of(st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([2**63, 2**64, -1, 0]))
ODD_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(["", "\ud800", "\x00\x1b", "é" * 40]))
ANYTHING = st.recursive(st.one_of(st.none(), ODD_NUMBERS, ODD_TEXT),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=3),
                        max_leaves=8)
TOKEN_IDS = st.lists(st.integers(min_value=-5, max_value=1100) | st.booleans(), max_size=6)
PROMPTS = st.one_of(st.text(min_size=1, max_size=30), st.lists(st.integers(0, 1023), min_size=1, max_size=6),
                    ODD_TEXT, TOKEN_IDS, st.lists(TOKEN_IDS, max_size=3), st.lists(ODD_TEXT, max_size=3), ANYTHING)
MESSAGES = st.one_of(st.lists(st.fixed_dictionaries({"role": st.just("user"), "content": st.text(max_size=30)}),
                             min_size=1, max_size=3),
                    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "x"]),
                                                     "content": ODD_TEXT | ANYTHING}), max_size=3), ANYTHING)
# Small max_tokens when valid, so that accepted requests stay quick (n may be up to 64).
VALID_MAX_TOKENS = st.integers(min_value=1, max_value=3)
MAX_TOKENS = st.one_of(VALID_MAX_TOKENS, VALID_MAX_TOKENS, st.sampled_from([0, -1, True, 2.5, "3", None]))
VALID = {"temperature": st.floats(0, 2), "top_p": st.floats(0.01, 1), "top_k": st.integers(-1, 50),
         "n": st.integers(1, 4), "seed": st.integers(0, 2**63 - 1), "stop": st.lists(st.text(min_size=1, max_size=3),
                                                                                     max_size=2),
         "stream": st.booleans(), "logprobs": st.integers(0, 3), "top_logprobs": st.integers(0, 3),
         "model": st.just("tiny")}
ODD = {"temperature": ODD_NUMBERS, "top_p": ODD_NUMBERS, "top_k": ODD_NUMBERS, "n": ODD_NUMBERS,
       "seed": ODD_NUMBERS, "stop": st.one_of(ODD_TEXT, st.lists(ODD_TEXT, max_size=3), ANYTHING),
       "stream": ANYTHING, "logprobs": st.one_of(st.booleans(), ODD_NUMBERS), "top_logprobs": ODD_NUMBERS,
       "model": ANYTHING}
# Each field, when present, is as often valid as odd: so that a fair share of requests is accepted.
FIELDS = {key: st.one_of(VALID[key], VALID[key], ODD[key]) for key in VALID}


def request_bodies(main_field: str, main: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({main_field: main, "max_tokens": MAX_TOKENS},
                                 optional={key: value for key, value in FIELDS.items()})


@pytest.fixture(scope="module")
def client(tiny_folder):
    llm = LLM(model=str(tiny_folder), engine="builtin", data_parallel=1)
    with TestClient(create_app(llm, "tiny"), raise_server_exceptions=False) as client:
        yield client
    llm.close()


def check(client: TestClient, path: str, body: dict) -> None:
    response = client.post(path, content=json.dumps(body).encode("utf-8", "surrogatepass"))
    event(f"status {response.status_code}")
    assert response.status_code in (200, 400, 404), (body, response.text)
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == response.status_code
    elif body.get("stream") is True:
        assert response.text.rstrip().endswith("data: [DONE]"), (body, response.text[-300:])
    else:
        assert response.json()["choices"]


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])


@FUZZ
@given(body=request_bodies("prompt", PROMPTS))
def test_completions_never_fail_on_input(client, body):
    check(client, "/v1/completions", body)


@FUZZ
@given(body=request_bodies("messages", MESSAGES))
def test_chat_completions_never_fail_on_input(client, body):
    check(client, "/v1/chat/completions", body)
