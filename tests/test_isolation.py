"""Isolation through the real server: no input stalls it, no session slows another.

Each test sends, over raw WebSocket frames (or HTTP) to a real uvicorn server on
the built Spider data, one of the inputs that broke the promise before: runaway
built-in calls, huge answers, hostile numbers, a second socket on a session, MCP
sessions, idle sockets, a reset flood, answers on a 10k-row gold, literal queries
in shaped mode. Each must end in a clear error or a verdict within the query
deadline plus one second, with /health and other sessions answering, no SQL
worker still burning CPU after the reply, the server's memory bounded, and the
database files unchanged. The benchmark (docs/benchmarks.md) measures how fast;
these tests assert only that it happens, with the deadline margin as the bound.
"""

import concurrent.futures
import contextlib
import json
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from sql_env.benchmarks.isolation import like_bomb
from sql_env.benchmarks.server_process import ServerProcess, WireClient, sha256_tree
from sql_env.benchmarks.server_process import sqlenv_server as make_server
from sql_env.server.question_bank import load_bank
from sql_env.server.rewards import STEP_COST

pytestmark = pytest.mark.slow

QUERY_TIMEOUT_S = 1.0
DEADLINE_S = QUERY_TIMEOUT_S + 1.0  # the promise: a reply within deadline + 1 s
DB_ID = "concert_singer"
CAPACITY = 8
LIKE_BOMB = like_bomb()  # 400 LIKE calls in one row: only a kill stops it


@pytest.fixture(scope="module")
def server(spider_data_dir: Path):
    hashes = sha256_tree(spider_data_dir / "spider" / "databases")
    server = make_server(
        spider_data_dir,
        SQLENV_QUERY_TIMEOUT_S=str(QUERY_TIMEOUT_S),
        MAX_CONCURRENT_ENVS=str(CAPACITY),
        SQLENV_QUERY_WORKERS="2",
    ).start()
    try:
        yield server
        assert server.alive()
    finally:
        server.stop()
    assert sha256_tree(spider_data_dir / "spider" / "databases") == hashes


def play(server: ServerProcess, **reset: object) -> WireClient:
    client = WireClient(server.ws_url)
    reply = client.reset(**(reset or {"split": "dev", "db_id": DB_ID, "seed": 0}))
    assert reply["type"] == "observation", reply
    return client


def timed(call, *args, **kwargs) -> tuple[dict, float]:
    started = time.monotonic()
    reply = call(*args, **kwargs)
    return reply, time.monotonic() - started


def health_s(server: ServerProcess) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(server.base_url + "/health", timeout=30) as response:
        assert response.status == 200
    return time.monotonic() - started


def wait_no_worker_running(server: ServerProcess, limit_s: float = 10.0) -> None:
    """Every SQL worker is idle (asleep on its socket) or gone."""
    deadline = time.monotonic() + limit_s
    while True:
        running = []
        for child in server.ps.children(recursive=True):
            try:
                if child.status() == psutil.STATUS_RUNNING:
                    running.append(child.pid)
            except psutil.NoSuchProcess:
                pass
        if not running:
            return
        assert time.monotonic() < deadline, f"workers still running: {running}"
        time.sleep(0.05)


def admitted(server: ServerProcess, limit_s: float = 30.0) -> WireClient:
    """A client playing as soon as a slot is free (the server frees it on close)."""
    deadline = time.monotonic() + limit_s
    while True:
        client = WireClient(server.ws_url)
        try:
            reply = client.reset(split="dev", db_id=DB_ID, seed=0)
        except ConnectionClosed:  # refused before the reset was sent
            reply = {"type": "closed"}
        if reply["type"] == "observation":
            return client
        client.close()
        assert time.monotonic() < deadline, f"the slot was never freed: {reply}"
        time.sleep(0.05)


def assert_refused_for_capacity(server: ServerProcess) -> None:
    """A new socket gets OpenEnv's CAPACITY_REACHED frame, then a close."""
    refused = WireClient(server.ws_url)
    try:
        reply = refused.recv()
        assert reply["type"] == "error", reply
        assert reply["data"]["code"] == "CAPACITY_REACHED", reply
        with pytest.raises(ConnectionClosed):
            refused.recv()
    finally:
        refused.close()


