"""An engine that stops answering: requests meet their deadline (504), /health and new requests report the
stall (503), and all recovers when the engine moves again. In-process, on the real built-in engine behind
a gate that holds its calls (the only way left to make an engine hang: the vLLM hang of issue 18 is fixed)."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from deepscaler.inference import LLM, SamplingParams
from deepscaler.serve.app import Timeouts, create_app

BODY = {"model": "tiny", "prompt": "1 + 1 =", "max_tokens": 2}


class GatedEngine:
    """The engine, except that `generate` waits while `gate` is shut, and raises `fault` when one is set."""

    def __init__(self, engine) -> None:
        self.inner, self.gate, self.fault = engine, threading.Event(), None
        self.gate.set()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def generate(self, prompts, params, use_tqdm=False, on_token=None):
        self.gate.wait(timeout=60)
        if self.fault is not None:
            raise self.fault
        return self.inner.generate(prompts, params, use_tqdm=use_tqdm, on_token=on_token)


@pytest.fixture
def gated(tiny_folder):
    llm = LLM(model=str(tiny_folder), engine="builtin", data_parallel=1)
    llm.generate("warm up", SamplingParams(max_tokens=2), use_tqdm=False)  # kernels compile on first use
    llm.engine = engine = GatedEngine(llm.engine)
    app = create_app(llm, "tiny", timeouts=Timeouts(request=2.0, stall=0.5))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, engine
        engine.gate.set()
    llm.close()


def test_a_stalled_engine_is_reported_and_recovers(gated):
    client, engine = gated
    assert client.post("/v1/completions", json=BODY).status_code == 200
    assert client.get("/health").json() == {"status": "ok"}

    engine.gate.clear()
    start = time.monotonic()
    late = client.post("/v1/completions", json=BODY)
    assert late.status_code == 504 and late.json()["error"]["type"] == "timeout"
    assert 1.9 < time.monotonic() - start < 8
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy" and "not progressed" in health.json()["error"]["message"]
    refused = client.post("/v1/completions", json={**BODY, "stream": True})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == 503  # before any 200

    engine.gate.set()
    deadline = time.monotonic() + 10
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.post("/v1/completions", json=BODY).status_code == 200


def test_an_unforeseen_engine_fault_is_a_500_in_the_openai_shape(gated):
    client, engine = gated
    engine.fault = KeyError("a fault no check foresaw")
    failed = client.post("/v1/completions", json=BODY)
    assert failed.status_code == 500
    assert failed.json() == {"error": {"message": "internal server error (KeyError)", "type": "server_error",
                                       "param": None, "code": 500}}
    engine.fault = None
    assert client.post("/v1/completions", json=BODY).status_code == 200
