"""Time SQLEnv's engine in-process, under whichever interpreter runs this file.

Run as a file, not imported from the package, so that another checkout's
interpreter can time its own code: it needs only what every version of SQLEnv
has (``SQLEnvironment(data_dir)``, ``reset``, ``step(SQLAction)``, ``close``)
and the standard library. ``sql_env.benchmarks.engine`` writes the plans,
starts this file with each interpreter (``python -P``, so nothing next to it
is importable) and summarises the raw timings it writes.

    python -P benchmarks/engine_timer.py PLANS.json TIMINGS.json

Each QUERY step is timed next to the same SQL through raw ``sqlite3``
``execute`` + ``fetchall``, interleaved query by query so both see the same
machine load, on a connection opened with the sandbox's flags and no statement
cache (an episode never sends a statement twice).
"""

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

ACTIONS = ("DESCRIBE", "SAMPLE", "QUERY", "ANSWER")


def database_file(data_dir: Path, db_id: str) -> Path:
    """The database file of ``db_id``, whatever the data layout's version."""
    for path in data_dir.glob(f"**/{db_id}/{db_id}.sqlite"):
        return path
    raise FileNotFoundError(f"no {db_id}.sqlite under {data_dir}")


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Play the plans ``repeats`` times after a warm-up pass; time resets.

    Returns:
        Seconds per operation (``times`` by action, ``RESET``), the raw and
        engine QUERY times side by side, reset times, error observations.
    """
    from sql_env.models import SQLAction
    from sql_env.server.sql_environment import SQLEnvironment

    data_dir = Path(spec["data_dir"])
    plans = spec["plans"]
    env = SQLEnvironment(data_dir)
    raw_conns: dict[str, sqlite3.Connection] = {}

    def raw_query(plan: dict[str, Any]) -> float:
        conn = raw_conns.get(plan["db_id"])
        if conn is None:
            uri = database_file(data_dir, plan["db_id"]).resolve().as_uri()
            conn = sqlite3.connect(
                uri + "?mode=ro&immutable=1", uri=True, cached_statements=0
            )
            raw_conns[plan["db_id"]] = conn
        started = time.perf_counter()
        conn.execute(plan["gold_sql"]).fetchall()
        return time.perf_counter() - started

    def play(plan: dict[str, Any], times: dict[str, list[float]]) -> int:
        errors = 0
        started = time.perf_counter()
        env.reset(question_id=plan["question_id"])
        times["RESET"].append(time.perf_counter() - started)
        for action_type, argument in plan["actions"]:
            action = SQLAction(action_type=action_type, argument=argument)
            started = time.perf_counter()
            obs = env.step(action)
            times[action_type].append(time.perf_counter() - started)
            errors += bool(obs.error)
        return errors

    warm: dict[str, list[float]] = {k: [] for k in ("RESET", *ACTIONS)}
    for plan in plans:
        play(plan, warm)
        raw_query(plan)
    times: dict[str, list[float]] = {k: [] for k in ("RESET", *ACTIONS)}
    raw: list[float] = []
    obs_errors = 0
    for _ in range(spec["repeats"]):
        for plan in plans:
            raw.append(raw_query(plan))
            obs_errors += play(plan, times)
    for conn in raw_conns.values():
        conn.close()
    resets = []
    for i in range(spec["resets"]):
        started = time.perf_counter()
        env.reset(seed=spec["seed"] + i, split=spec["split"])
        resets.append(time.perf_counter() - started)
    env.close()
    return {
        "times": times,
        "raw_query": raw,
        "engine_query": times["QUERY"],
        "resets": resets,
        "obs_errors": obs_errors,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
    }


def main(argv: list[str]) -> None:
    spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text())
    Path(out_path).write_text(json.dumps(measure(spec)))


if __name__ == "__main__":
    main(sys.argv[1:])
