"""Killable SQL workers: a pool of processes the server can stop at any deadline.

Why a pool of our own, over the standard library: a job's round trip through a
``socketpair`` is a few tens of microseconds, where pebble's ``ProcessPool``,
``concurrent.futures.ProcessPoolExecutor`` and loky each hand a job through
feeder threads and queues and cost several times more (docs/benchmarks.md).
QUERY steps are mostly sub-millisecond, so that hand-off would be most of a
step. The pool also does what those do not: it waits on a worker from asyncio
without a thread, grows past its base size while workers are held by slow
statements (so a runaway query in one session never queues another session's
query), and starts workers with ``subprocess`` (fork *and exec*), which is safe
in a trainer process that has torch and CUDA loaded.

One job runs on one worker at a time. A job that has not answered by its
deadline is not waited for: its worker is killed (SIGKILL) and replaced, so no
CPU is spent on it afterwards. A worker that dies (out of memory, a crash) is
replaced the same way.
"""

import asyncio
import atexit
import contextlib
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sql_env.server.errors import QueryTimeoutError, ResourceLimitError
from sql_env.server.sql_worker import (
    HEADER_SIZE,
    Job,
    Ready,
    WorkerFailure,
    encode,
    frame_length,
)

logger = logging.getLogger(__name__)

# Imported by name, not run as __main__, so its job classes unpickle as sent.
WORKER_COMMAND = (
    "import sys; from sql_env.server.sql_worker import main; main(sys.argv[1:])"
)
DEFAULT_MEMORY_MB = 512
# Workers run below the server's priority, so the event loop is never starved.
WORKER_NICE = 10
START_TIMEOUT_S = 60.0
IDLE_RETIRE_S = 30.0  # an extra worker idle this long is stopped
# A worker gets this long past its job's deadline (SQLite's own interrupt) before
# it is killed.
KILL_GRACE_S = 0.5
# Share of the machine's memory that all workers' caps together may reach.
MEMORY_SHARE = 0.5


class WorkerError(RuntimeError):
    """A worker failed on a job for a reason that is not the agent's (a bug)."""


