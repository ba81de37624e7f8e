"""The SQL worker pool: killed at the deadline, grows only for slow jobs, fair.

Real worker processes run real statements on a small SQLite file; the runaway
statement is an endless recursive CTE that only the deadline stops.
"""

import asyncio
import sqlite3
import threading
import time

import psutil
import pytest

from sql_env.server.errors import QueryError, QueryTimeoutError
from sql_env.server.worker_pool import HEAVY_S, WorkerPool
from sql_env.server.worker_protocol import QueryOutcome, RunQuery
from sql_env.server.worker_settings import PoolSettings

RUNAWAY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c"
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("pool") / "t.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    return str(path)


@pytest.fixture
def pool():
    pool = WorkerPool(PoolSettings(workers=2, max_workers=6))
    pool.wait_ready()
    yield pool
    pool.close()


def job(db: str, sql: str = "SELECT count(*) FROM t", timeout_s: float = 5.0):
    return RunQuery(db, sql, timeout_s)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(condition, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def test_a_job_runs_in_another_process_and_comes_back(pool, db) -> None:
    outcome = pool.run(job(db), 5.0)
    assert isinstance(outcome, QueryOutcome) and outcome.view.rows == (("100",),)
    assert outcome.reads_table
    assert psutil.Process().pid not in pool.worker_pids()


def test_an_agent_error_comes_back_as_itself(pool, db) -> None:
    with pytest.raises(QueryError, match="no such column"):
        pool.run(job(db, "SELECT nope FROM t"), 5.0)
    assert pool.run(job(db), 5.0).view.rows == (("100",),)  # the worker lives on


def test_a_job_past_its_deadline_is_killed_and_its_worker_replaced(pool, db) -> None:
    # SQLite's own interrupt is out of reach here: the job's deadline is long.
    before = set(pool.worker_pids())
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="longer than 0.3 s"):
        pool.run(job(db, RUNAWAY, timeout_s=30.0), 0.3)
    assert time.monotonic() - started < 0.3 + 2.0
    assert pool.stats.killed == 1
    gone = before - set(pool.worker_pids())
    assert len(gone) == 1
    (pid,) = gone
    wait_until(lambda: not running(pid))  # SIGKILL takes effect at once
    assert pool.run(job(db), 5.0).view.rows == (("100",),)


def test_cancelling_an_awaited_job_kills_its_worker(pool, db) -> None:
    before = set(pool.worker_pids())

    async def cancel_it() -> None:
        task = asyncio.ensure_future(pool.run_async(job(db, RUNAWAY, 30.0), 30.0))
        while pool.busy == 0:  # the job is on a worker
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    assert before - set(pool.worker_pids())  # the busy worker is gone
    assert pool.run(job(db), 5.0).view.rows == (("100",),)


def test_fast_traffic_does_not_grow_the_pool(pool, db) -> None:
    def hammer() -> None:
        for _ in range(150):
            pool.run(job(db), 5.0, tenant=threading.get_ident())

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pool.stats.started == 2 and pool.size == 2


def test_slow_jobs_grow_the_pool_and_a_cheap_query_is_not_queued(pool, db) -> None:
    runaway_tenants = [f"runaway-{i}" for i in range(3)]
    stop = threading.Event()

    def run_away(tenant: str) -> None:
        while not stop.is_set():
            with pytest.raises(QueryTimeoutError):
                pool.run(job(db, RUNAWAY, timeout_s=1.0), 1.0, tenant=tenant)

    threads = [threading.Thread(target=run_away, args=(t,)) for t in runaway_tenants]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while pool.size < 4:  # the runaways hold the base workers: it grows
            assert time.monotonic() < deadline, pool.size
            time.sleep(0.05)
        for _ in range(20):
            started = time.monotonic()
            assert pool.run(job(db), 5.0, tenant="cheap").view.rows == (("100",),)
            assert time.monotonic() - started < 1.0  # never behind a runaway
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert pool.size <= pool.settings.ceiling


