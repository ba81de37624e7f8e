"""Killable SQL workers: a pool of processes the server can stop at any deadline.

One job runs on one worker at a time. A job that has not answered by its
deadline is not waited for: its worker is killed (SIGKILL) and replaced, so no
CPU is spent on it afterwards. A worker that dies (out of memory, a crash) is
replaced the same way.

Scheduling keeps one session's slow statements from slowing another's:

- the pool keeps ``workers`` processes (default: the available cores), so SQL
  runs on every core, and grows past that only while a worker has been held
  longer than ``SLOW_JOB_S`` (a runaway statement), never for the brief waits
  of fast traffic, up to what fits in half the memory;
- each job names its *tenant* (the environment it serves); a tenant's recent
  worker time decays with ``USAGE_HALF_LIFE_S``. Waiting jobs are served
  lightest tenant first, and a tenant that has used more than ``HEAVY_S`` may
  not take the last idle worker while the pool can still grow: that one stays
  for the sessions whose queries are cheap, and the heavy tenant gets a new
  worker instead.

Why a pool of our own: pebble, loky and ``ProcessPoolExecutor`` hand each job
through feeder threads and queues (most of a sub-millisecond step), and cannot
await a worker without a thread, grow only for slow jobs, serve the lightest
tenant first or start workers by fork and exec (safe after CUDA is loaded);
docs/benchmarks.md measures the round trips side by side.
"""

import asyncio
import atexit
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

from sql_env.server.errors import (
    QueryTimeoutError,
    ResourceLimitError,
    WorkerError,
)
from sql_env.server.worker_channel import WorkerChannel
from sql_env.server.worker_protocol import Job, Ready, WorkerFailure
from sql_env.server.worker_settings import PoolSettings, PoolStats

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
IDLE_RETIRE_S = 30.0  # an extra worker idle this long is stopped
# A worker gets this long past its job's deadline (SQLite's own interrupt) before
# it is killed.
KILL_GRACE_S = 0.5
SLOW_JOB_S = 0.05  # a worker held longer than this lets the pool grow
HEAVY_S = 1.0  # recent worker-seconds above which a tenant is heavy
USAGE_HALF_LIFE_S = 10.0
RESERVED_IDLE = 1  # idle workers kept from heavy tenants while the pool can grow

Tenant = Hashable


