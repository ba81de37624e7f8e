"""Pools section: why SQLEnv's worker pool is hand-written.

One tiny job (``SELECT 1, 'abc', 2.5`` and its rows back) goes, over and over,
to one worker process through each of:

- ``sqlenv_pool``: SQLEnv's ``WorkerPool`` running a real ``RunQuery`` job
  (sandbox, result view), as every QUERY step does;
- ``socketpair``: the same transport bare (a pickled frame over a socketpair to
  a worker that runs the statement on an open connection), the floor of the
  design;
- ``pebble``, ``ProcessPoolExecutor``, ``loky``: the libraries one would reach
  for, each with one worker running the same function as ``socketpair``.

``raw_sqlite3`` is the statement in this process, with no worker at all.
pebble and loky are measured only when importable: they are not dependencies
(``make bench-pools`` installs them into a throwaway directory). Also timed:
how long a fresh SQL worker takes to start and answer, which is what a session
waits for when every worker is held by a runaway statement.
"""

import concurrent.futures
import contextlib
import importlib.util
import os
import pickle
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sql_env.benchmarks.machine import load_average
from sql_env.benchmarks.stats import latency_ms

TINY_SQL = "SELECT 1, 'abc', 2.5"
_HEADER = struct.Struct("!Q")
_connection: sqlite3.Connection | None = None


def run_tiny() -> list[tuple[Any, ...]]:
    """The job every pool runs: the tiny statement on the worker's open connection."""
    global _connection
    if _connection is None:
        _connection = sqlite3.connect(":memory:")
    return _connection.execute(TINY_SQL).fetchall()


def _read(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            raise EOFError
        buffer += chunk
    return bytes(buffer)


def _send(sock: socket.socket, message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _receive(sock: socket.socket) -> Any:
    return pickle.loads(_read(sock, _HEADER.unpack(_read(sock, _HEADER.size))[0]))


def socketpair_worker(fd: int) -> None:
    """A bare worker: answer every frame with ``run_tiny()`` until EOF."""
    with socket.socket(fileno=fd) as sock:
        while True:
            try:
                _receive(sock)
            except EOFError:
                return
            _send(sock, run_tiny())


@contextlib.contextmanager
def _socketpair_call() -> Iterator[Callable[[], Any]]:
    parent, child = socket.socketpair()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from sql_env.benchmarks.pools import socketpair_worker; "
            "socketpair_worker(int(sys.argv[1]))",
            str(child.fileno()),
        ],
        pass_fds=(child.fileno(),),
    )
    child.close()

    def call() -> Any:
        _send(parent, ("run_tiny",))
        return _receive(parent)

    try:
        yield call
    finally:
        parent.close()
        proc.wait(timeout=30)


@contextlib.contextmanager
def _sqlenv_pool_call(db_path: Path) -> Iterator[Callable[[], Any]]:
    from sql_env.server.sql_worker import RunQuery
    from sql_env.server.worker_pool import PoolSettings, WorkerPool

    pool = WorkerPool(PoolSettings(workers=1))
    pool.wait_ready()
    job = RunQuery(str(db_path), TINY_SQL, 5.0)
    try:
        yield lambda: pool.run(job, 5.0)
    finally:
        pool.close()


@contextlib.contextmanager
def _executor_call(
    executor: concurrent.futures.Executor,
) -> Iterator[Callable[[], Any]]:
    try:
        yield lambda: executor.submit(run_tiny).result()
    finally:
        executor.shutdown()


@contextlib.contextmanager
def _pebble_call() -> Iterator[Callable[[], Any]]:
    import pebble

    pool = pebble.ProcessPool(max_workers=1)
    try:
        yield lambda: pool.schedule(run_tiny).result()
    finally:
        pool.close()
        pool.join()


@contextlib.contextmanager
def _loky_call() -> Iterator[Callable[[], Any]]:
    import loky

    executor = loky.get_reusable_executor(max_workers=1)
    try:
        yield lambda: executor.submit(run_tiny).result()
    finally:
        executor.shutdown()


@contextlib.contextmanager
def _raw_call() -> Iterator[Callable[[], Any]]:
    yield run_tiny


def contenders(db_path: Path) -> dict[str, Callable[[], Any]]:
    """Name -> context manager yielding a call; only what is importable here."""
    found: dict[str, Callable[[], Any]] = {
        "raw_sqlite3": _raw_call,
        "socketpair": _socketpair_call,
        "sqlenv_pool": lambda: _sqlenv_pool_call(db_path),
        "ProcessPoolExecutor": lambda: _executor_call(
            concurrent.futures.ProcessPoolExecutor(max_workers=1)
        ),
    }
    if importlib.util.find_spec("pebble"):
        found["pebble"] = _pebble_call
    if importlib.util.find_spec("loky"):
        found["loky"] = _loky_call
    return found


def _timed(call: Callable[[], Any], jobs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(jobs):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def worker_start_ms(starts: int) -> dict[str, float]:
    """How long a fresh SQLEnv worker pool of one takes until its worker is ready."""
    from sql_env.server.worker_pool import PoolSettings, WorkerPool

    seconds = []
    for _ in range(starts):
        started = time.perf_counter()
        pool = WorkerPool(PoolSettings(workers=1))
        pool.wait_ready()
        seconds.append(time.perf_counter() - started)
        pool.close()
    return latency_ms(seconds)


def run(db_path: Path, jobs: int, warmup: int, starts: int) -> dict[str, Any]:
    """Round trip of the tiny job through every contender, one after the other."""
    load_start = load_average()
    round_trip: dict[str, Any] = {}
    for name, opened in contenders(db_path).items():
        with opened() as call:
            if call() != [(1, "abc", 2.5)] and name != "sqlenv_pool":
                raise RuntimeError(f"{name} returned {call()!r}")
            round_trip[name] = latency_ms(_timed(call, jobs, warmup))
    missing = [name for name in ("pebble", "loky") if name not in round_trip]
    return {
        "round_trip_ms": round_trip,
        "not_installed": missing,
        "worker_start_ms": worker_start_ms(starts),
        "cpu_count": os.cpu_count(),
        "load_start": load_start,
        "load_end": load_average(),
    }
