"""The SQL worker pool under a seeded storm: every job is answered, nothing leaks.

Real worker processes run real statements on a small SQLite file. Tenants are
threads calling ``run`` and asyncio tasks calling ``run_async``; some async jobs
are cancelled at random moments, by a timer or by a ``TaskGroup`` whose other
job failed. Each job is cheap, slow but finishing, a runaway that only its
deadline stops, or bad SQL; the pool's sizes are small and drawn from the seed.

A job's time limit is a failure bound, never a wait: the time every job of the
storm would take one after another, plus a worker start for each job that may
lose its worker. A pool that loses a worker or a waiter exceeds it; a fair pool
never comes close.
"""

import asyncio
import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest

from sql_env.server.errors import QueryError, QueryTimeoutError
from sql_env.server.worker_pool import KILL_GRACE_S, WorkerPool
from sql_env.server.worker_protocol import QueryOutcome, RunQuery
from sql_env.server.worker_settings import PoolSettings
from tests.test_worker_pool import RUNAWAY, running, wait_until

SEEDS = [0, 1, 2, 3, 4, 5]
STEPS_PER_TENANT = 6
# Starting a worker is a fork, an exec and a few imports; on a loaded machine it
# can take far longer than usual, and this is only a failure bound.
SPAWN_ALLOWANCE_S = 10.0
ROWS = 100


@dataclass(frozen=True)
class Draw:
    """A job of the storm: its statement, deadline and the answer it must get."""

    kind: str
    query: RunQuery
    deadline: float
    expects: Callable[[Any], bool]


def rows_are(rows: tuple) -> Callable[[Any], bool]:
    return lambda out: isinstance(out, QueryOutcome) and out.view.rows == rows


def cheap(rng: random.Random, db: str) -> Draw:
    query = RunQuery(db, "SELECT count(*) FROM t", 2.0)
    return Draw("cheap", query, 2.0, rows_are(((str(ROWS),),)))


def slow(rng: random.Random, db: str) -> Draw:
    # Long enough to hold a worker past the pool's "slow" mark, short enough
    # to finish far inside its deadline on a loaded machine.
    n = rng.randrange(100_000, 400_000)
    sql = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        f"WHERE x < {n}) SELECT count(*) FROM c"
    )
    return Draw("slow", RunQuery(db, sql, 10.0), 10.0, rows_are(((str(n),),)))


def runaway(rng: random.Random, db: str) -> Draw:
    deadline = rng.uniform(0.2, 0.8)
    # SQLite's own interrupt at the deadline, or none in reach (killed).
    query = RunQuery(db, RUNAWAY, rng.choice([deadline, 30.0]))
    return Draw(
        "runaway", query, deadline, lambda out: isinstance(out, QueryTimeoutError)
    )


def bad(rng: random.Random, db: str) -> Draw:
    return Draw(
        "bad",
        RunQuery(db, "SELECT nope FROM t", 2.0),
        2.0,
        lambda out: isinstance(out, QueryError) and "no such column" in str(out),
    )


KINDS = {"cheap": cheap, "slow": slow, "runaway": runaway, "bad": bad}
# Each tenant draws a profile: heavy ones become heavy (more than ``HEAVY_S``
# of recent worker time), which brings in the reserved idle worker.
PROFILES = {
    "light": {"cheap": 6, "slow": 1, "runaway": 0, "bad": 2},
    "mixed": {"cheap": 4, "slow": 2, "runaway": 2, "bad": 2},
    "heavy": {"cheap": 2, "slow": 3, "runaway": 4, "bad": 1},
}


@dataclass
class Record:
    """One job of the storm and what became of it."""

    tenant: str
    job: Draw
    in_async: bool
    started: float = 0.0
    ended: float | None = None
    outcome: Any = None
    cancelled: bool = False

    @property
    def elapsed(self) -> float:
        assert self.ended is not None
        return self.ended - self.started


