"""Streaming latency of `deepscaler serve` per engine: when the first piece of an answer arrives, and in how many.

    python bench/bench_stream.py [--engines builtin,vllm] [--requests 5] [--max-tokens 64]

For each engine, on the tiny model, one client streams greedy chat completions one at a time and the bench
prints the median time to the first content event, the content events per answer, and the time to the end
of the stream; the ratio first-event / whole-answer is the share of the wait a streaming client is spared
(the baseline: the whole answer, which is all a client gets from an engine that cannot stream).
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from deepscaler.inference.remote import wait_until_serving


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stream_once(url: str, question: str, max_tokens: int) -> tuple[float, int, float]:
    """(seconds to the first content event, content events, seconds to the end of the stream)."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    start, first, events = time.monotonic(), float("nan"), 0
    with httpx.stream("POST", url, json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                events += 1
                if events == 1:
                    first = time.monotonic() - start
    return first, events, time.monotonic() - start


def run_engine(engine: str, folder: Path, requests: int, max_tokens: int) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "deepscaler.cli", "serve", "--model", str(folder),
                               "--engine", engine, "--port", str(port), "--served-model-name", "tiny"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, server, timeout=300)
        url = f"{base}/v1/chat/completions"
        stream_once(url, "warm up", 4)
        rows = [stream_once(url, f"What is {k} + {k + 3}?", max_tokens) for k in range(requests)]
    finally:
        server.terminate()
        server.wait(timeout=60)
    first, events, whole = (statistics.median(column) for column in zip(*rows))
    return {"engine": engine, "first": first, "events": events, "whole": whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="builtin,vllm", help="comma-separated: builtin, vllm")
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    from deepscaler.inference import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_model(Path(tmp) / "tiny", preset="tiny", seed=0)
        rows = [run_engine(engine.strip(), folder, args.requests, args.max_tokens)
                for engine in args.engines.split(",")]
    print(f"{'engine':9}{'first event s':>15}{'events':>8}{'whole answer s':>16}{'first / whole':>15}")
    for r in rows:
        print(f"{r['engine']:9}{r['first']:>15.3f}{r['events']:>8.0f}{r['whole']:>16.3f}"
              f"{r['first'] / r['whole']:>15.2f}")


if __name__ == "__main__":
    main()
