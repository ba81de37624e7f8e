"""A SQL worker: the process where agent input meets a database or a gold result.

The server never runs agent SQL or scores an answer in its own interpreter.
``WorkerPool`` starts workers as ``python -m sql_env.server.sql_worker FD
MEMORY_MB NICE``; each reads one framed job at a time from its socket, runs it
and writes one framed reply. A job that overruns its deadline is not waited
for: the server kills the worker and starts another, so no statement can hold a
core or a session past its deadline, whatever SQLite can or cannot interrupt.

Each worker caps its address space (``RLIMIT_AS``) and SQLite's heap, so a
query that wants too much memory fails with a clear error instead of taking the
host down, and lowers its CPU priority, so the server's event loop always runs
first. It keeps a few open databases and prepared gold results between jobs.
"""

import os
import resource
import socket
import sqlite3
import sys
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sql_env.server import formatting, rewards
from sql_env.server.errors import ResourceLimitError, SQLEnvError
from sql_env.server.execution_match import (
    bird_execution_match,
    spider_execution_match,
)
from sql_env.server.question_bank import GoldRecord, read_gold
from sql_env.server.sandbox import MAX_RESULT_ROWS, Sandbox, jsonable
from sql_env.server.verifier import Gold, Verdict, check_answer, prepare_gold
from sql_env.server.worker_protocol import (
    CheckAnswer,
    CheckSQL,
    GoldRef,
    Job,
    QueryOutcome,
    Ready,
    RunQuery,
    WorkerFailure,
    encode,
    read_frame,
)

OPEN_DATABASES = 16  # sandboxes kept open per worker, least recently used first out
CACHED_GOLDS = 64  # prepared gold results kept per worker
HEAP_SHARE = 0.5  # SQLite's hard heap limit, as a share of the worker's memory cap


class Worker:
    """The state one worker keeps between jobs: open sandboxes, prepared golds."""

    def __init__(self) -> None:
        self._sandboxes: OrderedDict[str, Sandbox] = OrderedDict()
        self._golds: OrderedDict[GoldRef, Gold] = OrderedDict()
        self._records: OrderedDict[GoldRef, GoldRecord] = OrderedDict()

    def run(self, job: Job) -> QueryOutcome | Verdict:
        match job:
            case RunQuery():
                return self._query(job)
            case CheckAnswer():
                return check_answer(job.text, self._gold(job.gold))
            case CheckSQL():
                return self._check_sql(job)
        raise TypeError(f"unknown job {type(job).__name__}")

    def _check_sql(self, job: CheckSQL) -> Verdict:
        """The official execution match; a failing statement scores 0, saying why."""
        record = self._record(job.gold)
        try:
            # Fetch past the gold's size by the same cap as any QUERY, so the
            # reading ("ran: N rows") says nothing about the gold.
            result = self._sandbox(job.db_path).execute(
                job.sql,
                timeout_s=job.timeout_s,
                max_rows=max(len(record.rows) + 1, MAX_RESULT_ROWS),
            )
        except SQLEnvError as exc:
            return Verdict(False, f"the SQL failed: {exc}")
        rows = [tuple(jsonable(v) for v in row) for row in result.rows]
        width = len(result.columns)
        reading = f"ran: {len(rows):,}{'+' if result.more_rows else ''} rows x {width}"
        if result.more_rows:
            return Verdict(False, reading + " columns")
        if job.rule == "bird":
            correct = bird_execution_match(rows, record.rows)
        else:
            correct = spider_execution_match(rows, record.rows, record.order_matters)
        return Verdict(correct, reading + " columns")

    def _query(self, job: RunQuery) -> QueryOutcome:
        result = self._sandbox(job.db_path).execute(job.sql, timeout_s=job.timeout_s)
        view = formatting.table_view(
            result.columns,
            result.rows,
            row_count=job.row_count,
            more_rows=result.more_rows,
        )
        potential = None
        if job.score is not None and result.reads_table:
            potential = rewards.closeness(result.rows, self._gold(job.score))
        return QueryOutcome(view, result.reads_table, potential)

    def _sandbox(self, db_path: str) -> Sandbox:
        sandbox = self._sandboxes.pop(db_path, None) or Sandbox(Path(db_path))
        self._sandboxes[db_path] = sandbox
        if len(self._sandboxes) > OPEN_DATABASES:
            _, oldest = self._sandboxes.popitem(last=False)
            oldest.close()
        return sandbox

    def _gold(self, ref: GoldRef) -> Gold:
        gold = self._golds.pop(ref, None)
        if gold is None:
            record = self._record(ref)
            gold = prepare_gold(record.rows, record.order_matters)
        self._golds[ref] = gold
        if len(self._golds) > CACHED_GOLDS:
            self._golds.popitem(last=False)
        return gold

    def _record(self, ref: GoldRef) -> GoldRecord:
        record = self._records.pop(ref, None) or read_gold(
            Path(ref.bank), ref.question_id
        )
        self._records[ref] = record
        if len(self._records) > CACHED_GOLDS:
            self._records.popitem(last=False)
        return record


def serve(sock: socket.socket) -> None:
    """Answer jobs until the server closes the socket."""
    worker = Worker()
    sock.sendall(encode(Ready(os.getpid())))
    while True:
        try:
            job = read_frame(sock)
        except (EOFError, OSError):  # the server closed the socket or is gone
            return
        try:
            reply: Any = worker.run(job)
        except SQLEnvError as exc:
            reply = exc
        except MemoryError:
            reply = ResourceLimitError(
                "The query needed more memory than the sandbox allows; select "
                "fewer rows or columns."
            )
        except Exception:  # a bug: reported to the server with its trace
            reply = WorkerFailure(traceback.format_exc())
        try:
            sock.sendall(encode(reply))
        except OSError:
            return


def limit_resources(memory_mb: int, nice: int) -> None:
    """Cap this process's memory and SQLite's heap, and yield the CPU to the server."""
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn = sqlite3.connect(":memory:")
    conn.execute(f"PRAGMA hard_heap_limit = {int(limit * HEAP_SHARE)}")
    conn.close()
    os.nice(nice)


def main(argv: list[str] | None = None) -> None:
    fd, memory_mb, nice = (int(a) for a in (argv or sys.argv[1:]))
    limit_resources(memory_mb, nice)
    with socket.socket(fileno=fd) as sock:
        serve(sock)


if __name__ == "__main__":
    main()