def test_heavy_tenants_leave_the_last_idle_worker_to_light_ones(db) -> None:
    # While the pool can still grow, its last idle worker is kept for light
    # tenants: a heavy one waits for a new worker instead.
    pool = WorkerPool(PoolSettings(workers=2, max_workers=3))
    pool.wait_ready()
    try:
        with pytest.raises(QueryTimeoutError):  # makes "heavy" heavy
            pool.run(job(db, RUNAWAY, timeout_s=30.0), HEAVY_S + 0.2, tenant="heavy")
        wait_until(lambda: len(pool.worker_pids()) == 2 and pool.busy == 0)

        def hold() -> None:
            with pytest.raises(QueryTimeoutError):
                pool.run(job(db, RUNAWAY, 30.0), 3.0, tenant="other")

        holder = threading.Thread(target=hold)
        holder.start()
        wait_until(lambda: pool.busy == 1)  # one worker held, one idle
        started_before = pool.stats.started
        assert pool.run(job(db), 5.0, tenant="light").view.rows == (("100",),)
        assert pool.stats.started == started_before  # light took the idle one
        assert pool.run(job(db), 5.0, tenant="heavy").view.rows == (("100",),)
        assert pool.stats.started == started_before + 1  # heavy waited for a third
        holder.join()
    finally:
        pool.close()


def test_a_heavy_tenant_alone_with_one_idle_worker_is_served(db) -> None:
    # One base worker, room to grow, nothing running: the only idle worker is the
    # reserve, so a heavy tenant must get a new one rather than wait forever.
    pool = WorkerPool(PoolSettings(workers=1, max_workers=2))
    pool.wait_ready()
    try:
        with pytest.raises(QueryTimeoutError):  # makes "heavy" heavy
            pool.run(job(db, RUNAWAY, timeout_s=30.0), HEAVY_S + 0.2, tenant="heavy")
        wait_until(lambda: pool.size == 1 and pool.busy == 0)
        answered = threading.Event()

        def cheap() -> None:
            assert pool.run(job(db), 5.0, tenant="heavy").view.rows == (("100",),)
            answered.set()

        threading.Thread(target=cheap, daemon=True).start()
        # A bound on a failure, not a wait for time: the job answers at once.
        assert answered.wait(30.0), "a heavy tenant's job was never served"
    finally:
        pool.close()


def served_within(pool: WorkerPool, db: str, limit_s: float) -> bool:
    """Whether a cheap job is answered within ``limit_s`` (a failure bound)."""
    answered = threading.Event()

    def cheap() -> None:
        if pool.run(job(db), 5.0).view.rows == (("100",),):
            answered.set()

    threading.Thread(target=cheap, daemon=True).start()
    return answered.wait(limit_s)


def test_a_task_cancelled_as_a_worker_reaches_it_gives_the_worker_back(db) -> None:
    # One worker and no room to grow. A TaskGroup's first job holds the worker
    # and fails; releasing it hands the worker to the group's waiting second
    # job just as the group cancels that job for the first one's failure.
    pool = WorkerPool(PoolSettings(workers=1, max_workers=1))
    pool.wait_ready()
    try:

        async def group() -> None:
            with pytest.raises(ExceptionGroup) as failed:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(pool.run_async(job(db, "SELECT nope FROM t"), 5.0))
                    tg.create_task(pool.run_async(job(db), 5.0))
            assert failed.value.subgroup(QueryError) is not None

        asyncio.run(group())
        assert served_within(pool, db, 30.0), "the only worker was never given back"
        assert pool.busy == 0
    finally:
        pool.close()


def test_closing_while_workers_start_leaves_none_running() -> None:
    before = {p.pid for p in psutil.Process().children()}

    def new_workers() -> list[int]:
        now = {p.pid for p in psutil.Process().children()}
        return [pid for pid in now - before if running(pid)]

    pool = WorkerPool(PoolSettings(workers=2, max_workers=2))
    # Their processes exist; they are starting (imports take a while).
    wait_until(lambda: len(new_workers()) == 2)
    pool.close()
    assert new_workers() == []
