"""Memory section: what an open, idle session costs a server.

Each server is started fresh, warmed with one full session, then holds 0, then
each of ``session_counts`` sessions open at once (each reset and one SAMPLE
step, so a SQLEnv session has touched its database, then idle). The cost per
session is the growth of the server process's resident memory over the top
count; the server's SQL workers, which do not grow with sessions, are reported
beside it.
"""

import asyncio
import contextlib
import json
from typing import Any

from websockets.asyncio.client import connect as ws_connect

from sql_env.benchmarks.machine import load_average
from sql_env.benchmarks.server_process import WS_OPTIONS, ServerProcess, ServerSpec

OPEN_AT_ONCE = 16
SETTLE_S = 1.0


async def _open_sessions(
    url: str, n: int, echo: bool, split: str, stack: contextlib.AsyncExitStack
) -> int:
    """Open ``n`` sessions (connect, reset, one step) and keep them; the errors."""
    errors = 0
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one(i: int) -> None:
        nonlocal errors
        async with gate:
            try:
                ws = await stack.enter_async_context(ws_connect(url, **WS_OPTIONS))
                data = {} if echo else {"seed": i, "split": split}
                await ws.send(json.dumps({"type": "reset", "data": data}))
                reply = json.loads(await ws.recv())
                errors += reply.get("type") != "observation"
                if echo:
                    step = {"message": "SAMPLE"}
                else:
                    table = reply["data"]["observation"]["tables"][0]
                    step = {"action_type": "SAMPLE", "argument": table}
                await ws.send(json.dumps({"type": "step", "data": step}))
                reply = json.loads(await ws.recv())
                errors += reply.get("type") != "observation"
            except Exception:  # counted as an error
                errors += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return errors


def _point(server: ServerProcess, sessions: int) -> dict[str, Any]:
    return {
        "sessions": sessions,
        "rss_mb": server.rss_mb(),
        "tree_rss_mb": server.tree_rss_mb(),
        "subprocesses": len(server.children()),
        "fds": server.num_fds(),
        "threads": server.num_threads(),
    }


def measure(
    server: ServerProcess, echo: bool, session_counts: list[int], split: str
) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with contextlib.AsyncExitStack() as stack:
            await _open_sessions(server.ws_url, 1, echo, split, stack)
        await asyncio.sleep(SETTLE_S)
        points = [_point(server, 0)]
        errors = 0
        async with contextlib.AsyncExitStack() as stack:
            opened = 0
            for target in session_counts:
                errors += await _open_sessions(
                    server.ws_url, target - opened, echo, split, stack
                )
                opened = target
                await asyncio.sleep(SETTLE_S)
                points.append(_point(server, target))
        await asyncio.sleep(SETTLE_S)
        base, top = points[0], points[-1]
        return {
            "points": points,
            "per_session_mb": (top["rss_mb"] - base["rss_mb"])
            / max(1, top["sessions"]),
            "errors": errors,
            "rss_after_close_mb": server.rss_mb(),
            "server_alive": server.alive(),
        }

    return asyncio.run(run())


def run(
    specs: list[ServerSpec],
    session_counts: list[int],
    split: str,
    *,
    echo_name: str = "echo",
) -> dict[str, Any]:
    """Each server on its own, fresh, one after the other."""
    out: dict[str, Any] = {}
    max_envs = str(max(session_counts) + 8)
    for spec in specs:
        load = load_average()
        with spec.process(MAX_CONCURRENT_ENVS=max_envs) as server:
            result = measure(server, spec.name == echo_name, session_counts, split)
        out[spec.name] = {**result, "load_start": load, "load_end": load_average()}
    return out