@dataclass
class Storm:
    """The seeded plan: the pool's sizes and each tenant's steps."""

    settings: PoolSettings
    threads: dict[str, list[Record]]
    tasks: dict[str, list[list[Record]]]  # a step of several jobs is a TaskGroup
    cancel_after: dict[int, float] = field(default_factory=dict)  # by id(record)

    @property
    def records(self) -> list[Record]:
        flat = [r for steps in self.threads.values() for r in steps]
        return flat + [r for steps in self.tasks.values() for g in steps for r in g]

    def bound_s(self) -> float:
        """Every job one after another, each that may lose its worker on a new one."""
        records = self.records
        serial = sum(r.job.deadline + KILL_GRACE_S for r in records)
        losses = [r for r in records if r.in_async or r.job.kind == "runaway"]
        return serial + SPAWN_ALLOWANCE_S * (len(losses) + 1)


def plan(seed: int, db: str) -> Storm:
    rng = random.Random(seed)
    profiles: dict[str, dict[str, int]] = {}

    def record(tenant: str, in_async: bool, kind: str | None = None) -> Record:
        if tenant not in profiles:
            profiles[tenant] = PROFILES[rng.choice(list(PROFILES))]
        weights = profiles[tenant]
        kind = kind or rng.choices(list(weights), list(weights.values()))[0]
        return Record(tenant, KINDS[kind](rng, db), in_async)

    workers = rng.randint(1, 2)
    settings = PoolSettings(workers=workers, max_workers=rng.randint(1, 4))
    threads = {
        f"thread-{i}": [record(f"thread-{i}", False) for _ in range(STEPS_PER_TENANT)]
        for i in range(rng.randint(1, 3))
    }
    storm = Storm(settings, threads, {})
    for i in range(rng.randint(1, 2)):
        tenant = f"task-{i}"
        steps: list[list[Record]] = []
        for _ in range(STEPS_PER_TENANT):
            draw = rng.random()
            if draw < 0.3:  # a failing job cancels its TaskGroup's others
                steps.append(
                    [record(tenant, True, "bad")]
                    + [record(tenant, True) for _ in range(rng.randint(1, 2))]
                )
            else:
                step = record(tenant, True)
                if draw < 0.6:
                    storm.cancel_after[id(step)] = rng.uniform(0.0, 0.4)
                steps.append([step])
        storm.tasks[tenant] = steps
    return storm


# ----------------------------------------------------------------- running


def run_thread_tenant(pool: WorkerPool, steps: list[Record]) -> None:
    for record in steps:
        record.started = time.monotonic()
        try:
            record.outcome = pool.run(
                record.job.query, record.job.deadline, record.tenant
            )
        except Exception as exc:  # judged against the job's kind afterwards
            record.outcome = exc
        record.ended = time.monotonic()


async def run_async_job(pool: WorkerPool, record: Record) -> None:
    try:
        record.outcome = await pool.run_async(
            record.job.query, record.job.deadline, record.tenant
        )
    except Exception as exc:
        record.outcome = exc
        raise
    finally:
        record.ended = time.monotonic()


def spawn_async_job(pool: WorkerPool, record: Record, tg: Any = asyncio) -> Any:
    """Start a job's task; a cancelled task's record says so when it ends."""
    record.started = time.monotonic()
    task = tg.create_task(run_async_job(pool, record))

    def settle(task: asyncio.Task) -> None:
        record.cancelled = task.cancelled()
        record.ended = record.ended or time.monotonic()  # cancelled before it ran

    task.add_done_callback(settle)
    return task


async def run_task_tenant(
    pool: WorkerPool, steps: list[list[Record]], cancel_after: dict[int, float]
) -> None:
    for group in steps:
        if len(group) > 1:
            with contextlib.suppress(ExceptionGroup):  # judged afterwards
                async with asyncio.TaskGroup() as tg:
                    for record in group:
                        spawn_async_job(pool, record, tg)
            continue
        (record,) = group
        task = spawn_async_job(pool, record)
        if id(record) in cancel_after:
            await asyncio.sleep(cancel_after[id(record)])
            task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task


