"""Run each gold query once, in the sandbox the agent uses, and judge its result.

The gold result is what every answer is scored against, so it is computed by the
same read-only ``Sandbox`` that runs the agent's SQL (a gold that only runs outside
it could never be matched), with a longer deadline and a larger row cap. A
question whose gold fails, runs too long, returns too much, or returns nothing
useful stays in the bank but is excluded from sampling, with the reason.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sql_env.ingest.parallel import run_jobs
from sql_env.server.errors import (
    QueryTimeoutError,
    ResourceLimitError,
    SQLEnvError,
)
from sql_env.server.sandbox import Sandbox, jsonable

GOLD_TIMEOUT_S = 30.0
GOLD_MAX_ROWS = 100_000
# Questions per worker job: small enough to spread one big database's questions
# over every worker, large enough that a job outlasts its own start-up.
JOB_SIZE = 64

# Exclusion reasons; the bank stores "<reason>" or "<reason>: <detail>".
MISSING_DATABASE = "missing_database"
GOLD_ERROR = "gold_error"
GOLD_TIMEOUT = "gold_timeout"
GOLD_TOO_LARGE = "gold_too_large"
GOLD_EMPTY = "gold_empty"
GOLD_ALL_NULL = "gold_all_null"


@dataclass(frozen=True, slots=True)
class GoldResult:
    """What one gold query returned, or why its question cannot be played."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    excluded: str | None = None


def run_gold(sandbox: Sandbox, sql: str) -> GoldResult:
    """Run one gold query and decide whether its question may be sampled."""
    try:
        result = sandbox.execute(sql)
    except QueryTimeoutError as exc:
        return GoldResult(excluded=f"{GOLD_TIMEOUT}: {exc}")
    except ResourceLimitError as exc:
        return GoldResult(excluded=f"{GOLD_TOO_LARGE}: {exc}")
    except SQLEnvError as exc:
        return GoldResult(excluded=f"{GOLD_ERROR}: {exc}")
    rows = tuple(tuple(jsonable(v) for v in row) for row in result.rows)
    excluded = None
    if result.more_rows:
        excluded, rows = f"{GOLD_TOO_LARGE}: over {GOLD_MAX_ROWS:,} rows", ()
    elif not rows:
        excluded = GOLD_EMPTY
    elif all(v is None for row in rows for v in row):
        excluded = GOLD_ALL_NULL
    return GoldResult(result.columns, rows, excluded)


def run_golds(
    golds: Sequence[tuple[Path | None, str]], *, workers: int, desc: str
) -> list[GoldResult]:
    """Run every gold query on its database, in order of ``golds``.

    Args:
        golds: ``(database, sql)`` pairs; a database of None is missing.
        workers: Threads to run them on.
        desc: The progress bar's label.
    """
    results: list[GoldResult] = [GoldResult(excluded=MISSING_DATABASE)] * len(golds)
    by_db: dict[Path, list[int]] = {}
    for i, (db_path, _) in enumerate(golds):
        if db_path is not None:
            by_db.setdefault(db_path, []).append(i)
    jobs = [
        (db_path, [(i, golds[i][1]) for i in indices[start : start + JOB_SIZE]])
        for db_path, indices in by_db.items()
        for start in range(0, len(indices), JOB_SIZE)
    ]
    done = run_jobs(
        _run_job,
        jobs,
        workers=workers,
        desc=desc,
        unit="q",
        sizes=[len(batch) for _, batch in jobs],
    )
    for batch in done:
        for i, result in batch:
            results[i] = result
    return results


def _run_job(
    job: tuple[Path, list[tuple[int, str]]],
) -> list[tuple[int, GoldResult]]:
    db_path, batch = job
    with Sandbox(db_path, timeout_s=GOLD_TIMEOUT_S, max_rows=GOLD_MAX_ROWS) as sandbox:
        return [(i, run_gold(sandbox, sql)) for i, sql in batch]
