"""Stress test of `deepscaler serve` on both engines: concurrent clients for a while, some of them streaming
and hanging up mid-stream, as issue 18 asks.

    python bench/bench_serve_stress.py [--engines builtin,vllm] [--clients 64] [--seconds 60] [--max-tokens 32]

Every client loops until the time is up, alternating plain and streamed chat completions; every fourth
client hangs up each streamed request after its third event. Per engine it prints requests answered
(status 200, complete), errored (anything else, hang-ups excluded), hung up, the latency p50 and p99 of
answered requests, the server's resident memory before and after the load, and whether the server still
answers and reports healthy afterwards. The model is the tiny one from `make_tiny_model`; traffic goes to
127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
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


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))] if ordered else float("nan")


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.hung_up = 0


async def client(http: httpx.AsyncClient, url: str, number: int, stop_at: float, max_tokens: int,
                 tally: Tally) -> None:
    hangs_up = number % 4 == 0
    k = 0
    while time.monotonic() < stop_at:
        stream = k % 2 == 1
        body = {"model": "tiny", "messages": [{"role": "user", "content": f"What is {number} + {k}?"}],
                "max_tokens": max_tokens, "temperature": 1.0, "seed": number * 1000 + k, "stream": stream}
        k += 1
        start = time.monotonic()
        try:
            if not stream:
                response = await http.post(url, json=body)
                if response.status_code == 200 and response.json()["choices"]:
                    tally.latencies.append(time.monotonic() - start)
                else:
                    tally.errors.append(f"HTTP {response.status_code}")
                continue
            async with http.stream("POST", url, json=body) as response:
                if response.status_code != 200:
                    tally.errors.append(f"HTTP {response.status_code}")
                    continue
                events, done = 0, False
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    events += 1
                    if '"error"' in line:
                        tally.errors.append("error event")
                        break
                    if line == "data: [DONE]":
                        done = True
                        break
                    if hangs_up and events == 3:
                        break  # leaving the block closes the connection mid-stream
                if done:
                    tally.latencies.append(time.monotonic() - start)
                elif hangs_up and events == 3:
                    tally.hung_up += 1
                elif not tally.errors or tally.errors[-1] != "error event":
                    tally.errors.append("stream ended early")
        except httpx.HTTPError as error:
            tally.errors.append(type(error).__name__)


async def load(url: str, clients: int, seconds: float, max_tokens: int) -> tuple[Tally, float]:
    tally = Tally()
    stop_at = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients)) as http:
        start = time.monotonic()
        await asyncio.gather(*(client(http, url, c, stop_at, max_tokens, tally) for c in range(clients)))
        return tally, time.monotonic() - start


def run_engine(engine: str, folder: Path, args: argparse.Namespace) -> dict:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "deepscaler.cli", "serve", "--model", str(folder),
                               "--engine", engine, "--port", str(port), "--served-model-name", "tiny"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server, timeout=300)
        url = f"{base}/v1/chat/completions"
        warm = {"model": "tiny", "messages": [{"role": "user", "content": "warm up"}], "max_tokens": 4}
        httpx.post(url, json=warm, timeout=300).raise_for_status()
        before = resident_mb(server.pid)
        tally, elapsed = asyncio.run(load(url, args.clients, args.seconds, args.max_tokens))
        time.sleep(1.0)  # let hung-up requests drain from the engine
        after = resident_mb(server.pid)
        still = httpx.post(url, json=warm, timeout=60).status_code == 200
        healthy = httpx.get(f"{base}/health", timeout=10).status_code == 200
        started = time.monotonic()
        server.terminate()
        server.wait(timeout=60)
        return {"engine": engine, "answered": len(tally.latencies), "errored": len(tally.errors),
                "hung_up": tally.hung_up, "seconds": elapsed, "p50": percentile(tally.latencies, 0.5),
                "p99": percentile(tally.latencies, 0.99), "mb_before": before, "mb_after": after,
                "serving_after": still and healthy, "exit_s": time.monotonic() - started,
                "errors": sorted(set(tally.errors))[:5]}
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="builtin,vllm", help="comma-separated: builtin, vllm")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60, help="how long the load lasts, per engine")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    from deepscaler.inference import make_tiny_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_model(Path(tmp) / "tiny", preset="tiny", seed=0)
        for engine in args.engines.split(","):
            rows.append(run_engine(engine.strip(), folder, args))
    print(f"{args.clients} clients for {args.seconds:.0f} s, max_tokens {args.max_tokens}, every 4th client hanging "
          "up its streams after 3 events")
    print(f"{'engine':9}{'answered':>9}{'errored':>8}{'hung up':>8}{'p50 s':>8}{'p99 s':>8}{'RSS before':>12}"
          f"{'RSS after':>11}{'serving after':>15}{'SIGTERM exit s':>16}")
    for r in rows:
        print(f"{r['engine']:9}{r['answered']:>9}{r['errored']:>8}{r['hung_up']:>8}{r['p50']:>8.3f}{r['p99']:>8.3f}"
              f"{r['mb_before']:>9.0f} MB{r['mb_after']:>8.0f} MB{'yes' if r['serving_after'] else 'NO':>15}"
              f"{r['exit_s']:>16.1f}")
        if r["errors"]:
            print(f"  {r['engine']} errors: {', '.join(r['errors'])}")


if __name__ == "__main__":
    main()
