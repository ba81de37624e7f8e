# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "openenv-sql-env",
#     "psutil>=5.9,<8",
#     "matplotlib>=3.8,<4",
# ]
#
# [tool.uv.sources]
# openenv-sql-env = { path = "..", editable = true }
# ///
"""Benchmark SQLEnv against its limits, in one run on one machine.

Sections (``sql_env.benchmarks``, one module each):

- engine: in-process steps on a seeded mix of dev questions against the same
  SQL through raw ``sqlite3``; reset latency;
- wire: steps/s over WebSocket at several concurrencies, against OpenEnv's echo
  environment served by the same command, with 1 and with 2 SQL workers;
- memory: server memory per open idle session;
- isolation: another session's DESCRIBE, cheap QUERY and ``GET /health`` under
  runaway queries, a reset flood and answers on a 10k-row gold;
- pools: one tiny job's round trip through SQLEnv's worker pool and others.

Given another checkout's interpreter and data (``--before_python``,
``--before_data_dir``), every section measures that code too, in the same run:
its servers and its engine are black boxes started with its interpreter, and
the load always comes from this one. Writes ``benchmark.json``,
``benchmark.md`` and PNG plots to ``--out_dir`` and prints the markdown.

Usage (in the project's virtualenv; or ``uv run --script scripts/benchmark.py``,
whose header takes the project from this checkout and the rest from PyPI):
    python scripts/benchmark.py                                  # every section
    python scripts/benchmark.py --quick --out_dir /tmp/b         # smoke run
    python scripts/benchmark.py --before_python ../old/.venv/bin/python \\
        --before_data_dir ../old/data
    python scripts/benchmark.py --sections wire --concurrency 64
    make bench
"""

import dataclasses
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sql_env.benchmarks import engine, isolation, memory, pools, report, targets, wire
from sql_env.benchmarks.action_mix import answer_text, build_plans, largest_gold
from sql_env.benchmarks.machine import load_average, machine_details
from sql_env.benchmarks.server_process import ECHO_APP, ServerSpec, sqlenv_env
from sql_env.server.question_bank import DEFAULT_DATA_DIR, database_path
from sql_env.training.cli import parse_args as parse_dataclass_args

SECTIONS = ("engine", "wire", "memory", "isolation", "pools")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


@dataclass
class BenchArgs:
    """Benchmark sizes; ``--quick`` shrinks all of them (for tests)."""

    data_dir: str = field(
        default="", metadata={"help": "Built data dir (default: the package's data/)."}
    )
    out_dir: str = field(
        default="outputs/benchmark",
        metadata={"help": "Where benchmark.json, benchmark.md and plots go."},
    )
    sections: str = field(
        default=",".join(SECTIONS),
        metadata={"help": f"Comma-separated subset of {','.join(SECTIONS)}."},
    )
    before_python: str = field(
        default="",
        metadata={"help": "Interpreter of the code to compare with (its venv)."},
    )
    before_data_dir: str = field(
        default="", metadata={"help": "Built data of that code, in its own layout."}
    )
    split: str = field(default="dev", metadata={"help": "Question split of the mix."})
    seed: int = field(default=0, metadata={"help": "Seed of the question sample."})
    questions: int = field(
        default=200, metadata={"help": "Questions in the engine/wire mix."}
    )
    repeats: int = field(default=3, metadata={"help": "Engine passes over the mix."})
    resets: int = field(default=2000, metadata={"help": "Resets timed in-process."})
    concurrency: str = field(
        default="1,16,64", metadata={"help": "Comma-separated wire concurrencies."}
    )
    wire_seconds: float = field(
        default=4.0, metadata={"help": "Seconds per wire window (one server)."}
    )
    wire_rounds: int = field(
        default=3, metadata={"help": "Windows per server and concurrency."}
    )
    memory_sessions: str = field(
        default="64,256", metadata={"help": "Comma-separated open-session counts."}
    )
    isolation_loads: str = field(
        default=",".join(isolation.LOADS),
        metadata={"help": "Comma-separated isolation loads."},
    )
    isolation_seconds: float = field(
        default=12.0, metadata={"help": "Probe seconds per load and server."}
    )
    probe_interval_ms: float = field(
        default=10.0, metadata={"help": "Pace of each probe (one request per ...)."}
    )
    query_timeout_s: str = field(
        default="",
        metadata={"help": "SQLENV_QUERY_TIMEOUT_S of isolation servers (default)."},
    )
    pool_jobs: int = field(default=3000, metadata={"help": "Jobs per pool."})
    quick: bool = field(
        default=False, metadata={"help": "Tiny sizes (for tests); figures meaningless."}
    )

    def apply_quick(self) -> None:
        if self.quick:
            self.questions = min(self.questions, 8)
            self.repeats = 1
            self.resets = min(self.resets, 30)
            self.concurrency = "1,4"
            self.wire_seconds = 0.5
            self.wire_rounds = 1
            self.memory_sessions = "4,8"
            self.isolation_seconds = 0.5
            self.query_timeout_s = self.query_timeout_s or "1"
            self.pool_jobs = 50


