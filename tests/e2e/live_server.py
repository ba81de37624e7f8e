"""A real SQLEnv server in a subprocess, on a free port, started as `make serve` does.

It runs ``python -m sql_env.server.app`` (``main()``), configured through the
environment variables that ``server/app.py`` documents.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

START_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(data_dir: Path, log_path: Path, **settings: str) -> Iterator[str]:
    """Start the server, wait until ``/health`` is healthy, yield its base URL.

    Args:
        data_dir: The built data (``SQLENV_DATA_DIR``).
        log_path: Where the server's output goes (shown when it fails to start).
        **settings: More environment variables, e.g. ``MAX_CONCURRENT_ENVS="4"``.

    Raises:
        RuntimeError: The server exited or was not healthy within the timeout.
    """
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SQLENV_DATA_DIR": str(data_dir),
        "GRADIO_ANALYTICS_ENABLED": "False",
        **settings,
    }
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sql_env.server.app"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(url, proc, log_path)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.25)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"server at {url} did not become healthy:\n{tail}")