def run_tasks(pool: WorkerPool, storm: Storm) -> None:
    async def all_tenants() -> None:
        await asyncio.gather(
            *(
                run_task_tenant(pool, steps, storm.cancel_after)
                for steps in storm.tasks.values()
            )
        )

    asyncio.run(all_tenants())


class Monitor:
    """Samples the pool's size while the storm runs."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.sizes: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.stop.wait(0.02):
            self.sizes.append(self.pool.size)


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def describe(pool: WorkerPool, records: list[Record]) -> str:
    pending = [f"{r.tenant}:{r.job.kind}" for r in records if r.ended is None]
    return f"size={pool.size} busy={pool.busy} stats={pool.stats} pending={pending}"


# ------------------------------------------------------------------- test


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("storm") / "t.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(ROWS)])
    return str(path)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_job_is_answered_and_the_pool_drains(seed: int, db: str) -> None:
    storm = plan(seed, db)
    records = storm.records
    bound_s = storm.bound_s()
    before = children()
    pool = WorkerPool(storm.settings)
    monitor = Monitor(pool)
    try:
        pool.wait_ready()
        monitor.thread.start()
        tenants = [
            threading.Thread(target=run_thread_tenant, args=(pool, s), daemon=True)
            for s in storm.threads.values()
        ]
        tenants.append(
            threading.Thread(target=run_tasks, args=(pool, storm), daemon=True)
        )
        for tenant in tenants:
            tenant.start()
        limit = time.monotonic() + bound_s
        for tenant in tenants:
            tenant.join(max(0.0, limit - time.monotonic()))
        assert not any(t.is_alive() for t in tenants), describe(pool, records)

        for record in records:
            name = f"{record.tenant}:{record.job.kind}"
            assert record.elapsed <= bound_s, name
            if record.cancelled:
                assert record.in_async, name
            else:
                assert record.job.expects(record.outcome), f"{name}: {record.outcome!r}"

        # Drained: nothing held, the base workers back, never past the ceiling.
        wait_until(lambda: pool.busy == 0, SPAWN_ALLOWANCE_S)
        wait_until(
            lambda: pool.size == len(pool.worker_pids()) >= storm.settings.workers,
            SPAWN_ALLOWANCE_S,
        )
        monitor.stop.set()
        monitor.thread.join()
        ceiling = storm.settings.ceiling
        assert max(monitor.sizes, default=0) <= ceiling
        assert storm.settings.workers <= pool.size <= ceiling

        # Every answered job was counted once: a reply or a kill.
        stats = pool.stats
        done = [r for r in records if not r.cancelled]
        cancelled = len(records) - len(done)
        runaways = [r for r in done if r.job.kind == "runaway"]
        # SQLite's own deadline falls after the kill: only the kill stops them.
        must_kill = [
            r for r in runaways if r.job.query.timeout_s > r.job.deadline + KILL_GRACE_S
        ]
        assert stats.failures == 0 and stats.died == 0, stats
        assert stats.jobs + stats.killed == len(done), stats
        assert len(must_kill) <= stats.killed <= len(runaways), stats
        # Workers gone were killed at a deadline or with a cancelled job.
        gone = stats.started - pool.size
        assert stats.killed <= gone <= stats.killed + cancelled, stats

        # Every tenant, the heaviest too, is still served.
        for tenant in [*storm.threads, *storm.tasks]:
            check = Record(tenant, cheap(random.Random(), db), in_async=False)
            worker = threading.Thread(
                target=run_thread_tenant, args=(pool, [check]), daemon=True
            )
            worker.start()
            worker.join(SPAWN_ALLOWANCE_S)
            assert check.ended is not None, describe(pool, [check])
            assert check.job.expects(check.outcome), check.outcome
    finally:
        monitor.stop.set()
        pool.close()
    assert not [pid for pid in children() - before if running(pid)]