def parse_args(argv: list[str] | None = None) -> BenchArgs:
    args = parse_dataclass_args(BenchArgs, argv, (__doc__ or "").split("\n\n")[0])
    args.apply_quick()
    if bool(args.before_python) != bool(args.before_data_dir):
        raise SystemExit("--before_python and --before_data_dir go together")
    return args


def run(args: BenchArgs, argv: list[str]) -> dict[str, Any]:
    data_dir = Path(args.data_dir or DEFAULT_DATA_DIR).resolve()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    before = Path(args.before_data_dir).resolve() if args.before_python else None
    result: dict[str, Any] = {
        "machine": machine_details(),
        "command": shlex.join(["python", "scripts/benchmark.py", *argv]),
        "args": dataclasses.asdict(args),
    }

    def side(name: str, **settings: str) -> ServerSpec:
        if name.startswith(targets.BEFORE):
            assert before is not None
            env = sqlenv_env(before, **settings)
            return ServerSpec(name, env=env, python=args.before_python)
        return ServerSpec(name, env=sqlenv_env(data_dir, **settings))

    befores = [targets.BEFORE] if before else []
    echo = ServerSpec(targets.ECHO, ECHO_APP, factory=True)
    plans = build_plans(data_dir, args.split, args.questions, args.seed)
    if "engine" in sections:
        print("engine ...", flush=True)
        engines = {targets.AFTER: (sys.executable, data_dir)}
        if before:
            engines = {targets.BEFORE: (args.before_python, before), **engines}
        timer = engine.TimerSettings(args.repeats, args.resets, args.seed, args.split)
        result["engine"] = engine.run(engines, plans, timer)
    if "wire" in sections:
        print("wire ...", flush=True)
        specs = [
            echo,
            *(side(b) for b in befores),
            side(targets.WIRE_AFTER_1, SQLENV_QUERY_WORKERS="1"),
            side(targets.WIRE_AFTER, SQLENV_QUERY_WORKERS="2"),
        ]
        result["wire"] = wire.run(
            specs, plans, _ints(args.concurrency), args.wire_seconds, args.wire_rounds
        )
    if "memory" in sections:
        print("memory ...", flush=True)
        specs = [echo, *(side(b) for b in befores), side(targets.AFTER)]
        result["memory"] = memory.run(specs, _ints(args.memory_sessions), args.split)
    if "isolation" in sections:
        print("isolation ...", flush=True)
        big = largest_gold(data_dir)
        settings = {}
        if args.query_timeout_s:
            settings["SQLENV_QUERY_TIMEOUT_S"] = args.query_timeout_s
        result["isolation"] = isolation.run(
            [side(s) for s in (*befores, targets.AFTER)],
            isolation.known_loads(args.isolation_loads.split(",")),
            args.isolation_seconds,
            args.probe_interval_ms / 1000,
            big.id,
            answer_text(big),
            **settings,
        )
        result["isolation_big_question"] = {"id": big.id, "rows": len(big.gold_rows)}
    if "pools" in sections:
        print("pools ...", flush=True)
        db = database_path(data_dir, "spider", isolation.PROBE_DB)
        result["pools"] = pools.run(db, args.pool_jobs, args.pool_jobs // 10, 5)
    result["machine"]["loadavg_end"] = load_average()
    result["targets"] = targets.evaluate(result)
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    result = run(args, argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "benchmark.json", out_dir / "benchmark.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    markdown = report.render_markdown(result)
    md_path.write_text(markdown)
    plots = report.plot(result, out_dir)
    print(markdown)
    print(f"wrote {json_path}, {md_path}" + "".join(f", {p}" for p in plots))


if __name__ == "__main__":
    main()