def assert_others_answer(server: ServerProcess, rounds: int) -> None:
    """Another session's steps and /health answer within the deadline margin."""
    with play(server) as other:
        for _ in range(rounds):
            other.reset(split="dev", db_id=DB_ID)
            reply, elapsed = timed(other.step, "DESCRIBE", "singer")
            assert not observation(reply)["error"]
            assert elapsed < DEADLINE_S
            assert health_s(server) < DEADLINE_S


def step_frame(action_type: str, argument: str) -> dict:
    return {"type": "step", "data": {"action_type": action_type, "argument": argument}}


def observation(reply: dict) -> dict:
    assert reply["type"] == "observation", reply
    return reply["data"]["observation"]


# ------------------------------------------------------------- runaway SQL


def test_printf_width_is_read_as_sqlite_reads_it(server: ServerProcess) -> None:
    with play(server) as client:
        reply, elapsed = timed(
            client.step, "QUERY", "SELECT printf('%.*c','2147483647x','x') IS NULL"
        )
    obs = observation(reply)
    assert "printf() width or precision" in obs["error"], obs
    assert elapsed < DEADLINE_S


def test_a_row_of_400_like_calls_is_stopped_at_the_deadline(
    server: ServerProcess,
) -> None:
    with play(server) as client:
        reply, elapsed = timed(client.step, "QUERY", LIKE_BOMB, timeout_s=30)
        obs = observation(reply)
        assert "ran longer than" in obs["error"], obs
        assert not reply["data"]["done"]
        assert elapsed < DEADLINE_S
        wait_no_worker_running(server)  # the worker was killed, not left burning
        obs = observation(client.step("QUERY", "SELECT count(*) FROM singer"))
        assert not obs["error"] and "6" in obs["result"], obs


def test_runaway_queries_do_not_hold_up_other_sessions(server: ServerProcess) -> None:
    runaways = [play(server, split="dev", seed=i) for i in range(4)]
    other = play(server)
    try:
        for client in runaways:
            client.send(
                {
                    "type": "step",
                    "data": {"action_type": "QUERY", "argument": LIKE_BOMB},
                }
            )
        for action, argument in (("DESCRIBE", "singer"), ("QUERY", "SELECT 1")):
            reply, elapsed = timed(other.step, action, argument)
            assert not observation(reply)["error"], reply
            assert elapsed < DEADLINE_S
        assert health_s(server) < DEADLINE_S
        for client in runaways:
            late = client.recv(timeout_s=DEADLINE_S + 5)
            assert "ran longer than" in observation(late)["error"]
    finally:
        for client in (*runaways, other):
            client.close()
    wait_no_worker_running(server)


# ----------------------------------------------------------------- answers


def test_a_14_mb_answer_is_refused_with_bounded_memory(server: ServerProcess) -> None:
    huge = json.dumps([[1]] * 2_000_000)  # about 14 MB of JSON
    before = server.rss_mb()

    def send_huge() -> dict:
        with play(server) as client:
            reply = client.step("ANSWER", huge, timeout_s=60)
            after = observation(client.step("DESCRIBE", "singer"))
            assert not after["error"], after
            return reply

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: send_huge(), range(4)))
    for reply in replies:
        assert reply["type"] == "error", reply
        assert reply["data"]["code"] == "FRAME_TOO_LARGE"
    assert server.rss_mb() - before < 300


def test_an_answer_over_the_size_cap_is_an_error_and_the_episode_goes_on(
    server: ServerProcess,
) -> None:
    with play(server) as client:
        reply = client.step("ANSWER", "6" + " " * 1_200_000, timeout_s=60)
        obs = observation(reply)
        assert "longer than 1,000,000 characters" in obs["error"], obs["error"]
        assert not reply["data"]["done"] and obs["budget_remaining"] > 0


