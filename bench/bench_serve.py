"""Load test of `deepscaler serve`: 64 concurrent clients for a minute on the tiny model.

    python bench/bench_serve.py [--clients 64] [--seconds 60] [--max-tokens 32]

Prints requests answered / lost, p50 / p99 latency and generated tokens/s, and the ratio of that
throughput to one client sending the same requests one at a time (the baseline: no batching).
Traffic goes to 127.0.0.1 only; the loops are bounded in time and stop by themselves.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def client_loop(http: httpx.AsyncClient, url: str, stop_at: float, max_tokens: int, seed: int,
                      latencies: list[float], tokens: list[int], failures: list[str]) -> None:
    k = 0
    while time.monotonic() < stop_at:
        body = {"model": "tiny", "messages": [{"role": "user", "content": f"What is {seed} + {k}?"}],
                "max_tokens": max_tokens, "temperature": 1.0, "seed": seed * 1000 + k}
        start = time.monotonic()
        try:
            response = await http.post(url, json=body)
            if response.status_code != 200:
                failures.append(f"HTTP {response.status_code}")
            else:
                latencies.append(time.monotonic() - start)
                tokens.append(response.json()["usage"]["completion_tokens"])
        except httpx.HTTPError as error:
            failures.append(type(error).__name__)
        k += 1


async def load(url: str, clients: int, seconds: float, max_tokens: int) -> dict:
    latencies: list[float] = []
    tokens: list[int] = []
    failures: list[str] = []
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.monotonic()
        await asyncio.gather(*(client_loop(http, url, stop_at, max_tokens, c, latencies, tokens, failures)
                               for c in range(clients)))
        elapsed = time.monotonic() - start
    return {"answered": len(latencies), "failed": len(failures), "seconds": elapsed,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": sorted(latencies)[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
            "tokens_per_s": sum(tokens) / elapsed, "failures": failures[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    from deepscaler.inference import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_model(Path(tmp) / "tiny", preset="tiny", seed=0)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "deepscaler.cli", "serve", "--model", str(folder),
                                   "--engine", "builtin", "--port", str(port), "--served-model-name", "tiny"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, server, timeout=120)
            url = f"{base}/v1/chat/completions"
            baseline = asyncio.run(load(url, 1, min(15.0, args.seconds), args.max_tokens))
            loaded = asyncio.run(load(url, args.clients, args.seconds, args.max_tokens))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{'':24}{'requests':>10}{'lost':>6}{'p50 s':>8}{'p99 s':>8}{'tokens/s':>10}")
    for name, row in (("1 client (baseline)", baseline), (f"{args.clients} concurrent clients", loaded)):
        print(f"{name:24}{row['answered']:>10}{row['failed']:>6}{row['p50']:>8.3f}{row['p99']:>8.3f}"
              f"{row['tokens_per_s']:>10.0f}")
    print(f"throughput ratio (concurrent / one client): {loaded['tokens_per_s'] / baseline['tokens_per_s']:.1f}x")
    print(f"every request answered: {'yes' if loaded['failed'] == 0 else 'NO: ' + ', '.join(loaded['failures'])}")


if __name__ == "__main__":
    main()
