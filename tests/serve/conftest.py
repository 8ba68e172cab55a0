import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deepscaler.inference import make_tiny_model
from deepscaler.inference.remote import RemoteError, wait_until_serving


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(folder: Path | str, engine: str = "builtin", *extra: str, env: dict | None = None) -> Iterator[dict]:
    """`deepscaler serve` on `folder` (or a hub id) as a real subprocess on a real socket, API key "secret", name
    "tiny"."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "deepscaler.cli", "serve", "--model", str(folder), "--engine", engine,
         "--port", str(port), "--api-key", "secret", "--served-model-name", "tiny", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env or os.environ),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, process, timeout=180)
    except RemoteError as error:
        raise RuntimeError(f"{error}\n{process.stdout.read() if process.poll() is not None else ''}") from None
    try:
        yield {"base_url": f"{base}/v1", "health": f"{base}/health", "folder": folder, "api_key": "secret",
               "port": port, "process": process, "engine": engine}
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("serve") / "tiny", preset="tiny", seed=0)


# Short client time-outs, so the slow-client cases of test_bad_requests.py take a second or two.
TEST_TIMEOUTS = ("--read-timeout", "1", "--request-timeout", "60")


@pytest.fixture(scope="session")
def served_model(tiny_folder):
    with running_server(tiny_folder, "builtin", *TEST_TIMEOUTS) as server:
        yield server