def float_gold_question(data_dir: Path) -> str:
    bank = load_bank(data_dir)
    for question in bank.eligible("dev"):
        rows = question.gold_rows
        if len(rows) == 1 and len(rows[0]) == 1 and isinstance(rows[0][0], float):
            return question.id
    raise AssertionError("no dev question with a 1x1 float gold")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("9" * 5000, id="5000-digit-number"),
        pytest.param("1" + "0" * 308, id="309-digit-integer"),
        pytest.param("1e400", id="overflowing-exponent"),
        pytest.param("-" + "9" * 4000 + ".5", id="long-negative-decimal"),
    ],
)
def test_hostile_numbers_get_a_verdict_and_the_episode_ends_once(
    server: ServerProcess, spider_data_dir: Path, answer: str
) -> None:
    qid = float_gold_question(spider_data_dir)
    with play(server, question_id=qid) as client:
        reply, elapsed = timed(client.step, "ANSWER", answer)
        obs = observation(reply)
        assert not obs["error"], obs
        assert reply["data"]["done"] and obs["answer_correct"] is False
        assert obs["history"][-1].endswith("-> incorrect")
        assert elapsed < DEADLINE_S
        late = client.step("ANSWER", "6")
        assert "episode is over" in observation(late)["error"]
        assert late["data"]["reward"] == 0.0


def big_gold_question(data_dir: Path, min_rows: int = 5000) -> str:
    bank = load_bank(data_dir)
    biggest = max(bank.eligible("train"), key=lambda q: len(q.gold_rows))
    assert len(biggest.gold_rows) >= min_rows, biggest.id
    return biggest.id


