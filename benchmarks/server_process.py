"""The one way a test or a benchmark starts a server: uvicorn in a subprocess.

Every end-to-end test and every wire benchmark starts its servers here, so a
server under test is always the same black box: ``python -m uvicorn APP`` run
by a given interpreter, configured only through the environment variables that
``server/app.py`` documents, on a free loopback port, healthy once ``GET
/health`` says so. The interpreter need not be this one: another checkout's
virtualenv serves its own code on its own data (the benchmark's "before").

Also here: the raw-frame WebSocket client the tests send hostile frames with,
and the file hashes they compare before and after an attack.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from websockets.sync.client import connect as ws_connect_sync

SQLENV_APP = "sql_env.server.app:app"
ECHO_APP = "sql_env.benchmarks.echo_env:echo_app"
# Environment variables read by server/app.py (see its docstring).
DATA_DIR_ENV = "SQLENV_DATA_DIR"
MAX_ENVS_ENV = "MAX_CONCURRENT_ENVS"
SESSION_TIMEOUT_ENV = "SESSION_TIMEOUT_S"
DEFAULT_MAX_ENVS = "64"
DEFAULT_SESSION_TIMEOUT_S = "300"
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 15.0
# The same connection settings as OpenEnv's EnvClient (websockets defaults,
# permessage-deflate on), without proxies: we only ever talk to loopback.
WS_OPTIONS: dict[str, Any] = {
    "max_size": 100 * 1024 * 1024,
    "ping_interval": 20.0,
    "ping_timeout": 20.0,
    "open_timeout": 30.0,
    "proxy": None,
}


def free_port() -> int:
    """A TCP port that nothing listens on at loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A uvicorn server in a subprocess on a free loopback port.

    Started as the image starts it (``uvicorn APP --timeout-graceful-shutdown
    5``), quieter (warnings only, no access log), in a scratch working
    directory so that nothing of the caller's tree shadows the server's own
    imports.

    Args:
        app: ``module:attr`` import string (a factory when ``factory`` is set).
        env: Extra environment variables (data dir, session limits, ...).
        factory: Pass ``--factory`` to uvicorn.
        python: The interpreter that serves (default: this one).
        log_path: Where the server's output goes (default: a temporary file,
            removed on ``stop``).
    """

    def __init__(
        self,
        app: str = SQLENV_APP,
        env: dict[str, str] | None = None,
        *,
        factory: bool = False,
        python: str | Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.app = app
        self.python = str(python or sys.executable)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self._extra_env = dict(env or {})
        self._factory = factory
        self._own_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="sqlenv-server-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "uvicorn", self.app]
        if self._factory:
            cmd.append("--factory")
        return cmd + [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--timeout-graceful-shutdown",
            "5",
            "--log-level",
            "warning",
            "--no-access-log",
        ]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> ServerProcess:
        """Start it and wait until ``/health`` is healthy.

        Raises:
            RuntimeError: The server exited or was not healthy in time (with
                the tail of its log).
        """
        env = {**os.environ, **self._extra_env, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=env,
                cwd=self.log_path.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server {self.app} exited with {self.proc.returncode}:\n"
                    + self.log_tail()
                )
            if self.healthy():
                return self
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"server {self.app} not healthy in {timeout_s}s:\n{tail}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=2) as resp:
                body = json.loads(resp.read())
        except (OSError, ValueError):
            return False
        return body.get("status") == "healthy"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def ps(self) -> psutil.Process:
        if self.proc is None:
            raise RuntimeError("server not started")
        return psutil.Process(self.proc.pid)

    def children(self) -> list[psutil.Process]:
        """Its live subprocesses (SQL workers, where the server has them)."""
        return self.ps.children(recursive=True)

    def rss_mb(self) -> float:
        """Resident memory of the server process alone."""
        return self.ps.memory_info().rss / 2**20

    def tree_rss_mb(self) -> float:
        """Resident memory of the server and its live subprocesses, summed."""
        total = self.ps.memory_info().rss
        for child in self.children():
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    def num_fds(self) -> int:
        return self.ps.num_fds()

    def num_threads(self) -> int:
        return self.ps.num_threads()

    def own_cpu_s(self) -> float:
        """CPU seconds of the server process alone."""
        times = self.ps.cpu_times()
        return times.user + times.system

    def cpu_s(self) -> float:
        """CPU seconds of the server, its live subprocesses and the reaped ones."""
        times = self.ps.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self.children():
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += child_times.user + child_times.system
        return total

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; safe to call twice.

        Subprocesses it leaves behind (a SQL worker deep in one SQLite step
        reads no socket until the step ends) are killed too.
        """
        if self.proc is not None and self.proc.poll() is None:
            try:
                left = self.children()
            except psutil.NoSuchProcess:
                left = []
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
            for child in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server under test, so it can be started again fresh.

    Attributes:
        name: What reports call it.
        app: ``module:attr`` for uvicorn.
        env: Its environment variables.
        python: Its interpreter (default: this one).
        factory: ``app`` is a factory.
    """

    name: str
    app: str = SQLENV_APP
    env: dict[str, str] = field(default_factory=dict)
    python: str | None = None
    factory: bool = False

    def process(self, **more_env: str) -> ServerProcess:
        return ServerProcess(
            self.app,
            {**self.env, **more_env},
            factory=self.factory,
            python=self.python,
        )


def sqlenv_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a SQLEnv server on ``data_dir``.

    ``settings`` are more of app.py's variables; a session limit of 64 and an
    idle timeout of 300 s unless given.
    """
    return {
        DATA_DIR_ENV: str(Path(data_dir).resolve()),
        MAX_ENVS_ENV: DEFAULT_MAX_ENVS,
        SESSION_TIMEOUT_ENV: DEFAULT_SESSION_TIMEOUT_S,
        "GRADIO_ANALYTICS_ENABLED": "False",
        **settings,
    }


def sqlenv_server(
    data_dir: Path,
    *,
    python: str | Path | None = None,
    log_path: Path | None = None,
    **settings: str,
) -> ServerProcess:
    """A SQLEnv server on ``data_dir``; ``settings`` are app.py's variables."""
    return ServerProcess(
        SQLENV_APP,
        sqlenv_env(data_dir, **settings),
        python=python,
        log_path=log_path,
    )


class WireClient:
    """A synchronous raw-frame WebSocket client (tests and probes).

    Sends OpenEnv frames as given, so a test can send anything, and reads one
    reply per frame with a deadline.
    """

    def __init__(self, ws_url: str, open_timeout_s: float = 30.0) -> None:
        options = {k: v for k, v in WS_OPTIONS.items() if k != "open_timeout"}
        self.ws = ws_connect_sync(
            ws_url, open_timeout=open_timeout_s, **options
        ).__enter__()

    def send(self, frame: dict | str | bytes) -> None:
        self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    def recv(self, timeout_s: float = 30.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout_s))

    def call(self, frame: dict | str | bytes, timeout_s: float = 30.0) -> dict:
        self.send(frame)
        return self.recv(timeout_s)

    def reset(self, timeout_s: float = 30.0, **data: Any) -> dict:
        return self.call({"type": "reset", "data": data}, timeout_s)

    def step(self, action_type: str, argument: str, timeout_s: float = 30.0) -> dict:
        frame = {
            "type": "step",
            "data": {"action_type": action_type, "argument": argument},
        }
        return self.call(frame, timeout_s)

    def state(self, timeout_s: float = 30.0) -> dict:
        return self.call({"type": "state"}, timeout_s)

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sha256_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
