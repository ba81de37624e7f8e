# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "openenv-sql-env",
#     "openenv>=0.10,<0.11",
#     "uvicorn[standard]>=0.30,<1",
#     "websockets>=13,<18",
#     "psutil>=5.9,<8",
# ]
# ///
"""Benchmark SQLEnv against its limits, in one run on one machine.

What it measures (each figure next to the limit it is compared with):

- engine: in-process steps/s for a seeded mix of actions built from dev questions
  (DESCRIBE, SAMPLE, QUERY with the gold SQL, ANSWER with the gold rows), and the
  same SQL through raw ``sqlite3`` execute + fetchall (ratio engine/raw for QUERY);
- reset latency p50/p99;
- wire: episodes/s, steps/s and step latency p50/p99 over WebSocket at several
  concurrencies, against SQLEnv and against OpenEnv's echo environment served by
  the same uvicorn command (the floor of the framework);
- memory: server RSS with 0 and N open (reset, idle) sessions, per-session cost.

It writes ``benchmark.json`` and ``benchmark.md`` to ``--out_dir`` and prints them.

Usage:
    .venv/bin/python -m sql_env.scripts.benchmark                 # full run, ~2 min
    .venv/bin/python -m sql_env.scripts.benchmark --quick         # tiny smoke run
    .venv/bin/python -m sql_env.scripts.benchmark --sections wire --concurrency 64
    make bench

The helpers ``ServerProcess`` and ``free_port`` are also used by the hardening,
churn, secrecy and scale-out tests, so that they start servers exactly as here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from uuid import uuid4

import psutil
from fastapi import FastAPI
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, ConcurrencyConfig, Observation, State
from pydantic import Field
from websockets.asyncio.client import connect as ws_connect
from websockets.sync.client import connect as ws_connect_sync

from sql_env.training.cli import parse_args as parse_dataclass_args

SQLENV_APP = "sql_env.server.app:app"
ECHO_APP = "sql_env.scripts.benchmark:echo_app"
# Environment variables read by server/app.py (see its docstring).
DATA_DIR_ENV = "SQLENV_DATA_DIR"
MAX_ENVS_ENV = "MAX_CONCURRENT_ENVS"
SESSION_TIMEOUT_ENV = "SESSION_TIMEOUT_S"
# The same connection settings as OpenEnv's EnvClient (websockets defaults,
# permessage-deflate on), without proxies: we only ever talk to loopback.
WS_OPTIONS: dict[str, Any] = {
    "max_size": 100 * 1024 * 1024,
    "ping_interval": 20.0,
    "ping_timeout": 20.0,
    "open_timeout": 30.0,
    "proxy": None,
}
SERVER_START_TIMEOUT_S = 60.0
# Targets from issue 5.
TARGET_QUERY_RATIO = 1.3
TARGET_RESET_P50_MS = 1.0
TARGET_WIRE_RATIO = 0.9
TARGET_SESSION_MB = 1.0


# --------------------------------------------------------------------------
# OpenEnv's echo environment (envs/echo_env in OpenEnv, as `openenv init`
# generates it), served by the same uvicorn command as SQLEnv.
# --------------------------------------------------------------------------
class EchoAction(Action):
    """Message to echo back."""

    message: str = Field(..., description="Message to echo back")


class EchoObservation(Observation):
    """The echoed message."""

    echoed_message: str = Field(default="", description="The echoed message")
    message_length: int = Field(default=0, description="Length of the message")


class EchoEnvironment(Environment):
    """OpenEnv's echo environment: echoes each message back."""

    SUPPORTS_CONCURRENT_SESSIONS: bool = True

    def __init__(self) -> None:
        self._state = State(episode_id=str(uuid4()), step_count=0)

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> EchoObservation:
        self._state = State(episode_id=episode_id or str(uuid4()), step_count=0)
        return EchoObservation(
            echoed_message="Echo environment ready!", done=False, reward=0.0
        )

    def step(self, action: EchoAction) -> EchoObservation:  # type: ignore[override]
        self._state.step_count += 1
        message = action.message
        return EchoObservation(
            echoed_message=message,
            message_length=len(message),
            done=False,
            reward=min(len(message) * 0.1, 1.0),
            metadata={"original_message": message, "step": self._state.step_count},
        )

    @property
    def state(self) -> State:
        return self._state


