"""Isolation section: do other sessions and /health stay fast under hostile load?

For each load and each server, a fresh server is started; a load process drives
the hostile sessions while this process probes it, paced, from one more
sessions, each paced on its own: one sends DESCRIBE (schema facts, no SQL), one
a cheap QUERY, and one client ``GET /health`` on a kept-alive connection. The loads:

- ``none``: nothing else (the baseline of the same run);
- ``runaway``: 8 sessions sending runaway statements back to back, alternating
  a row of 400 ``LIKE`` calls (one uninterruptible SQLite step) and an endless
  recursive CTE;
- ``reset_flood``: one session sending resets as fast as replies come back;
- ``big_answer``: 4 sessions answering the largest-gold train question, two
  with a short wrong answer, two with the full correct one.

The load runs in its own process so that its client work never delays the
probe's; the probe runs closed-loop, so a stalled step is one slow sample.
"""

import asyncio
import functools
import http.client
import json
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import connect as ws_connect

from sql_env.benchmarks.machine import load_average
from sql_env.benchmarks.server_process import (
    WS_OPTIONS,
    ServerProcess,
    ServerSpec,
    WireClient,
)
from sql_env.benchmarks.stats import latency_ms

LOADS = ("none", "runaway", "reset_flood", "big_answer")
PROBE_DB = "concert_singer"
PROBE_TABLE = "singer"
CHEAP_QUERY = "SELECT count(*) FROM singer"
PROBE_RESET_EVERY = 10  # steps per probe episode, under the default budget
RUNAWAY_SESSIONS = 8
ANSWER_SESSIONS = 4
WRONG_ANSWER = "[[1, 2]]"
RECURSIVE_RUNAWAY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM c"
)
REPLY_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0


def like_bomb(calls: int = 400) -> str:
    """One row whose column list makes ``calls`` LIKE calls on 100 kB values.

    SQLite checks for interrupts only between rows, so nothing inside SQLite
    stops it early (tests/test_isolation.py proves the server does).
    """
    value = "replace(hex(zeroblob(49999)), '0', 'a')"
    pattern = "'%' || replace(hex(zeroblob(499)), '0', 'a') || 'b'"
    columns = ", ".join(["v LIKE p"] * calls)
    return f"WITH t(v, p) AS (SELECT {value}, {pattern}) SELECT {columns} FROM t"


@dataclass(frozen=True)
class LoadPlan:
    """What the load process needs: the load, where, and the big question."""

    load: str
    ws_url: str
    big_question_id: str = ""
    big_answer: str = ""


# ------------------------------------------------------------ load process


def _step(action_type: str, argument: str) -> str:
    frame = {"action_type": action_type, "argument": argument}
    return json.dumps({"type": "step", "data": frame})


def _load_sessions(plan: LoadPlan) -> list[list[str]]:
    """Each hostile session's cycle of frames, sent one after the other forever."""
    home = json.dumps(
        {"type": "reset", "data": {"split": "dev", "db_id": PROBE_DB, "seed": 0}}
    )
    match plan.load:
        case "runaway":
            bomb, cte = _step("QUERY", like_bomb()), _step("QUERY", RECURSIVE_RUNAWAY)
            return [
                [home, *((bomb, cte) if k % 2 else (cte, bomb))]
                for k in range(RUNAWAY_SESSIONS)
            ]
        case "reset_flood":
            return [[json.dumps({"type": "reset", "data": {"split": "dev"}})]]
        case "big_answer":
            reset = json.dumps(
                {"type": "reset", "data": {"question_id": plan.big_question_id}}
            )
            wrong, full = (
                _step("ANSWER", WRONG_ANSWER),
                _step("ANSWER", plan.big_answer),
            )
            return [[reset, full if k % 2 else wrong] for k in range(ANSWER_SESSIONS)]
    return []


async def _drive(plan: LoadPlan, stop: Any, started: Any) -> dict[str, Any]:
    counts: dict[str, Any] = {"replies": 0, "errors": 0, "correct": 0, "wrong": 0}
    cycles = _load_sessions(plan)
    ready = asyncio.Event()
    engaged = [0]

    async def session(frames: list[str]) -> None:
        # Engaged once its first hostile frame (after its reset) is on its way.
        engage_at, sent = min(1, len(frames) - 1), 0
        async with ws_connect(plan.ws_url, **WS_OPTIONS) as ws:
            while not stop.is_set():
                for frame in frames:
                    await ws.send(frame)
                    if sent == engage_at:
                        engaged[0] += 1
                        if engaged[0] == len(cycles):
                            ready.set()
                    sent += 1
                    reply = json.loads(await ws.recv())
                    counts["replies"] += 1
                    if reply.get("type") != "observation":
                        counts["errors"] += 1
                        continue
                    correct = reply["data"]["observation"].get("answer_correct")
                    if correct is not None:
                        counts["correct" if correct else "wrong"] += 1
                    if stop.is_set():
                        return

    async def watch_stop() -> None:
        await ready.wait()
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(session(frames)) for frames in cycles]
    if not tasks:
        started.set()
        return counts
    watcher = asyncio.create_task(watch_stop())
    done, _ = await asyncio.wait([*tasks, watcher], return_when=asyncio.FIRST_COMPLETED)
    for task in (*tasks, watcher):
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            counts["errors"] += 1
            counts["failure"] = repr(task.exception())[:300]
    started.set()
    return counts


def _load_main(plan: LoadPlan, stop: Any, started: Any, out: Connection) -> None:
    """The load process: drive the hostile sessions until ``stop`` is set."""
    out.send(asyncio.run(_drive(plan, stop, started)))
    out.close()


