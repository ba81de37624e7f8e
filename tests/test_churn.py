"""1,000 connect / play / disconnect cycles, abrupt ones included, leave nothing behind.

A real server (uvicorn subprocess) with 32 session slots. Cycles run 16 at a
time and mix clean episodes, closes mid-episode, sockets dropped (TCP abort, no
close frame) right after sending a step, during a query that runs into its
deadline, and before any message. Afterwards every slot is free again (32 new
sessions all get in), and the server's file descriptors, threads and RSS are
back near their baseline. Tolerances, not timings.
"""

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sql_env.benchmarks.server_process import WS_OPTIONS, ServerProcess
from sql_env.benchmarks.server_process import sqlenv_server as make_server

pytestmark = pytest.mark.slow

SLOTS = 32
CYCLES = 1_000
PARALLEL = 16
WARMUP_CYCLES = 100
FD_TOLERANCE = 8
THREAD_TOLERANCE = 8
RSS_TOLERANCE_MB = 60.0
SETTLE_TIMEOUT_S = 60.0
RUNAWAY_SQL = "SELECT count(*) FROM " + ", ".join(["singer"] * 12)
RUNAWAY_EVERY = 50  # cycles whose socket drops during a runaway query
KINDS = ("clean", "close-mid", "abort-mid-step", "abort-after-reset", "abort-idle")


def frame(kind: str, **data) -> str:
    return json.dumps({"type": kind, "data": data})


def step(action_type: str, argument: str) -> str:
    return frame("step", action_type=action_type, argument=argument)


async def cycle(url: str, i: int) -> str:
    """One connection; returns how it ended (for the tally)."""
    ws = await connect(url, **WS_OPTIONS)
    kind = "runaway-abort" if i % RUNAWAY_EVERY == 0 else KINDS[i % len(KINDS)]
    try:
        if kind == "abort-idle":
            return kind
        await ws.send(frame("reset", split="dev", db_id="concert_singer", seed=i))
        reply = json.loads(await ws.recv())
        assert reply["type"] == "observation", reply
        if kind == "abort-after-reset":
            return kind
        if kind == "runaway-abort":
            await ws.send(step("QUERY", RUNAWAY_SQL))
            await asyncio.sleep(0.05)  # the query is running when the socket drops
            return kind
        if kind == "abort-mid-step":
            await ws.send(step("SAMPLE", "concert"))
            return kind
        for action in (
            step("DESCRIBE", "singer"),
            step("QUERY", "SELECT Name FROM singer"),
        ):
            await ws.send(action)
            reply = json.loads(await ws.recv())
            assert not reply["data"]["observation"]["error"], reply
        if kind == "clean":
            await ws.send(step("ANSWER", "[]"))
            reply = json.loads(await ws.recv())
            assert reply["data"]["done"], reply
        return kind
    finally:
        if kind.startswith(("abort", "runaway")):
            ws.transport.abort()  # no close frame: a dropped client
        else:
            await ws.close()


async def churn(url: str, cycles: int, offset: int = 0) -> dict[str, int]:
    tally: dict[str, int] = {}
    sem = asyncio.Semaphore(PARALLEL)

    async def one(i: int) -> None:
        async with sem:
            kind = await cycle(url, offset + i)
            tally[kind] = tally.get(kind, 0) + 1

    await asyncio.gather(*(one(i) for i in range(cycles)))
    return tally


async def all_slots_free(url: str) -> bool:
    """Open SLOTS sessions at once; True when every one of them got in."""
    sockets = []
    try:
        for _ in range(SLOTS):
            ws = await connect(url, **WS_OPTIONS)
            sockets.append(ws)
        for ws in sockets:
            await ws.send(frame("reset", split="dev", seed=0))
        replies = [json.loads(await ws.recv()) for ws in sockets]
        return all(r["type"] == "observation" for r in replies)
    except ConnectionClosed:  # refused with CAPACITY_REACHED, then closed
        return False
    finally:
        for ws in sockets:
            await ws.close()


async def settle(server: ServerProcess) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    while not await all_slots_free(server.ws_url):
        assert loop.time() < deadline, "sessions were not released"
        await asyncio.sleep(1.0)
    await asyncio.sleep(1.0)  # executors wind down after their sessions


def snapshot(server: ServerProcess) -> dict[str, float]:
    return {
        "fds": server.num_fds(),
        "threads": server.num_threads(),
        "rss_mb": server.rss_mb(),
    }


@pytest.fixture(scope="module")
def server(spider_data_dir: Path):
    with make_server(
        spider_data_dir,
        MAX_CONCURRENT_ENVS=str(SLOTS),
        SQLENV_QUERY_TIMEOUT_S="1",
    ) as server:
        yield server


def test_churn_returns_to_baseline(server: ServerProcess):
    async def run() -> tuple[dict, dict, dict]:
        await churn(server.ws_url, WARMUP_CYCLES, offset=1)
        await settle(server)
        baseline = snapshot(server)
        tally = await churn(server.ws_url, CYCLES)
        await settle(server)
        return baseline, snapshot(server), tally

    baseline, after, tally = asyncio.run(run())

    assert sum(tally.values()) == CYCLES
    assert tally["runaway-abort"] >= CYCLES // RUNAWAY_EVERY
    assert server.alive() and server.healthy()
    assert after["fds"] <= baseline["fds"] + FD_TOLERANCE, (baseline, after)
    assert after["threads"] <= baseline["threads"] + THREAD_TOLERANCE, (baseline, after)
    assert after["rss_mb"] <= baseline["rss_mb"] + RSS_TOLERANCE_MB, (baseline, after)