def echo_app() -> FastAPI:
    """App factory for the echo baseline (``uvicorn --factory``).

    Session limit and timeout come from the same variables as SQLEnv's app.
    """
    timeout = os.environ.get(SESSION_TIMEOUT_ENV)
    return create_app(
        EchoEnvironment,
        EchoAction,
        EchoObservation,
        env_name="echo_env",
        concurrency_config=ConcurrencyConfig(
            max_concurrent_envs=int(os.environ.get(MAX_ENVS_ENV, "64")),
            session_timeout=float(timeout) if timeout else None,
        ),
    )


# --------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A uvicorn server in a subprocess on a free loopback port.

    SQLEnv and the echo baseline are started by the same command, differing only
    in the app they serve.

    Args:
        app: ``module:attr`` import string (a factory when ``factory`` is set).
        env: extra environment variables (data dir, session limits, ...).
        factory: pass ``--factory`` to uvicorn.
        port: port to use; a free one by default.
    """

    def __init__(
        self,
        app: str = SQLENV_APP,
        env: dict[str, str] | None = None,
        *,
        factory: bool = False,
        port: int | None = None,
    ) -> None:
        self.app = app
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self._extra_env = dict(env or {})
        self._factory = factory
        self._log = tempfile.NamedTemporaryFile(  # closed in stop()
            prefix="sqlenv-server-", suffix=".log", delete=False
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "uvicorn", self.app]
        if self._factory:
            cmd.append("--factory")
        cmd += [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        return cmd

    def start(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> ServerProcess:
        env = {**os.environ, **self._extra_env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.command(), env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server {self.app} exited with {self.proc.returncode}:\n"
                    + self.log_tail()
                )
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server {self.app} not healthy in {timeout_s}s")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=2) as resp:
                body = json.loads(resp.read())
        except (OSError, ValueError):
            return False
        return body.get("status") == "healthy"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def ps(self) -> psutil.Process:
        assert self.proc is not None, "server not started"
        return psutil.Process(self.proc.pid)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def num_fds(self) -> int:
        return self.ps.num_fds()

    def num_threads(self) -> int:
        return self.ps.num_threads()

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        Path(self._log.name).unlink(missing_ok=True)


def sqlenv_server(data_dir: Path, **settings: str) -> ServerProcess:
    """A SQLEnv server on ``data_dir``; ``settings`` are app.py's variables."""
    env = server_env(data_dir, int(settings.pop(MAX_ENVS_ENV, "64")))
    return ServerProcess(SQLENV_APP, {**env, **settings})


class WireClient:
    """A synchronous raw-frame WebSocket client (tests and probes).

    Sends OpenEnv frames as given, so tests can send anything, and reads one
    reply per frame with a deadline.
    """

    def __init__(self, ws_url: str, open_timeout_s: float = 30.0) -> None:
        options = {k: v for k, v in WS_OPTIONS.items() if k != "open_timeout"}
        self.ws = ws_connect_sync(
            ws_url, open_timeout=open_timeout_s, **options
        ).__enter__()

    def send(self, frame: dict | str | bytes) -> None:
        self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    def recv(self, timeout_s: float = 30.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout_s))

    def call(self, frame: dict | str | bytes, timeout_s: float = 30.0) -> dict:
        self.send(frame)
        return self.recv(timeout_s)

    def reset(self, timeout_s: float = 30.0, **data: Any) -> dict:
        return self.call({"type": "reset", "data": data}, timeout_s)

    def step(self, action_type: str, argument: str, timeout_s: float = 30.0) -> dict:
        frame = {
            "type": "step",
            "data": {"action_type": action_type, "argument": argument},
        }
        return self.call(frame, timeout_s)

    def state(self, timeout_s: float = 30.0) -> dict:
        return self.call({"type": "state"}, timeout_s)

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sha256_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------
@dataclass
class BenchArgs:
    """Benchmark sizes; ``--quick`` shrinks all of them for tests."""

    data_dir: str = field(
        default="", metadata={"help": "Built data dir (default: the package's data/)."}
    )
    out_dir: str = field(
        default="outputs/benchmark",
        metadata={"help": "Where benchmark.json and benchmark.md are written."},
    )
    sections: str = field(
        default="engine,wire,memory",
        metadata={"help": "Comma-separated subset of engine,wire,memory."},
    )
    split: str = field(default="dev", metadata={"help": "Question split to draw from."})
    seed: int = field(default=0, metadata={"help": "Seed of the question sample."})
    questions: int = field(
        default=200, metadata={"help": "Questions in the engine/wire action mix."}
    )
    repeats: int = field(
        default=3, metadata={"help": "Passes over the mix in the engine benchmark."}
    )
    resets: int = field(default=2000, metadata={"help": "Resets timed in-process."})
    concurrency: str = field(
        default="1,16,64", metadata={"help": "Comma-separated wire concurrencies."}
    )
    wire_seconds: float = field(
        default=10.0, metadata={"help": "Measured seconds per wire concurrency."}
    )
    memory_sessions: str = field(
        default="64,256", metadata={"help": "Comma-separated open-session counts."}
    )
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
            self.memory_sessions = "4,8"

    @property
    def concurrencies(self) -> list[int]:
        return [int(c) for c in self.concurrency.split(",") if c.strip()]

    @property
    def session_counts(self) -> list[int]:
        return [int(c) for c in self.memory_sessions.split(",") if c.strip()]


