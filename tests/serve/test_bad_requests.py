"""A corpus of bad HTTP requests against a real `deepscaler serve`, on both engines: each gets its 4xx with
an OpenAI-style error body, and the server answers a good request right after (issue 18). The vLLM server,
slow to start, also checks here that streams arrive token by token on that engine (issue 20)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import TEST_TIMEOUTS, running_server

OK = {"model": "tiny", "prompt": "1 + 1 =", "max_tokens": 2}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

# (name, path, body: a dict sent as JSON or raw bytes, status, the field named as `param`)
CORPUS = [
    ("seed over 64 bits", "completions", {**OK, "seed": 2**64}, 400, "seed"),
    ("seed 2**63", "completions", {**OK, "seed": 2**63}, 400, "seed"),
    ("negative seed", "completions", {**OK, "seed": -1}, 400, "seed"),
    ("boolean n", "completions", {**OK, "n": True}, 400, "n"),
    ("n over the limit", "completions", {**OK, "n": 65}, 400, "n"),
    ("float n", "completions", {**OK, "n": 2.0}, 400, "n"),
    ("huge temperature", "completions", {**OK, "temperature": 1e308}, 400, "temperature"),
    ("temperature over 2", "chat/completions", {**CHAT, "temperature": 2.5}, 400, "temperature"),
    ("NaN temperature", "completions", b'{"prompt": "x", "temperature": NaN}', 400, "temperature"),
    ("infinite top_p", "completions", b'{"prompt": "x", "top_p": Infinity}', 400, "top_p"),
    ("string temperature", "completions", {**OK, "temperature": "1"}, 400, "temperature"),
    ("boolean max_tokens", "completions", {**OK, "max_tokens": True}, 400, "max_tokens"),
    ("zero max_tokens", "completions", {**OK, "max_tokens": 0}, 400, "max_tokens"),
    ("top_k over the vocabulary", "completions", {**OK, "top_k": 10**6}, 400, "top_k"),
    ("logprobs over 20", "completions", {**OK, "logprobs": 21}, 400, "logprobs"),
    ("string stream", "completions", {**OK, "stream": "yes"}, 400, "stream"),
    ("empty stop string", "completions", {**OK, "stop": [""]}, 400, "stop"),
    ("17 stop strings", "completions", {**OK, "stop": [str(i) for i in range(17)]}, 400, "stop"),
    ("empty prompt list", "completions", {**OK, "prompt": []}, 400, "prompt"),
    ("empty token prompt", "completions", {**OK, "prompt": [[]]}, 400, "prompt"),
    ("empty string prompt", "completions", {**OK, "prompt": ""}, 400, "prompt"),
    ("token id over the vocabulary", "completions", {**OK, "prompt": [5000]}, 400, "prompt"),
    ("negative token id", "completions", {**OK, "prompt": [-1]}, 400, "prompt"),
    ("token id 2**40", "completions", {**OK, "prompt": [2**40]}, 400, "prompt"),
    ("boolean token id", "completions", {**OK, "prompt": [5, True]}, 400, "prompt"),
    ("65 prompts", "completions", {**OK, "prompt": ["x"] * 65}, 400, "prompt"),
    ("prompt over the context", "completions", {**OK, "prompt": "word " * 5000}, 400, "prompt"),
    ("token prompt over the context", "completions", {**OK, "prompt": [7] * 2048}, 400, "prompt"),
    ("streamed bad token id", "completions", {**OK, "prompt": [5000], "stream": True}, 400, "prompt"),
    ("streamed two prompts", "completions", {**OK, "prompt": ["a", "b"], "stream": True}, 400, "stream"),
    ("no messages", "chat/completions", {**CHAT, "messages": []}, 400, "messages"),
    ("1,000 messages", "chat/completions", {**CHAT, "messages": [{"role": "user", "content": "hi"}] * 1000},
     400, "messages"),
    ("message without a role", "chat/completions", {**CHAT, "messages": [{"content": "hi"}]}, 400, "messages"),
    ("numeric content", "chat/completions", {**CHAT, "messages": [{"role": "user", "content": 5}]}, 400,
     "messages"),
    ("lone surrogate", "chat/completions",
     b'{"messages": [{"role": "user", "content": "a\\ud800b"}], "max_tokens": 2}', 400, None),
    ("JSON nested 100,000 deep", "completions", b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("not JSON", "completions", b"{not json", 400, None),
    ("empty body", "completions", b"", 400, None),
    ("invalid UTF-8", "completions", b'{"prompt": "\xff\xfe"}', 400, None),
    ("a JSON list", "completions", b"[1, 2]", 400, None),
    ("unknown model", "completions", {**OK, "model": "gpt-4"}, 404, None),
    ("body over 2 MB", "completions", b"x" * 3_000_000, 413, None),
]

HEADERS = {"Authorization": "Bearer secret", "Content-Type": "application/json"}


@pytest.fixture(scope="module", params=["builtin", pytest.param("vllm", marks=pytest.mark.slow)])
def server(request, tiny_folder):
    if request.param == "builtin":
        yield request.getfixturevalue("served_model")  # the session's server
        return
    pytest.importorskip("vllm")
    with running_server(tiny_folder, "vllm", *TEST_TIMEOUTS) as server:
        yield server


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status and error["message"] and error["type"]
    if param is not None:
        assert error["param"] == param, error
    return error


def assert_still_serving(server: dict) -> None:
    reply = httpx.post(f"{server['base_url']}/completions", json=OK, headers=HEADERS, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["finish_reason"] in ("stop", "length")
    assert httpx.get(server["health"]).json() == {"status": "ok"}


def test_corpus_of_bad_requests(server):
    failures = []
    for name, path, body, status, param in CORPUS:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = httpx.post(f"{server['base_url']}/{path}", content=content, headers=HEADERS, timeout=30)
        try:
            assert_openai_error(response, status, param)
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    assert not failures, "\n".join(failures)
    assert_still_serving(server)


def test_routing_and_auth_errors_have_the_openai_shape(server):
    base = server["base_url"]
    assert_openai_error(httpx.post(f"{base}/nope", json=OK, headers=HEADERS), 404)
    assert_openai_error(httpx.get(f"{base}/completions", headers=HEADERS), 405)
    assert_openai_error(httpx.post(f"{base}/completions", json=OK), 401)
    assert assert_openai_error(httpx.post(f"{base}/completions", json=OK, headers={"Authorization": "Bearer x"}),
                               401)["type"] == "authentication_error"
    assert_still_serving(server)


def raw_connection(server: dict) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server["port"]), timeout=10)
    return sock


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return int(data.split(b" ")[1]) if data else 0


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_chunked_body_is_refused_as_it_arrives(server):
    before = resident_mb(server["process"].pid)
    sock = raw_connection(server)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
                 b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    sent = 0
    try:
        while sent < 1 << 30:  # a 1 GB body, unless the server closes the connection first
            sock.sendall(chunk)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 64 << 20, "the server read far past its 2 MB limit"
    with contextlib.suppress(ConnectionResetError):  # the close may reset the connection before the 413 is read
        assert read_status(sock) in (413, 0)
    sock.close()
    assert resident_mb(server["process"].pid) - before < 64
    assert_still_serving(server)


def test_slow_headers_are_cut_off(server):
    sock = raw_connection(server)
    start = time.monotonic()
    closed = False
    try:
        for byte in b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            sock.sendall(bytes([byte]))
            time.sleep(0.25)
            if time.monotonic() - start > 10:
                break
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    if not closed:
        sock.settimeout(5)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
    assert closed and time.monotonic() - start < 8  # --read-timeout 1
    sock.close()
    assert_still_serving(server)


def test_a_body_shorter_than_its_length_times_out(server):
    sock = raw_connection(server)
    start = time.monotonic()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\": ")
    assert read_status(sock) == 408
    assert time.monotonic() - start < 10
    sock.close()
    assert_still_serving(server)


@pytest.mark.slow  # starts a server of its own on the built-in engine
def test_a_stream_arrives_token_by_token(server):
    # Before: the vLLM engine had no on_token, so the batcher ran it whole and the stream came in 3 events at the end.
    body = {**OK, "prompt": "The sum of the angles of a triangle is", "max_tokens": 24, "temperature": 0}
    reply = httpx.post(f"{server['base_url']}/completions", json=body, headers=HEADERS, timeout=60).json()
    tokens = reply["usage"]["completion_tokens"]
    arrivals, text = [], ""
    with httpx.stream("POST", f"{server['base_url']}/completions", json={**body, "stream": True}, headers=HEADERS,
                      timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: {"):
                piece = json.loads(line[6:])["choices"][0]["text"]
                if piece:
                    arrivals.append(time.monotonic())
                    text += piece
    assert text == reply["choices"][0]["text"]
    assert tokens > 8 and len(arrivals) >= tokens - 1
    assert arrivals[0] < arrivals[-1]  # pieces came as they were made, not all at once when the call ended


def test_sigterm_with_work_in_flight_exits_promptly(server, tiny_folder):
    if server["engine"] == "builtin":  # the session's server must live on: stop one of our own
        with running_server(tiny_folder, "builtin") as own:
            assert_sigterm_exits_promptly(own)
    else:  # the last test of this module on vLLM: its server may go
        assert_sigterm_exits_promptly(server)


def assert_sigterm_exits_promptly(server: dict) -> None:
    long = {**OK, "prompt": "count:", "n": 16, "max_tokens": 2000, "temperature": 1.0, "stream": False}
    replies: list = []

    def ask() -> None:
        try:
            replies.append(httpx.post(f"{server['base_url']}/completions", json=long, headers=HEADERS, timeout=60))
        except httpx.HTTPError as error:
            replies.append(error)

    threading.Thread(target=ask, daemon=True).start()
    time.sleep(1.0)  # the generation is in the engine
    assert not replies, "the generation finished before the signal: make it longer"
    start = time.monotonic()
    server["process"].send_signal(signal.SIGTERM)
    server["process"].wait(timeout=30)
    assert time.monotonic() - start < 10
