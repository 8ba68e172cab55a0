import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from deepscaler.inference import make_tiny_model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def served_model(tmp_path_factory):
    """`deepscaler serve` on a tiny model, as a real subprocess on a real socket."""
    folder = make_tiny_model(tmp_path_factory.mktemp("serve") / "tiny", preset="tiny", seed=0)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "deepscaler.cli", "serve", "--model", str(folder), "--engine", "builtin",
         "--port", str(port), "--api-key", "secret", "--served-model-name", "tiny"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError(process.stdout.read())
    yield {"base_url": f"{base}/v1", "health": f"{base}/health", "folder": folder, "api_key": "secret"}
    process.terminate()
    process.wait(timeout=30)