def parse_args(argv: list[str] | None = None) -> BenchArgs:
    args = parse_dataclass_args(BenchArgs, argv, __doc__.split("\n\n")[0])
    args.apply_quick()
    return args


# --------------------------------------------------------------------------
# Statistics and machine details
# --------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; ``q`` in [0, 100].

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.0
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine_details() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "openenv": version("openenv"),
        "uvicorn": version("uvicorn"),
        "websockets": version("websockets"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


# --------------------------------------------------------------------------
# The action mix
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class EpisodePlan:
    """One episode of the mix: a question and the four actions played on it."""

    question_id: str
    db_id: str
    gold_sql: str
    actions: tuple[tuple[str, str], ...]


def build_plans(data_dir: Path, split: str, n: int, seed: int) -> list[EpisodePlan]:
    """Seeded sample of questions, each played DESCRIBE, SAMPLE, QUERY, ANSWER."""
    from sql_env.server.question_bank import load_bank

    bank = load_bank(data_dir)
    questions = sorted(bank.eligible(split), key=lambda q: q.id)
    rng = random.Random(seed)
    picked = rng.sample(questions, min(n, len(questions)))
    plans = []
    for q in picked:
        table = q.tables_used[0] if q.tables_used else ""
        answer = json.dumps([list(r) for r in q.gold_rows], default=str)
        actions = (
            ("DESCRIBE", table),
            ("SAMPLE", table),
            ("QUERY", q.gold_sql),
            ("ANSWER", answer),
        )
        plans.append(EpisodePlan(q.id, q.db_id, q.gold_sql, actions))
    return plans


def resolve_data_dir(args: BenchArgs) -> Path:
    from sql_env.server.question_bank import DEFAULT_DATA_DIR

    return Path(args.data_dir) if args.data_dir else Path(DEFAULT_DATA_DIR)


def db_path(data_dir: Path, db_id: str) -> Path:
    from sql_env.server.question_bank import database_path

    return database_path(data_dir, "spider", db_id)


# --------------------------------------------------------------------------
# Engine (in-process)
# --------------------------------------------------------------------------
def bench_engine(args: BenchArgs, data_dir: Path, plans: list[EpisodePlan]) -> dict:
    from sql_env.models import SQLAction
    from sql_env.server.sql_environment import SQLEnvironment

    env = SQLEnvironment(data_dir)
    raw_conns: dict[str, sqlite3.Connection] = {}

    def raw_query(plan: EpisodePlan) -> float:
        conn = raw_conns.get(plan.db_id)
        if conn is None:
            # The sandbox's open flags, and no statement cache: the mix repeats
            # each SQL only to average out noise, and an episode's connection
            # never sees a statement twice.
            uri = f"{db_path(data_dir, plan.db_id).resolve().as_uri()}"
            conn = sqlite3.connect(
                uri + "?mode=ro&immutable=1", uri=True, cached_statements=0
            )
            raw_conns[plan.db_id] = conn
        t0 = time.perf_counter()
        conn.execute(plan.gold_sql).fetchall()
        return time.perf_counter() - t0

    def play(plan: EpisodePlan, times: dict[str, list[float]]) -> int:
        errors = 0
        t0 = time.perf_counter()
        env.reset(question_id=plan.question_id)
        times["RESET"].append(time.perf_counter() - t0)
        for action_type, argument in plan.actions:
            action = SQLAction(action_type=action_type, argument=argument)
            t0 = time.perf_counter()
            obs = env.step(action)
            times[action_type].append(time.perf_counter() - t0)
            errors += bool(obs.error)
        return errors

    # Warm-up pass: page cache, per-db caches, imports.
    for plan in plans:
        play(plan, {k: [] for k in ("RESET", "DESCRIBE", "SAMPLE", "QUERY", "ANSWER")})
        raw_query(plan)

    times: dict[str, list[float]] = {
        k: [] for k in ("RESET", "DESCRIBE", "SAMPLE", "QUERY", "ANSWER")
    }
    raw: list[float] = []
    engine_query: list[float] = []
    obs_errors = 0
    for _ in range(args.repeats):
        for plan in plans:
            # Interleave raw and engine so both see the same machine load.
            raw.append(raw_query(plan))
            obs_errors += play(plan, times)
            engine_query.append(times["QUERY"][-1])
    for conn in raw_conns.values():
        conn.close()

    step_total = sum(sum(times[k]) for k in ("DESCRIBE", "SAMPLE", "QUERY", "ANSWER"))
    n_steps = sum(len(times[k]) for k in ("DESCRIBE", "SAMPLE", "QUERY", "ANSWER"))
    per_query = [e / r for e, r in zip(engine_query, raw, strict=True) if r > 0]

    # Reset latency: seeded random questions of the split.
    reset_times = []
    for i in range(args.resets):
        t0 = time.perf_counter()
        env.reset(seed=args.seed + i, split=args.split)
        reset_times.append(time.perf_counter() - t0)
    env.close()

    ms = 1000.0
    result = {
        "episodes": len(plans) * args.repeats,
        "steps": n_steps,
        "steps_per_s": n_steps / step_total,
        "episodes_per_s": len(times["RESET"]) / (step_total + sum(times["RESET"])),
        "obs_errors": obs_errors,
        "step_p50_ms": {k: percentile(v, 50) * ms for k, v in times.items()},
        "step_mean_ms": {k: statistics.fmean(v) * ms for k, v in times.items()},
        "raw_query_mean_ms": statistics.fmean(raw) * ms,
        "raw_query_p50_ms": percentile(raw, 50) * ms,
        "engine_query_mean_ms": statistics.fmean(engine_query) * ms,
        "engine_query_p50_ms": percentile(engine_query, 50) * ms,
        "query_ratio_total": sum(engine_query) / sum(raw),
        "query_ratio_median": statistics.median(per_query),
        "query_overhead_us_median": statistics.median(
            [(e - r) * 1e6 for e, r in zip(engine_query, raw, strict=True)]
        ),
        "reset_p50_ms": percentile(reset_times, 50) * ms,
        "reset_p99_ms": percentile(reset_times, 99) * ms,
        "resets": len(reset_times),
    }
    return result


# --------------------------------------------------------------------------
# Wire (WebSocket load)
# --------------------------------------------------------------------------
def episode_frames(kind: str, plan: EpisodePlan) -> list[str]:
    """The frames of one episode; echo gets the same argument strings."""
    if kind == "sqlenv":
        frames = [{"type": "reset", "data": {"question_id": plan.question_id}}]
        frames += [
            {"type": "step", "data": {"action_type": t, "argument": a}}
            for t, a in plan.actions
        ]
    else:
        frames = [{"type": "reset", "data": {}}]
        frames += [{"type": "step", "data": {"message": a}} for _, a in plan.actions]
    return [json.dumps(f) for f in frames]


@dataclass
class WireTally:
    episodes: int = 0
    steps: int = 0
    errors: int = 0
    obs_errors: int = 0
    step_latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])