# ------------------------------------------------------------------ probes


@dataclass
class ProbeLog:
    """Latencies of the probe's requests, by kind, and its failures."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def add(self, kind: str, elapsed: float) -> None:
        self.seconds.setdefault(kind, []).append(elapsed)

    def fail(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])


def _paced(stop: threading.Event, interval_s: float, once: Callable[[], None]) -> None:
    next_at = time.perf_counter()
    while not stop.is_set():
        once()
        next_at += interval_s
        delay = next_at - time.perf_counter()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.perf_counter()


def _probe_session(
    kind: str,
    action: tuple[str, str],
    server: ServerProcess,
    stop: threading.Event,
    interval_s: float,
    log: ProbeLog,
) -> None:
    """One session sending one cheap action, paced; reset every few steps."""
    reset = {"split": "dev", "db_id": PROBE_DB, "seed": 0}
    count = [0]
    with WireClient(server.ws_url) as client:
        client.reset(**reset)

        def once() -> None:
            if count[0] and count[0] % PROBE_RESET_EVERY == 0:
                started = time.perf_counter()
                reply = client.reset(timeout_s=REPLY_TIMEOUT_S, **reset)
                log.add("reset", time.perf_counter() - started)
                if reply.get("type") != "observation":
                    log.fail(json.dumps(reply))
            count[0] += 1
            started = time.perf_counter()
            reply = client.step(*action, timeout_s=REPLY_TIMEOUT_S)
            log.add(kind, time.perf_counter() - started)
            obs = reply.get("data", {}).get("observation", {})
            if reply.get("type") != "observation" or obs.get("error"):
                log.fail(json.dumps(reply)[:300])

        _paced(stop, interval_s, once)


def _probe_health(
    server: ServerProcess, stop: threading.Event, interval_s: float, log: ProbeLog
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def once() -> None:
        started = time.perf_counter()
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            log.fail(f"health: {exc!r}")
            return
        log.add("health", time.perf_counter() - started)
        if not ok:
            log.fail(f"health: HTTP {response.status}")

    try:
        _paced(stop, interval_s, once)
    finally:
        conn.close()


def _probe(server: ServerProcess, seconds: float, interval_s: float) -> ProbeLog:
    log = ProbeLog()
    stop = threading.Event()
    probes = [
        functools.partial(_probe_session, "describe", ("DESCRIBE", PROBE_TABLE)),
        functools.partial(_probe_session, "query", ("QUERY", CHEAP_QUERY)),
        _probe_health,
    ]
    threads = [
        threading.Thread(target=probe, args=(server, stop, interval_s, log))
        for probe in probes
    ]
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return log


# -------------------------------------------------------------- the section


def measure(
    server: ServerProcess, plan: LoadPlan, seconds: float, interval_s: float
) -> dict[str, Any]:
    """Probe ``server`` for ``seconds`` while the load process runs ``plan``."""
    context = multiprocessing.get_context("spawn")
    stop, started = context.Event(), context.Event()
    receive, send = context.Pipe(duplex=False)
    loader = context.Process(target=_load_main, args=(plan, stop, started, send))
    loader.start()
    send.close()
    try:
        if not started.wait(REPLY_TIMEOUT_S):
            raise RuntimeError(f"the {plan.load} load did not start")
        cpu_before, clock = server.cpu_s(), time.perf_counter()
        log = _probe(server, seconds, interval_s)
        cpu_share = (server.cpu_s() - cpu_before) / (time.perf_counter() - clock)
        stop.set()
        load = receive.recv() if receive.poll(REPLY_TIMEOUT_S) else {"lost": True}
    finally:
        stop.set()
        loader.join(STOP_GRACE_S)
        if loader.is_alive():
            loader.terminate()
            loader.join()
    return {
        "probes": {kind: latency_ms(s) for kind, s in sorted(log.seconds.items())},
        "probe_errors": log.errors,
        "probe_error_samples": log.error_samples,
        "load": load,
        "server_cpu_cores": cpu_share,
        "server_alive": server.alive(),
    }


def run(
    specs: list[ServerSpec],
    loads: list[str],
    seconds: float,
    interval_s: float,
    big_question_id: str,
    big_answer: str,
    **settings: str,
) -> dict[str, Any]:
    """Every load against every server, a fresh server each time, interleaved.

    ``settings`` are app.py variables for every server (a query deadline, ...).
    """
    out: dict[str, Any] = {spec.name: {} for spec in specs}
    for load in loads:
        for spec in specs:
            load_start = load_average()
            server = spec.process(**settings).start()
            try:
                with WireClient(server.ws_url) as warm:
                    warm.reset(split="dev", db_id=PROBE_DB, seed=0)
                    warm.step("QUERY", CHEAP_QUERY)
                plan = LoadPlan(load, server.ws_url, big_question_id, big_answer)
                result = measure(server, plan, seconds, interval_s)
            finally:
                server.stop(grace_s=STOP_GRACE_S)
            out[spec.name][load] = {
                **result,
                "load_start": load_start,
                "load_end": load_average(),
            }
    return out


def known_loads(names: list[str]) -> list[str]:
    """``names`` checked against ``LOADS``.

    >>> known_loads(["none", "runaway"])
    ['none', 'runaway']
    """
    unknown = sorted(set(names) - set(LOADS))
    if unknown:
        raise ValueError(f"unknown loads {unknown}; choose from {', '.join(LOADS)}")
    return names
