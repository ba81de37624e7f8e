"""Wire section: steps/s over WebSocket, every server up at once, interleaved.

The load client is one asyncio process with OpenEnv's ``EnvClient`` connection
settings. ``concurrency`` sessions each replay the mix (reset + four steps),
starting at different points of it. For each concurrency the servers take
turns, ``rounds`` times, so a change in the machine's load hits all of them
alike; their figures are summed over the rounds. Besides steps/s the section
reports each server's CPU time per step (its SQL workers included), which other
load on the machine changes much less than it changes throughput.
"""

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
from websockets.asyncio.client import connect as ws_connect

from sql_env.benchmarks.action_mix import EpisodePlan
from sql_env.benchmarks.machine import load_average
from sql_env.benchmarks.server_process import WS_OPTIONS, ServerProcess, ServerSpec
from sql_env.benchmarks.stats import latency_ms

ERROR_SAMPLES = 5
WATCH_INTERVAL_S = 0.25


def episode_frames(echo: bool, plan: EpisodePlan) -> list[str]:
    """The frames of one episode; the echo env gets the same argument strings."""
    if echo:
        frames = [{"type": "reset", "data": {}}]
        frames += [{"type": "step", "data": {"message": a}} for _, a in plan.actions]
    else:
        frames = [{"type": "reset", "data": {"question_id": plan.question_id}}]
        frames += [
            {"type": "step", "data": {"action_type": t, "argument": a}}
            for t, a in plan.actions
        ]
    return [json.dumps(f) for f in frames]


@dataclass
class WireTally:
    """What one measured window saw."""

    episodes: int = 0
    steps: int = 0
    errors: int = 0
    obs_errors: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    worker_cpu_s: float = 0.0
    subprocess_pids: set[int] = field(default_factory=set)
    step_latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES:
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
                    started = time.perf_counter()
                    await ws.send(frame)
                    reply = json.loads(await ws.recv())
                    elapsed = time.perf_counter() - started
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


async def _window(
    url: str,
    episodes: list[list[str]],
    concurrency: int,
    warmup_s: float,
    seconds: float,
    tally: WireTally,
) -> float:
    now = time.perf_counter()
    start_at, stop_at = now + warmup_s, now + warmup_s + seconds
    await asyncio.gather(
        *(
            _session_loop(
                url,
                episodes[(k * 7) % len(episodes) :]
                + episodes[: (k * 7) % len(episodes)],
                start_at,
                stop_at,
                tally,
            )
            for k in range(concurrency)
        )
    )
    return time.perf_counter() - start_at


def measure(
    server: ServerProcess,
    echo: bool,
    plans: list[EpisodePlan],
    concurrency: int,
    seconds: float,
    tally: WireTally,
) -> None:
    """One window on one server, added to ``tally``."""
    episodes = [episode_frames(echo, p) for p in plans]
    warmup_s = min(1.0, max(0.2, seconds / 5))
    done = threading.Event()
    watcher = threading.Thread(target=_watch_subprocesses, args=(server, done, tally))
    cpu_before, own_before = server.cpu_s(), server.own_cpu_s()
    watcher.start()
    try:
        elapsed = asyncio.run(
            _window(server.ws_url, episodes, concurrency, warmup_s, seconds, tally)
        )
    finally:
        done.set()
        watcher.join()
    # The CPU count covers the warm-up too: scale it to the measured share.
    share = elapsed / (elapsed + warmup_s)
    cpu, own = server.cpu_s() - cpu_before, server.own_cpu_s() - own_before
    tally.cpu_s += cpu * share
    tally.worker_cpu_s += (cpu - own) * share
    tally.seconds += elapsed


def _watch_subprocesses(
    server: ServerProcess, done: threading.Event, tally: WireTally
) -> None:
    """Note every subprocess (SQL worker) seen while the window runs."""
    while not done.wait(WATCH_INTERVAL_S):
        with contextlib.suppress(psutil.Error):
            tally.subprocess_pids.update(c.pid for c in server.children())


def _row(name: str, concurrency: int, tally: WireTally, alive: bool) -> dict:
    return {
        "server": name,
        "concurrency": concurrency,
        "seconds": round(tally.seconds, 2),
        "episodes_per_s": tally.episodes / tally.seconds,
        "steps_per_s": tally.steps / tally.seconds,
        "step_ms": latency_ms(tally.step_latencies),
        "server_cpu_ms_per_step": 1000 * tally.cpu_s / max(1, tally.steps),
        "worker_cpu_ms_per_step": 1000 * tally.worker_cpu_s / max(1, tally.steps),
        "errors": tally.errors,
        "obs_errors": tally.obs_errors,
        "error_samples": tally.error_samples,
        "subprocesses_seen": len(tally.subprocess_pids),
        "server_alive": alive,
    }


def run(
    specs: list[ServerSpec],
    plans: list[EpisodePlan],
    concurrencies: list[int],
    seconds: float,
    rounds: int,
    *,
    echo_name: str = "echo",
) -> dict[str, Any]:
    """Every server up at once; per concurrency, ``rounds`` turns each.

    Returns:
        Rows per (server, concurrency), and each server's steps/s as a ratio
        of ``echo_name``'s at the same concurrency.
    """
    max_envs = str(max(concurrencies) + 8)
    load_start = load_average()
    rows = []
    with contextlib.ExitStack() as stack:
        servers = {
            spec.name: stack.enter_context(spec.process(MAX_CONCURRENT_ENVS=max_envs))
            for spec in specs
        }
        for concurrency in concurrencies:
            tallies = {name: WireTally() for name in servers}
            for _ in range(rounds):
                for name, server in servers.items():
                    echo = name == echo_name
                    measure(server, echo, plans, concurrency, seconds, tallies[name])
            rows += [
                _row(name, concurrency, tallies[name], servers[name].alive())
                for name in servers
            ]
    floor = {
        r["concurrency"]: r["steps_per_s"] for r in rows if r["server"] == echo_name
    }
    ratios: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["concurrency"] in floor:
            ratios.setdefault(row["server"], {})[str(row["concurrency"])] = (
                row["steps_per_s"] / floor[row["concurrency"]]
            )
    return {
        "rows": rows,
        "ratio_to_echo": ratios,
        "load_start": load_start,
        "load_end": load_average(),
    }