async def _session_loop(
    url: str,
    episodes: list[list[str]],
    start_at: float,
    stop_at: float,
    tally: WireTally,
) -> None:
    try:
        async with ws_connect(url, **WS_OPTIONS) as ws:
            i = 0
            while True:
                frames = episodes[i % len(episodes)]
                i += 1
                measured = time.perf_counter() >= start_at
                for n, frame in enumerate(frames):
                    t0 = time.perf_counter()
                    await ws.send(frame)
                    reply = json.loads(await ws.recv())
                    elapsed = time.perf_counter() - t0
                    if reply.get("type") != "observation":
                        tally.error(json.dumps(reply))
                        continue
                    if n and measured:
                        tally.steps += 1
                        tally.step_latencies.append(elapsed)
                        obs = reply["data"].get("observation", {})
                        tally.obs_errors += bool(obs.get("error"))
                if measured:
                    tally.episodes += 1
                if time.perf_counter() >= stop_at:
                    return
    except Exception as exc:  # every failure is counted as an error
        tally.error(f"{type(exc).__name__}: {exc}")


async def _wire_level(
    url: str, episodes: list[list[str]], concurrency: int, warmup_s: float, s: float
) -> tuple[WireTally, float]:
    tally = WireTally()
    now = time.perf_counter()
    start_at, stop_at = now + warmup_s, now + warmup_s + s
    # Each session starts at a different point of the mix.
    tasks = [
        _session_loop(
            url,
            episodes[(k * 7) % len(episodes) :] + episodes[: (k * 7) % len(episodes)],
            start_at,
            stop_at,
            tally,
        )
        for k in range(concurrency)
    ]
    await asyncio.gather(*tasks)
    return tally, time.perf_counter() - start_at