@dataclass(eq=False)
class _Waiter:
    """A job waiting for a worker; ``deliver`` hands it one (or an error)."""

    tenant: Tenant
    heavy: bool
    usage: float
    seq: int
    deliver: Callable[[WorkerChannel | Exception], bool]


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
        self._idle: list[WorkerChannel] = []
        self._busy: dict[WorkerChannel, tuple[Tenant, float]] = {}
        self._starting = 0
        self._waiters: list[_Waiter] = []
        self._seq = 0
        self._usage: dict[Tenant, tuple[float, float]] = {}
        self._doomed: list[WorkerChannel] = []
        self._closed = False
        self._pid = os.getpid()
        self._spawner = threading.Thread(
            target=self._maintain, name="sql-worker-spawner", daemon=True
        )
        if start:
            self.start()

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

    @property
    def busy(self) -> int:
        """Workers running a job now."""
        with self._lock:
            return len(self._busy)

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in (*self._idle, *self._busy)]

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until the base number of workers has started (warm-up)."""
        if not self._spawner.is_alive():
            self.start()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self._idle) + len(self._busy) < self.settings.workers:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise RuntimeError("SQL workers did not start in time")
                self._wake.wait(remaining)

    def run(self, job: Job, timeout_s: float, tenant: Tenant = None) -> Any:
        """Run a job and return its result, blocking this thread.

        Args:
            job: What to run.
            timeout_s: The job's deadline; its worker is killed ``KILL_GRACE_S``
                after it.
            tenant: Who the job is for (an environment): the pool serves the
                lightest tenant first.

        Raises:
            SQLEnvError: The job's own error (bad SQL, timeout, memory, ...).
            WorkerError: The job failed on a bug in the worker.
        """
        worker = self._acquire(tenant)
        with self._holding(worker, tenant, timeout_s):
            reply = worker.call(job, timeout_s + KILL_GRACE_S)
        return self._unwrap(reply)

    async def run_async(self, job: Job, timeout_s: float, tenant: Tenant = None) -> Any:
        """Run a job without blocking the event loop; see ``run``.

        Cancelling the awaiting task kills the worker running the job.
        """
        worker = await self._acquire_async(tenant)
        with self._holding(worker, tenant, timeout_s):
            reply = await worker.call_async(job, timeout_s + KILL_GRACE_S)
        return self._unwrap(reply)

    def close(self) -> None:
        """Stop every worker; jobs still running fail. Safe to call twice.

        Workers still starting are stopped as they come up, and close waits
        for them: once it returns, none of the pool's processes runs.
        """
        with self._lock:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
            waiters, self._waiters = self._waiters, []
            self._wake.notify_all()
        for waiter in waiters:
            waiter.deliver(RuntimeError("the SQL worker pool is closed"))
        for worker in workers:
            worker.kill()
            worker.reap()
        if self._spawner.is_alive():
            self._spawner.join(START_TIMEOUT_S)

    @contextlib.contextmanager
    def _holding(
        self, worker: WorkerChannel, tenant: Tenant, timeout_s: float
    ) -> Iterator[None]:
        """Give the worker back after its job, or kill it if the job went wrong."""
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            self._discard(worker, tenant, started)
            raise self._failure(exc, timeout_s) from None
        except BaseException:  # cancelled or interrupted: its reply is unwanted
            self._discard(worker, tenant, started)
            raise
        self._release(worker, tenant, started)

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

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _acquire(self, tenant: Tenant) -> WorkerChannel:
        got: list[WorkerChannel | Exception] = []
        ready = threading.Event()
        gone = False

        def deliver(worker: WorkerChannel | Exception) -> bool:
            if gone:
                return False
            got.append(worker)
            ready.set()
            return True

        worker = self._take_or_wait(tenant, deliver)
        if worker is not None:
            return worker
        try:
            ready.wait()
        except BaseException:  # interrupted while waiting: give back what came
            with self._lock:
                gone = True
            if got and not isinstance(got[0], Exception):
                self._release(got[0], tenant, time.monotonic())
            raise
        if isinstance(got[0], Exception):
            raise got[0]
        return got[0]

    async def _acquire_async(self, tenant: Tenant) -> WorkerChannel:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WorkerChannel] = loop.create_future()

        def settle(worker: WorkerChannel | Exception) -> None:
            if isinstance(worker, Exception):
                if not future.done():
                    future.set_exception(worker)
            elif future.cancelled():
                self._release(worker, tenant, time.monotonic())
            else:
                future.set_result(worker)

        def deliver(worker: WorkerChannel | Exception) -> bool:
            if future.done():
                return False
            try:
                loop.call_soon_threadsafe(settle, worker)
            except RuntimeError:  # the loop is closed
                return False
            return True

        worker = self._take_or_wait(tenant, deliver)
        if worker is not None:
            return worker
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelled after its worker came but before this task resumed (a
            # TaskGroup whose other job failed): the worker is still this
            # task's, and nobody else would ever give it back.
            if future.done() and not future.cancelled() and future.exception() is None:
                self._release(future.result(), tenant, time.monotonic())
            raise

    def _take_or_wait(
        self, tenant: Tenant, deliver: Callable[[WorkerChannel | Exception], bool]
    ) -> WorkerChannel | None:
        """An idle worker this tenant may take now, or None after queueing it."""
        if os.getpid() != self._pid:
            raise RuntimeError("a WorkerPool cannot be used after fork()")
        if not self._spawner.is_alive():
            self.start()
        with self._lock:
            if self._closed:
                raise RuntimeError("the SQL worker pool is closed")
            now = time.monotonic()
            usage = self._usage_of(tenant, now)
            heavy = usage > HEAVY_S
            if self._idle and not self._waiters and self._may_take(heavy):
                worker = self._idle.pop()
                self._busy[worker] = (tenant, now)
                return worker
            self._seq += 1
            self._waiters.append(_Waiter(tenant, heavy, usage, self._seq, deliver))
            self._dispatch()
            self._wake.notify_all()
            return None

    def _may_take(self, heavy: bool) -> bool:
        """Whether a tenant may take an idle worker (the lock is held)."""
        running = len(self._idle) + len(self._busy) + self._starting
        return not heavy or len(self._idle) > RESERVED_IDLE or running >= self._ceiling

    def _dispatch(self, *, reserve: bool = True) -> None:
        """Hand idle workers to waiters, lightest tenant first (the lock is held).

        Without ``reserve``, heavy tenants may take the last idle worker too.
        """
        self._waiters.sort(key=lambda w: (w.heavy, w.usage, w.seq))
        index = 0
        while self._idle and index < len(self._waiters):
            waiter = self._waiters[index]
            if reserve and not self._may_take(waiter.heavy):
                index += 1
                continue
            del self._waiters[index]
            worker = self._idle.pop()
            self._busy[worker] = (waiter.tenant, time.monotonic())
            if not waiter.deliver(worker):  # it gave up waiting
                del self._busy[worker]
                self._idle.append(worker)

    def _usage_of(self, tenant: Tenant, now: float) -> float:
        value, at = self._usage.get(tenant, (0.0, now))
        return value * math.exp2(-(now - at) / USAGE_HALF_LIFE_S)

    def _charge(self, tenant: Tenant, started: float, now: float) -> None:
        usage = self._usage_of(tenant, now) + (now - started)
        if usage < 1e-3:
            self._usage.pop(tenant, None)
        else:
            self._usage[tenant] = (usage, now)

    def _release(self, worker: WorkerChannel, tenant: Tenant, started: float) -> None:
        with self._lock:
            now = time.monotonic()
            self._busy.pop(worker, None)
            self._charge(tenant, started, now)
            if self._closed:
                self._doomed.append(worker)
                return
            worker.idle_since = now
            self._idle.append(worker)
            self._dispatch()

    def _discard(self, worker: WorkerChannel, tenant: Tenant, started: float) -> None:
        worker.kill()
        with self._lock:
            self._busy.pop(worker, None)
            self._charge(tenant, started, time.monotonic())
            self._doomed.append(worker)
            self._wake.notify_all()

    def _maintain(self) -> None:
        """Keep the base size, grow for slow jobs, reap and retire."""
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
            while not self._closed:
                wanted, wait_s = self._wanted()
                if wanted or self._doomed:
                    break
                self._wake.wait(timeout=wait_s)
                self._retire_idle()
            doomed, self._doomed = self._doomed, []
            if self._closed:
                wanted = 0
            self._starting += wanted
        for worker in doomed:
            worker.kill()
            worker.reap()
        self._spawn(wanted)
        return not self._closed

    def _wanted(self) -> tuple[int, float]:
        """Workers to start now, and how long to sleep if none (the lock is held)."""
        now = time.monotonic()
        running = len(self._idle) + len(self._busy) + self._starting
        wanted = self.settings.workers - running
        held = [now - started for _, started in self._busy.values()]
        slow = any(age > SLOW_JOB_S for age in held)
        # Jobs waiting while a worker is idle are heavy tenants kept from the
        # reserve: only a new worker serves them.
        blocked = bool(self._waiters and self._idle)
        if slow or blocked:
            # Enough idle workers for everyone waiting, plus the reserve.
            spare = len(self._idle) + self._starting
            wanted = max(wanted, len(self._waiters) + RESERVED_IDLE - spare)
        wanted = max(0, min(wanted, self._ceiling - running))
        wait_s = IDLE_RETIRE_S / 2
        if held and not slow and self._waiters:
            wait_s = SLOW_JOB_S - max(held) + 1e-3  # when that job turns slow
        return wanted, max(wait_s, 1e-3)

    def _retire_idle(self) -> None:
        now = time.monotonic()
        extra = len(self._idle) + len(self._busy) - self.settings.workers
        for worker in list(self._idle):
            if extra <= 0:
                break
            if now - worker.idle_since > IDLE_RETIRE_S:
                self._idle.remove(worker)
                self._doomed.append(worker)
                extra -= 1

    def _spawn(self, count: int) -> None:
        """Start ``count`` workers side by side, then put each to use."""
        started: list[WorkerChannel] = []
        for _ in range(count):
            try:
                started.append(
                    WorkerChannel.spawn(self.settings.memory_mb, self.settings.nice)
                )
            except OSError:
                logger.exception("could not start a SQL worker")
                self._add(None)
        deadline = time.monotonic() + START_TIMEOUT_S
        for worker in started:
            try:
                hello = worker.receive(deadline)
            except Exception:
                logger.exception("a SQL worker did not start")
                hello = None
            if not isinstance(hello, Ready):
                worker.kill()
                worker.reap()
                self._add(None)
                continue
            self._count("started")
            self._add(worker)

    def _add(self, worker: WorkerChannel | None) -> None:
        """Put a freshly started worker to use, or fail a waiter if it failed."""
        with self._lock:
            self._starting -= 1
            if worker is None:
                if self._waiters and not (self._idle or self._busy):
                    failed = self._waiters.pop(0)
                    failed.deliver(WorkerError("a SQL worker could not be started"))
                # The pool cannot grow now: the reserve goes to whoever waits.
                self._dispatch(reserve=False)
                return
            if not self._closed:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
                self._dispatch()
                self._wake.notify_all()
                return
        # Started while the pool closed: close() never saw it, nobody else will.
        worker.kill()
        worker.reap()


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
