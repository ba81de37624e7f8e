"""Pools section: why SQLEnv's worker pool is hand-written.

One tiny job (``SELECT 1, 'abc', 2.5`` and its rows back) goes, over and over,
to one worker process through each of:

- ``sqlenv_pool`` (``run``) and ``sqlenv_pool_async`` (``run_async`` on the
  event loop uvicorn picks, uvloop where installed, as the server awaits it):
  SQLEnv's ``WorkerPool`` running a real ``RunQuery`` job
  (sandbox, result view), as every QUERY step does;
- ``sqlenv_worker_frames``: that job's frames written straight to a real SQL
  worker, without the pool's bookkeeping; ``sqlenv_job_in_process``: the job
  run in this process, without any worker;
- ``socketpair``: the transport bare (a pickled frame over a socketpair to a
  worker that runs the statement on an open connection), the floor of the
  design;
- ``pebble``, ``ProcessPoolExecutor``, ``loky``: the libraries one would reach
  for, each with one worker running the same function as ``socketpair``.

``raw_sqlite3`` is the statement in this process, with no worker at all.
pebble and loky are measured only when importable: they are not dependencies
(``make bench-pools`` installs them into a throwaway directory). Also timed:
how long a fresh SQL worker takes to start and answer, which is what a session
waits for when every worker is held by a runaway statement.
"""

import asyncio
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
from sql_env.server.worker_protocol import encode, frame_length, read_frame

_BARE_HEADER = struct.Struct("!Q")

TINY_SQL = "SELECT 1, 'abc', 2.5"
TINY_ROWS = [(1, "abc", 2.5)]
_connection: sqlite3.Connection | None = None


def run_tiny() -> list[tuple[Any, ...]]:
    """The job every pool runs: the tiny statement on the worker's open connection."""
    global _connection
    if _connection is None:
        _connection = sqlite3.connect(":memory:")
    return _connection.execute(TINY_SQL).fetchall()


def bare_frame(value: Any) -> bytes:
    """The floor of the design: a length and a pickle, nothing else."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _BARE_HEADER.pack(len(payload)) + payload


def bare_read(sock: socket.socket) -> Any:
    header = sock.recv(_BARE_HEADER.size, socket.MSG_WAITALL)
    if len(header) < _BARE_HEADER.size:
        raise EOFError
    return pickle.loads(sock.recv(frame_length(header), socket.MSG_WAITALL))


def socketpair_worker(fd: int) -> None:
    """A bare worker: answer every frame with ``run_tiny()`` until EOF."""
    with socket.socket(fileno=fd) as sock:
        while True:
            try:
                bare_read(sock)
            except (EOFError, OSError):
                return
            sock.sendall(bare_frame(run_tiny()))


@contextlib.contextmanager
def _frames_to(code: str, *args: str) -> Iterator[socket.socket]:
    """A process running ``code`` with a socketpair end's fd as ``argv[1]``."""
    parent, child = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(child.fileno()), *args],
        pass_fds=(child.fileno(),),
    )
    child.close()
    try:
        yield parent
    finally:
        parent.close()
        proc.wait(timeout=30)


@contextlib.contextmanager
def _socketpair_call() -> Iterator[Callable[[], Any]]:
    code = (
        "import sys; from sql_env.benchmarks.pools import socketpair_worker; "
        "socketpair_worker(int(sys.argv[1]))"
    )
    frame = bare_frame(("run_tiny",))
    with _frames_to(code) as sock:

        def call() -> Any:
            sock.sendall(frame)
            return bare_read(sock)

        yield call


def _tiny_job(db_path: Path) -> Any:
    from sql_env.server.worker_protocol import RunQuery

    return RunQuery(str(db_path), TINY_SQL, 5.0)


@contextlib.contextmanager
def _sqlenv_job_call(db_path: Path) -> Iterator[Callable[[], Any]]:
    from sql_env.server.sql_worker import Worker

    worker, job = Worker(), _tiny_job(db_path)
    yield lambda: worker.run(job)


@contextlib.contextmanager
def _sqlenv_worker_call(db_path: Path) -> Iterator[Callable[[], Any]]:
    from sql_env.server.worker_channel import WORKER_COMMAND
    from sql_env.server.worker_settings import DEFAULT_MEMORY_MB

    frame = encode(_tiny_job(db_path))
    with _frames_to(WORKER_COMMAND, str(DEFAULT_MEMORY_MB), "0") as sock:
        read_frame(sock)  # the worker's Ready

        def call() -> Any:
            sock.sendall(frame)
            return read_frame(sock)

        yield call


@contextlib.contextmanager
def _sqlenv_pool_call(db_path: Path) -> Iterator[Callable[[], Any]]:
    from sql_env.server.worker_pool import WorkerPool
    from sql_env.server.worker_settings import PoolSettings

    pool = WorkerPool(PoolSettings(workers=1))
    pool.wait_ready()
    job = _tiny_job(db_path)
    try:
        yield lambda: pool.run(job, 5.0)
    finally:
        pool.close()


def _sqlenv_pool_async_times(db_path: Path, jobs: int, warmup: int) -> list[float]:
    """``run_async`` from an event loop, as the server's steps await it."""
    from sql_env.server.worker_pool import WorkerPool
    from sql_env.server.worker_settings import PoolSettings

    pool = WorkerPool(PoolSettings(workers=1))
    pool.wait_ready()
    job = _tiny_job(db_path)

    async def timed() -> list[float]:
        seconds = []
        for i in range(warmup + jobs):
            started = time.perf_counter()
            await pool.run_async(job, 5.0)
            if i >= warmup:
                seconds.append(time.perf_counter() - started)
        return seconds

    try:
        with asyncio.Runner(loop_factory=server_loop_factory()) as runner:
            return runner.run(timed())
    finally:
        pool.close()


def server_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop uvicorn serves on: uvloop where installed, else asyncio's."""
    if importlib.util.find_spec("uvloop") is None:
        return None
    import uvloop

    return uvloop.new_event_loop


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


def _loky_call() -> contextlib.AbstractContextManager[Callable[[], Any]]:
    import loky

    return _executor_call(loky.get_reusable_executor(max_workers=1))


@contextlib.contextmanager
def _raw_call() -> Iterator[Callable[[], Any]]:
    yield run_tiny


def contenders(db_path: Path) -> dict[str, Callable[[], Any]]:
    """Name -> context manager yielding a call; only what is importable here."""
    found: dict[str, Callable[[], Any]] = {
        "raw_sqlite3": _raw_call,
        "sqlenv_job_in_process": lambda: _sqlenv_job_call(db_path),
        "socketpair": _socketpair_call,
        "sqlenv_worker_frames": lambda: _sqlenv_worker_call(db_path),
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
    from sql_env.server.worker_pool import WorkerPool
    from sql_env.server.worker_settings import PoolSettings

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
            reply = call()
            if not name.startswith("sqlenv") and reply != TINY_ROWS:
                raise RuntimeError(f"{name} returned {reply!r}")
            round_trip[name] = latency_ms(_timed(call, jobs, warmup))
        if name == "sqlenv_pool":
            times = _sqlenv_pool_async_times(db_path, jobs, warmup)
            round_trip["sqlenv_pool_async"] = latency_ms(times)
    missing = [name for name in ("pebble", "loky") if name not in round_trip]
    return {
        "round_trip_ms": round_trip,
        "not_installed": missing,
        "worker_start_ms": worker_start_ms(starts),
        "async_loop": "uvloop" if server_loop_factory() else "asyncio",
        "cpu_count": os.cpu_count(),
        "load_start": load_start,
        "load_end": load_average(),
    }