def bench_wire_server(
    kind: str, server: ServerProcess, args: BenchArgs, plans: list[EpisodePlan]
) -> list[dict]:
    episodes = [episode_frames(kind, p) for p in plans]
    rows = []
    warmup_s = min(2.0, max(0.2, args.wire_seconds / 5))
    for concurrency in args.concurrencies:
        cpu0 = server.cpu_s()
        tally, elapsed = asyncio.run(
            _wire_level(
                server.ws_url, episodes, concurrency, warmup_s, args.wire_seconds
            )
        )
        # Server CPU per step covers warm-up too; scale by measured share.
        cpu = server.cpu_s() - cpu0
        lat = tally.step_latencies
        rows.append(
            {
                "server": kind,
                "concurrency": concurrency,
                "seconds": round(elapsed, 2),
                "episodes": tally.episodes,
                "steps": tally.steps,
                "episodes_per_s": tally.episodes / elapsed,
                "steps_per_s": tally.steps / elapsed,
                "step_p50_ms": percentile(lat, 50) * 1000,
                "step_p99_ms": percentile(lat, 99) * 1000,
                "server_cpu_ms_per_step": 1000
                * cpu
                / max(1, tally.steps * (elapsed + warmup_s) / elapsed),
                "errors": tally.errors,
                "obs_errors": tally.obs_errors,
                "error_samples": tally.error_samples,
                "server_alive": server.alive(),
            }
        )
    return rows


def server_env(data_dir: Path, max_envs: int) -> dict[str, str]:
    return {
        DATA_DIR_ENV: str(data_dir),
        MAX_ENVS_ENV: str(max_envs),
        SESSION_TIMEOUT_ENV: "300",
    }


@contextlib.contextmanager
def serve(kind: str, data_dir: Path, max_envs: int) -> Iterator[ServerProcess]:
    if kind == "sqlenv":
        server = ServerProcess(SQLENV_APP, server_env(data_dir, max_envs))
    else:
        server = ServerProcess(ECHO_APP, server_env(data_dir, max_envs), factory=True)
    with server:
        yield server


def bench_wire(args: BenchArgs, data_dir: Path, plans: list[EpisodePlan]) -> dict:
    max_envs = max(args.concurrencies) + 8
    rows = []
    for kind in ("echo", "sqlenv"):
        with serve(kind, data_dir, max_envs) as server:
            rows += bench_wire_server(kind, server, args, plans)
    ratios = {}
    for c in args.concurrencies:
        echo = next(r for r in rows if r["server"] == "echo" and r["concurrency"] == c)
        sql = next(r for r in rows if r["server"] == "sqlenv" and r["concurrency"] == c)
        ratios[str(c)] = sql["steps_per_s"] / echo["steps_per_s"]
    return {"rows": rows, "throughput_ratio": ratios}


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------
async def _open_sessions(
    url: str, n: int, kind: str, split: str, stack: contextlib.AsyncExitStack
) -> int:
    """Open ``n`` sessions (connect, reset, one step) and keep them; returns errors."""
    errors = 0
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        nonlocal errors
        async with sem:
            try:
                ws = await stack.enter_async_context(ws_connect(url, **WS_OPTIONS))
                data = {"seed": i, "split": split} if kind == "sqlenv" else {}
                await ws.send(json.dumps({"type": "reset", "data": data}))
                reply = json.loads(await ws.recv())
                errors += reply.get("type") != "observation"
                # One step, so SQLEnv's session holds its open database.
                if kind == "sqlenv":
                    table = reply["data"]["observation"]["tables"][0]
                    step = {"action_type": "SAMPLE", "argument": table}
                else:
                    step = {"message": "SAMPLE"}
                await ws.send(json.dumps({"type": "step", "data": step}))
                reply = json.loads(await ws.recv())
                errors += reply.get("type") != "observation"
            except Exception:  # counted as an error
                errors += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return errors