def test_answers_on_a_10k_row_gold_do_not_stall_the_server(
    server: ServerProcess, spider_data_dir: Path
) -> None:
    qid = big_gold_question(spider_data_dir)
    stop = threading.Event()
    verdicts: list[bool] = []

    def answer_again_and_again() -> None:
        with WireClient(server.ws_url) as client:
            while not stop.is_set():
                client.reset(question_id=qid)
                obs = observation(client.step("ANSWER", "[[1, 2]]", timeout_s=30))
                verdicts.append(obs["answer_correct"])

    threads = [threading.Thread(target=answer_again_and_again) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        with play(server) as other:
            for _ in range(10):
                reply, elapsed = timed(other.step, "DESCRIBE", "singer")
                assert not observation(reply)["error"]
                assert elapsed < DEADLINE_S
                assert health_s(server) < DEADLINE_S
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert verdicts and not any(verdicts)
    gold = load_bank(spider_data_dir).get(qid).gold_rows
    with play(server, question_id=qid) as client:
        reply = client.step("ANSWER", json.dumps([list(r) for r in gold]), 60)
        assert observation(reply)["answer_correct"] is True


# ---------------------------------------------------- sessions and sockets


def test_a_second_socket_cannot_attach_to_a_session(server: ServerProcess) -> None:
    with play(server) as owner:
        frame = {
            "type": "mcp",
            "data": {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "openenv/session/create",
                "params": {},
            },
        }
        session_id = owner.call(frame)["data"]["result"]["session_id"]
        intruder = WireClient(f"{server.ws_url}?session_id={session_id}")
        try:
            refusal = intruder.recv()
            assert refusal["type"] == "error", refusal
            assert "Attaching to an existing session" in refusal["data"]["message"]
            with pytest.raises(ConnectionClosed) as closed:
                intruder.recv()
            assert closed.value.rcvd.code == 1008
        finally:
            intruder.close()
        obs = observation(owner.step("DESCRIBE", "singer"))
        assert not obs["error"] and obs["step_count"] == 1


def test_a_reset_cannot_overtake_a_running_answer(
    server: ServerProcess, spider_data_dir: Path
) -> None:
    qid = "spider/dev/0"  # How many singers do we have? -> 6
    padded = "6" + " " * 900_000  # long enough that checking it takes a moment
    with play(server, question_id=qid) as client:
        client.send(
            {"type": "step", "data": {"action_type": "ANSWER", "argument": padded}}
        )
        client.send({"type": "reset", "data": {"question_id": qid}})
        answered, reset = client.recv(), client.recv()
        assert observation(answered)["answer_correct"] is True
        assert answered["data"]["reward"] == 1.0
        fresh = observation(reset)
        assert fresh["step_count"] == 0 and fresh["answer_correct"] is None
        state = client.state()["data"]
        assert state["rewards"] == [] and state["step_count"] == 0


def test_mcp_sessions_cannot_lock_out_websocket_clients(server: ServerProcess) -> None:
    request = json.dumps(
        {"jsonrpc": "2.0", "id": 7, "method": "openenv/session/create", "params": {}}
    ).encode()
    for _ in range(CAPACITY + 2):
        post = urllib.request.Request(
            server.base_url + "/mcp",
            data=request,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(post, timeout=30) as response:
            body = json.loads(response.read())
        assert "error" in body and "no MCP" in body["error"]["message"], body
    clients = [play(server, split="dev", seed=i) for i in range(CAPACITY)]
    try:
        assert_refused_for_capacity(server)
    finally:
        for client in clients:
            client.close()


def test_a_reset_flood_does_not_starve_other_sessions(server: ServerProcess) -> None:
    stop = threading.Event()
    floods = [0]

    def flood() -> None:
        with WireClient(server.ws_url) as client:
            while not stop.is_set():
                client.reset(split="dev")
                floods[0] += 1

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        assert_others_answer(server, rounds=20)
    finally:
        stop.set()
        flooder.join(timeout=60)
    assert floods[0] > 20


def test_a_pipelined_reset_flood_does_not_starve_other_sessions(
    server: ServerProcess,
) -> None:
    """Resets sent without waiting for replies, read by another thread."""
    stop = threading.Event()
    replies = [0]
    flooder = WireClient(server.ws_url)
    frame = json.dumps({"type": "reset", "data": {"split": "dev"}})

    def write() -> None:
        with contextlib.suppress(ConnectionClosed):
            while not stop.is_set():
                flooder.send(frame)

    def read() -> None:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            while not stop.is_set() or replies[0] == 0:
                flooder.recv(timeout_s=30)
                replies[0] += 1

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    try:
        while replies[0] < 100:  # the flood is flowing
            time.sleep(0.01)
        assert_others_answer(server, rounds=10)
    finally:
        stop.set()
        flooder.close()
        for thread in threads:
            thread.join(timeout=60)


def test_shaped_queries_that_read_no_table_earn_no_progress(
    server: ServerProcess,
) -> None:
    with play(server, question_id="spider/dev/0", reward_mode="shaped") as client:
        literal = client.step("QUERY", "SELECT 6")
        assert literal["data"]["reward"] == pytest.approx(-STEP_COST)
        guess = client.step("QUERY", "SELECT 'Joe Sharp'")
        assert guess["data"]["reward"] == pytest.approx(-STEP_COST)
        real = client.step("QUERY", "SELECT count(*) FROM singer")
        assert real["data"]["reward"] > 0.1


def test_the_server_and_its_workers_stay_small(server: ServerProcess) -> None:
    assert server.alive()
    assert health_s(server) < DEADLINE_S
    assert server.rss_mb() < 1000
    for child in server.ps.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            assert child.memory_info().rss < 600 * 2**20, child


# --------------------------------------------- deadlines and idle sessions


def test_idle_sockets_close_with_a_reason_but_not_during_a_query(
    spider_data_dir: Path,
) -> None:
    settings = {
        "SQLENV_QUERY_TIMEOUT_S": "2",
        "SESSION_TIMEOUT_S": "1",
        "MAX_CONCURRENT_ENVS": "1",
        "SQLENV_QUERY_WORKERS": "1",
    }
    with make_server(spider_data_dir, **settings) as server:
        with play(server) as busy:
            busy.send(
                {
                    "type": "step",
                    "data": {"action_type": "QUERY", "argument": LIKE_BOMB},
                }
            )
            assert_refused_for_capacity(server)  # the slot is still in play
            late = busy.recv(timeout_s=30)  # outlives SESSION_TIMEOUT_S, still answered
            assert "ran longer than" in observation(late)["error"]
            with pytest.raises(ConnectionClosed) as closed:
                busy.recv(timeout_s=30)  # now idle: the server closes it
        assert closed.value.rcvd.code == 4000
        assert "idle" in closed.value.rcvd.reason
        with admitted(server) as third:  # its slot is free again
            assert not observation(third.step("DESCRIBE", "singer"))["error"]