def available_cores() -> int:
    """The CPUs this process may run on (its affinity), at least one."""
    with contextlib.suppress(AttributeError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def memory_limit_bytes() -> int:
    """The memory this process's container may use, or the machine's."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit"):
        with contextlib.suppress(OSError, ValueError):
            text = open(path).read().strip()  # noqa: SIM115
            if text.isdigit() and int(text) < 2**60:
                return int(text)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How many workers, and how much each may use.

    Attributes:
        workers: Workers kept running (default: the available cores, so SQL runs
            on every core).
        max_workers: Workers allowed at once while slow statements hold some
            (default: as many as fit in half the memory at ``memory_mb`` each).
        memory_mb: Each worker's address-space cap.
    """

    workers: int = field(default_factory=available_cores)
    max_workers: int | None = None
    memory_mb: int = DEFAULT_MEMORY_MB

    @property
    def ceiling(self) -> int:
        if self.max_workers is not None:
            return max(self.workers, self.max_workers)
        fit = int(memory_limit_bytes() * MEMORY_SHARE) // (self.memory_mb * 2**20)
        return max(self.workers, fit)


@dataclass
class PoolStats:
    """Counters for tests, benchmarks and logs."""

    started: int = 0
    killed: int = 0
    died: int = 0
    jobs: int = 0
    failures: int = 0


class _Worker:
    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.idle_since = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.sock.close()

    # ------------------------------------------------------------- blocking

    def call(self, frame: bytes, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        self.sock.settimeout(timeout_s)
        self.sock.sendall(frame)
        return self.receive(deadline)

    def receive(self, deadline: float) -> Any:
        header = self._read(HEADER_SIZE, deadline)
        return pickle.loads(self._read(frame_length(header), deadline))

    def _read(self, size: int, deadline: float) -> bytes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            n = self.sock.recv_into(view[got:])
            if n == 0:
                raise EOFError
            got += n
        return bytes(buffer)

    # ------------------------------------------------------------ asyncio

    async def call_async(self, frame: bytes, timeout_s: float) -> Any:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        async with asyncio.timeout(timeout_s):
            await loop.sock_sendall(self.sock, frame)
            header = await self._read_async(loop, HEADER_SIZE)
            payload = await self._read_async(loop, frame_length(header))
        return pickle.loads(payload)

    async def _read_async(self, loop: asyncio.AbstractEventLoop, size: int) -> bytes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = await loop.sock_recv_into(self.sock, view[got:])
            if n == 0:
                raise EOFError
            got += n
        return bytes(buffer)


class WorkerPool:
    """SQL workers shared by every environment of a process; thread-safe.

    Args:
        settings: Sizes and limits (see ``PoolSettings``).
        start: Start the base workers now; else on ``start()`` or the first job.
    """

    def __init__(
        self, settings: PoolSettings | None = None, *, start: bool = True
    ) -> None:
        self.settings = settings or PoolSettings()
        self.stats = PoolStats()
        self._ceiling = self.settings.ceiling
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        self._waiters: deque[Callable[[_Worker | Exception], bool]] = deque()
        self._doomed: list[_Worker] = []
        self._closed = False
        self._pid = os.getpid()
        self._spawner = threading.Thread(
            target=self._maintain, name="sql-worker-spawner", daemon=True
        )
        if start:
            self.start()

    # --------------------------------------------------------------- public

    def start(self) -> None:
        """Start the base workers in the background; safe to call twice."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the SQL worker pool is closed")
            if self._spawner.is_alive():
                return
            self._spawner.start()

    @property
    def size(self) -> int:
        """Workers running now (idle, busy or starting)."""
        with self._lock:
            return len(self._idle) + len(self._busy) + self._starting

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in (*self._idle, *self._busy)]

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until the base number of workers has started (warm-up)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self._idle) + len(self._busy) < self.settings.workers:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise RuntimeError("SQL workers did not start in time")
                self._wake.wait(remaining)

    def run(self, job: Job, timeout_s: float) -> Any:
        """Run a job and return its result, blocking this thread.

        Args:
            job: What to run.
            timeout_s: The job's deadline; its worker is killed ``KILL_GRACE_S``
                after it.

        Raises:
            SQLEnvError: The job's own error (bad SQL, timeout, memory, ...).
            WorkerError: The job failed on a bug in the worker.
        """
        worker = self._acquire()
        with self._holding(worker, timeout_s):
            reply = worker.call(encode(job), timeout_s + KILL_GRACE_S)
        return self._unwrap(reply)

    async def run_async(self, job: Job, timeout_s: float) -> Any:
        """Run a job without blocking the event loop; see ``run``.

        Cancelling the awaiting task kills the worker running the job.
        """
        worker = await self._acquire_async()
        with self._holding(worker, timeout_s):
            reply = await worker.call_async(encode(job), timeout_s + KILL_GRACE_S)
        return self._unwrap(reply)

    @contextlib.contextmanager
    def _holding(self, worker: _Worker, timeout_s: float) -> Iterator[None]:
        """Give the worker back after its job, or kill it if the job went wrong."""
        try:
            yield
        except Exception as exc:
            self._discard(worker)
            raise self._failure(exc, timeout_s) from None
        except BaseException:  # cancelled or interrupted: its reply is unwanted
            self._discard(worker)
            raise
        self._release(worker)

    def close(self) -> None:
        """Stop every worker; jobs still running fail. Safe to call twice."""
        with self._lock:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
            self._wake.notify_all()
        for worker in workers:
            worker.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                worker.proc.wait(timeout=5)

    # ---------------------------------------------------------- internals

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _unwrap(self, reply: Any) -> Any:
        self._count("jobs")
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, WorkerFailure):
            self._count("failures")
            logger.error("SQL worker failed on a job:\n%s", reply.trace)
            raise WorkerError("the SQL worker failed on this job (logged)")
        return reply

    def _failure(self, exc: Exception, timeout_s: float) -> Exception:
        if isinstance(exc, TimeoutError):
            self._count("killed")
            return QueryTimeoutError(
                f"The query ran longer than {timeout_s:g} s and was stopped; "
                "simplify it or add a LIMIT."
            )
        self._count("died")
        logger.warning("SQL worker died during a job: %r", exc)
        return ResourceLimitError(
            "The query's worker ran out of memory or crashed; select fewer rows "
            "or simplify the query."
        )

    def _acquire(self) -> _Worker:
        got: list[_Worker | Exception] = []
        ready = threading.Event()

        def hand(worker: _Worker | Exception) -> bool:
            got.append(worker)
            ready.set()
            return True

        self._request(hand)
        ready.wait()
        if isinstance(got[0], Exception):
            raise got[0]
        return got[0]

    async def _acquire_async(self) -> _Worker:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Worker] = loop.create_future()

        def settle(worker: _Worker | Exception) -> None:
            if isinstance(worker, Exception):
                if not future.done():
                    future.set_exception(worker)
            elif future.cancelled():
                self._release(worker)
            else:
                future.set_result(worker)

        def hand(worker: _Worker | Exception) -> bool:
            if future.done():
                return False
            try:
                loop.call_soon_threadsafe(settle, worker)
            except RuntimeError:  # the loop is closed
                return False
            return True

        self._request(hand)
        return await future

    def _request(self, hand: Callable[[_Worker | Exception], bool]) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError("a WorkerPool cannot be used after fork()")
        if not self._spawner.is_alive():
            self.start()
        with self._lock:
            if self._closed:
                raise RuntimeError("the SQL worker pool is closed")
            if self._idle:
                worker = self._idle.pop()
                self._busy.add(worker)
            else:
                self._waiters.append(hand)
                self._wake.notify_all()
                return
        hand(worker)

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if self._closed:
                self._doomed.append(worker)
                return
            while self._waiters:
                hand = self._waiters.popleft()
                self._busy.add(worker)
                if hand(worker):
                    return
                self._busy.discard(worker)
            worker.idle_since = time.monotonic()
            self._idle.append(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._busy.discard(worker)
            self._doomed.append(worker)
            self._wake.notify_all()

    # ------------------------------------------------------- the spawner

    def _maintain(self) -> None:
        """Keep the base size, start workers for waiters, reap and retire."""
        while True:
            try:
                if not self._maintain_once():
                    return
            except Exception:  # the spawner must outlive any one failure
                logger.exception("SQL worker spawner failed; retrying")
                time.sleep(1.0)

    def _maintain_once(self) -> bool:
        """One round of upkeep; False once the pool is closed."""
        with self._lock:
            while not self._closed and not self._needs_work():
                self._wake.wait(timeout=IDLE_RETIRE_S / 2)
                self._retire_idle()
            doomed, self._doomed = self._doomed, []
            if self._closed:
                wanted = 0
            else:
                running = len(self._idle) + len(self._busy) + self._starting
                wanted = max(
                    0,
                    self.settings.workers - running,
                    min(len(self._waiters) - self._starting, self._ceiling - running),
                )
                self._starting += wanted
        for worker in doomed:
            worker.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                worker.proc.wait(timeout=5)
        for _ in range(wanted):
            self._add(self._spawn())
        return not self._closed

    def _add(self, worker: _Worker | None) -> None:
        """Put a freshly started worker to use, or fail a waiter if it failed."""
        with self._lock:
            self._starting -= 1
            if worker is None:
                if self._waiters:
                    failed = self._waiters.popleft()
                    failed(WorkerError("a SQL worker could not be started"))
                return
            self._busy.add(worker)
            self._wake.notify_all()
        self._release(worker)

    def _needs_work(self) -> bool:
        running = len(self._idle) + len(self._busy) + self._starting
        return bool(
            self._doomed
            or running < self.settings.workers
            or (len(self._waiters) > self._starting and running < self._ceiling)
        )

    def _retire_idle(self) -> None:
        now = time.monotonic()
        extra = len(self._idle) + len(self._busy) - self.settings.workers
        for worker in list(self._idle):
            if extra <= 0:
                break
            if now - worker.idle_since > IDLE_RETIRE_S:
                self._idle.remove(worker)
                worker.kill()
                self._doomed.append(worker)
                extra -= 1

    def _spawn(self) -> _Worker | None:
        parent, child = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER_COMMAND,
                    str(child.fileno()),
                    str(self.settings.memory_mb),
                    str(WORKER_NICE),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            logger.exception("could not start a SQL worker")
            parent.close()
            return None
        finally:
            child.close()
        worker = _Worker(proc, parent)
        try:
            hello = worker.receive(time.monotonic() + START_TIMEOUT_S)
        except Exception:
            logger.exception("a SQL worker did not start")
            worker.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            return None
        if not isinstance(hello, Ready):
            worker.kill()
            return None
        self._count("started")
        return worker


_shared: WorkerPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> WorkerPool:
    """The process's default pool (default settings), started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared._pid != os.getpid():
            _shared = WorkerPool()
            atexit.register(_shared.close)
        return _shared