def bench_memory_server(kind: str, server: ServerProcess, args: BenchArgs) -> dict:
    async def run() -> dict:
        # Warm: one full session so the bank, caches and imports are loaded.
        async with contextlib.AsyncExitStack() as stack:
            await _open_sessions(server.ws_url, 1, kind, args.split, stack)
        await asyncio.sleep(1.0)
        points = [
            {
                "sessions": 0,
                "rss_mb": server.rss_mb(),
                "fds": server.num_fds(),
                "threads": server.num_threads(),
            }
        ]
        errors = 0
        async with contextlib.AsyncExitStack() as stack:
            opened = 0
            for target in args.session_counts:
                errors += await _open_sessions(
                    server.ws_url, target - opened, kind, args.split, stack
                )
                opened = target
                await asyncio.sleep(1.0)
                points.append(
                    {
                        "sessions": target,
                        "rss_mb": server.rss_mb(),
                        "fds": server.num_fds(),
                        "threads": server.num_threads(),
                    }
                )
        await asyncio.sleep(1.0)
        base = points[0]["rss_mb"]
        top = points[-1]
        return {
            "server": kind,
            "points": points,
            "per_session_mb": (top["rss_mb"] - base) / max(1, top["sessions"]),
            "errors": errors,
            "rss_after_close_mb": server.rss_mb(),
            "server_alive": server.alive(),
        }

    return asyncio.run(run())


def bench_memory(args: BenchArgs, data_dir: Path) -> dict:
    max_envs = max(args.session_counts) + 8
    out = {}
    for kind in ("echo", "sqlenv"):
        with serve(kind, data_dir, max_envs) as server:
            out[kind] = bench_memory_server(kind, server, args)
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
def evaluate_targets(result: dict) -> list[dict]:
    targets = []
    engine = result.get("engine")
    if engine:
        targets.append(
            {
                "name": "QUERY step time / raw sqlite3 (total)",
                "value": round(engine["query_ratio_total"], 2),
                "target": f"<= {TARGET_QUERY_RATIO}",
                "met": engine["query_ratio_total"] <= TARGET_QUERY_RATIO,
            }
        )
        targets.append(
            {
                "name": "reset p50 (ms)",
                "value": round(engine["reset_p50_ms"], 3),
                "target": f"< {TARGET_RESET_P50_MS}",
                "met": engine["reset_p50_ms"] < TARGET_RESET_P50_MS,
            }
        )
    wire = result.get("wire")
    if wire:
        for c, ratio in wire["throughput_ratio"].items():
            targets.append(
                {
                    "name": f"wire steps/s SQLEnv/echo at {c} sessions",
                    "value": round(ratio, 2),
                    "target": f">= {TARGET_WIRE_RATIO}",
                    "met": ratio >= TARGET_WIRE_RATIO,
                }
            )
        errors = sum(r["errors"] for r in wire["rows"])
        targets.append(
            {
                "name": "wire errors (all runs)",
                "value": errors,
                "target": "0",
                "met": errors == 0,
            }
        )
    memory = result.get("memory")
    if memory:
        sql = memory["sqlenv"]
        targets.append(
            {
                "name": "RSS per idle session (MB)",
                "value": round(sql["per_session_mb"], 3),
                "target": f"<= {TARGET_SESSION_MB}",
                "met": sql["per_session_mb"] <= TARGET_SESSION_MB,
            }
        )
        top = sql["points"][-1]["sessions"]
        targets.append(
            {
                "name": f"{top} open sessions, errors",
                "value": sql["errors"],
                "target": "0",
                "met": sql["errors"] == 0 and sql["server_alive"],
            }
        )
    return targets


def _f(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def render_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Run: {m['date_utc']} on {m['cpu']} ({m['cpu_count']} cores, "
        f"{m['memory_gb']} GB), {m['platform']}; Python {m['python']}, "
        f"SQLite {m['sqlite']}, openenv {m['openenv']}, uvicorn {m['uvicorn']}, "
        f"websockets {m['websockets']}. Load average at start "
        f"{m['loadavg_start']}, at end {m.get('loadavg_end')}. "
        f"Arguments: `{result['args_line']}`.",
        "",
    ]
    engine = result.get("engine")
    if engine:
        lines += [
            "### Engine, in-process",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| episodes x steps | {engine['episodes']} x 4 = {engine['steps']} |",
            f"| steps/s (mix) | {_f(engine['steps_per_s'], 0)} |",
            f"| episodes/s (reset + 4 steps) | {_f(engine['episodes_per_s'], 0)} |",
        ]
        for k, v in engine["step_p50_ms"].items():
            mean = engine["step_mean_ms"][k]
            lines.append(f"| {k} p50 / mean (ms) | {v:.3f} / {mean:.3f} |")
        lines += [
            f"| raw sqlite3 QUERY p50 / mean (ms) | {engine['raw_query_p50_ms']:.3f}"
            f" / {engine['raw_query_mean_ms']:.3f} |",
            f"| QUERY engine/raw: total, median per query | "
            f"{engine['query_ratio_total']:.2f}x, "
            f"{engine['query_ratio_median']:.2f}x |",
            f"| QUERY overhead over raw, median (us) | "
            f"{engine['query_overhead_us_median']:.0f} |",
            f"| reset p50 / p99 (ms), {engine['resets']} resets | "
            f"{engine['reset_p50_ms']:.3f} / {engine['reset_p99_ms']:.3f} |",
            f"| error observations in the mix | {engine['obs_errors']} |",
            "",
        ]
    wire = result.get("wire")
    if wire:
        lines += [
            "### Wire, WebSocket (one uvicorn process each)",
            "",
            "| server | sessions | episodes/s | steps/s | step p50 (ms) "
            "| step p99 (ms) | server CPU/step (ms) | errors |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in wire["rows"]:
            lines.append(
                f"| {r['server']} | {r['concurrency']} | {_f(r['episodes_per_s'])} "
                f"| {_f(r['steps_per_s'])} | {r['step_p50_ms']:.2f} "
                f"| {r['step_p99_ms']:.2f} | {r['server_cpu_ms_per_step']:.3f} "
                f"| {r['errors']} |"
            )
        ratios = ", ".join(f"{c}: {v:.2f}" for c, v in wire["throughput_ratio"].items())
        lines += ["", f"SQLEnv/echo steps/s by sessions: {ratios}.", ""]
    memory = result.get("memory")
    if memory:
        lines += [
            "### Memory, server RSS with open idle sessions (reset + one SAMPLE step)",
            "",
            "| server | sessions | RSS (MB) | fds | threads |",
            "| --- | --- | --- | --- | --- |",
        ]
        for kind, mem in memory.items():
            for p in mem["points"]:
                lines.append(
                    f"| {kind} | {p['sessions']} | {p['rss_mb']:.1f} | {p['fds']} "
                    f"| {p['threads']} |"
                )
        lines += [""]
        for kind, mem in memory.items():
            lines.append(
                f"- {kind}: {mem['per_session_mb']:.3f} MB per session, "
                f"{mem['errors']} errors, RSS after closing all "
                f"{mem['rss_after_close_mb']:.1f} MB."
            )
        lines.append("")
    lines += [
        "### Targets",
        "",
        "| target | value | wanted | met |",
        "| --- | --- | --- | --- |",
    ]
    for t in result["targets"]:
        met = "yes" if t["met"] else "**no**"
        lines.append(f"| {t['name']} | {t['value']} | {t['target']} | {met} |")
    return "\n".join(lines) + "\n"


def run(args: BenchArgs) -> dict:
    data_dir = resolve_data_dir(args)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    result: dict[str, Any] = {
        "machine": machine_details(),
        "args": dataclasses.asdict(args),
        "args_line": " ".join(
            f"--{k} {v}"
            for k, v in dataclasses.asdict(args).items()
            if k not in ("data_dir", "out_dir")
        ),
    }
    plans = build_plans(data_dir, args.split, args.questions, args.seed)
    if "engine" in sections:
        print("engine ...", flush=True)
        result["engine"] = bench_engine(args, data_dir, plans)
    if "wire" in sections:
        print("wire ...", flush=True)
        result["wire"] = bench_wire(args, data_dir, plans)
    if "memory" in sections:
        print("memory ...", flush=True)
        result["memory"] = bench_memory(args, data_dir)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = evaluate_targets(result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "benchmark.json"
    md_path = out_dir / "benchmark.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    markdown = render_markdown(result)
    md_path.write_text(markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
