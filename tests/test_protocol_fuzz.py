"""Malformed traffic to the real server: an error frame or a clean close, never a crash.

Raw WebSocket frames (and a few raw HTTP requests) go to a uvicorn server on the
real data. Each case must get an OpenEnv error frame (or, for the frames OpenEnv
cannot answer on the same socket, a close frame from the server); afterwards
the server is healthy and a new session plays normally.
"""

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from sql_env.benchmarks.server_process import ServerProcess, WireClient
from sql_env.benchmarks.server_process import sqlenv_server as make_server

pytestmark = pytest.mark.slow

REPLY_TIMEOUT_S = 20.0
ERROR = "error"  # an error frame
CLOSE = "close"  # the server closed the socket with a close frame
OBS_ERROR = "obs_error"  # an observation whose `error` is set
OBSERVATION = "observation"  # any observation (the input is odd but legal)


def step(action_type, argument) -> str:
    return json.dumps(
        {"type": "step", "data": {"action_type": action_type, "argument": argument}}
    )


def reset(**data) -> str:
    return json.dumps({"type": "reset", "data": data})


def case(case_id, frame, *outcomes, after_reset=False) -> pytest.param:
    """One frame, the outcomes allowed, and whether an episode is running first."""
    return pytest.param(frame, set(outcomes), after_reset, id=case_id)


FRAMES = [
    # Not JSON, or not a JSON object.
    case("invalid-json", "{", ERROR),
    case("empty-text", "", ERROR),
    case("truncated-json", '{"type": "step", "data": {', ERROR),
    case("json-null", "null", ERROR, CLOSE),
    case("json-list", "[]", ERROR, CLOSE),
    case("json-number", "123", ERROR, CLOSE),
    case("json-string", '"reset"', ERROR, CLOSE),
    case("deeply-nested-json", "[" * 100_000 + "]" * 100_000, ERROR, CLOSE),
    case("nan-literal", '{"type": "step", "data": {"argument": NaN}}', ERROR),
    # Unknown or missing message types.
    case("unknown-type", '{"type": "nope"}', ERROR),
    case("missing-type", "{}", ERROR),
    case("type-is-number", '{"type": 5}', ERROR),
    case("type-is-null", '{"type": null}', ERROR),
    case("type-is-list", '{"type": ["reset"]}', ERROR, CLOSE),
    case("type-lone-surrogate", '{"type": "\\ud800"}', ERROR),
    case("mcp-garbage", '{"type": "mcp", "data": {"x": 1}}', ERROR),
    # Steps with wrong field types.
    case("step-no-data", '{"type": "step"}', ERROR),
    case("step-data-string", '{"type": "step", "data": "DESCRIBE singer"}', ERROR),
    case("step-data-list", '{"type": "step", "data": ["QUERY"]}', ERROR),
    case("step-action-number", step(5, "singer"), ERROR),
    case("step-action-lowercase", step("describe", "singer"), ERROR),
    case("step-action-unknown", step("DROP", "singer"), ERROR),
    case("step-argument-number", step("DESCRIBE", 123), ERROR),
    case("step-argument-null", step("QUERY", None), ERROR),
    case("step-argument-list", step("QUERY", ["SELECT 1"]), ERROR),
    case("step-argument-object", step("QUERY", {"sql": "SELECT 1"}), ERROR),
    case(
        "step-extra-field",
        '{"type": "step", "data": {"action_type": "QUERY", "argument": "SELECT 1",'
        ' "evil": true}}',
        ERROR,
    ),
    case(
        "step-metadata-injection",
        '{"type": "step", "data": {"action_type": "ANSWER", "argument": "1",'
        ' "metadata": {"gold": "x"}}}',
        ERROR,
        OBSERVATION,
        after_reset=True,
    ),
    # Resets with wrong arguments.
    case("reset-unknown-question", reset(question_id="spider/dev/999999"), ERROR),
    case("reset-question-number", reset(question_id=123), ERROR),
    case("reset-unknown-split", reset(split="test"), ERROR),
    case("reset-split-number", reset(split=1), ERROR),
    case("reset-path-db", reset(split="dev", db_id="../../etc/passwd"), ERROR),
    case("reset-unknown-reward", reset(reward_mode="dense"), ERROR),
    case("reset-index-negative", reset(split="dev", index=-1), ERROR),
    case("reset-index-huge", reset(split="dev", index=10**30), ERROR),
    case("reset-hardness-number", reset(split="dev", hardness=5), ERROR),
    case("reset-unknown-kwarg", reset(evil=1), ERROR, OBSERVATION),
    case("reset-seed-string", reset(seed="abc", split="dev"), ERROR, OBSERVATION),
    case("reset-seed-float", reset(seed=1.5, split="dev"), ERROR, OBSERVATION),
    case("reset-data-list", '{"type": "reset", "data": [1, 2]}', ERROR),
    case("reset-episode-id-1mb", reset(episode_id="e" * 1_000_000), ERROR, OBSERVATION),
    # Before any reset: an error, never a crash.
    case("step-before-reset", step("DESCRIBE", "singer"), ERROR, OBS_ERROR),
    case("query-before-reset", step("QUERY", "SELECT 1"), ERROR, OBS_ERROR),
    case("answer-before-reset", step("ANSWER", "[]"), ERROR, OBS_ERROR),
    # Big and odd frames.
    # Frames over the guard's limit get FRAME_TOO_LARGE; the session goes on.
    case(
        "sql-10mb",
        step("QUERY", "SELECT " + "1+" * 5_000_000 + "1"),
        ERROR,
        after_reset=True,
    ),
    case(
        "answer-10mb",
        step("ANSWER", json.dumps(["x" * 1000] * 10_000)),
        ERROR,
        after_reset=True,
    ),
    case(
        "answer-over-the-cap",
        step("ANSWER", json.dumps(["x" * 1000] * 1_100)),
        OBS_ERROR,
        after_reset=True,
    ),
    case(
        "sql-over-sqlite-limit",
        step("QUERY", "SELECT " + "1+" * 60_000 + "1"),
        OBS_ERROR,
        after_reset=True,
    ),
    case("table-1mb", step("DESCRIBE", "t" * 1_000_000), OBS_ERROR, after_reset=True),
    case(
        "sql-lone-surrogate",
        step("QUERY", "SELECT '\ud800'"),
        OBS_ERROR,
        after_reset=True,
    ),
    case("oversized-frame-20mb", "x" * (20 * 2**20), CLOSE),
    case("binary-frame", b"\x00\x01\x02", ERROR, CLOSE),
    case("binary-json", b'{"type": "state"}', ERROR, CLOSE),
    case("invalid-utf8-text", ("text", b"\xff\xfe\xfd"), CLOSE),
    case("close-message", '{"type": "close"}', CLOSE),
]


def outcome_of(client: WireClient, frame) -> tuple[str, dict | None]:
    """Send one frame and classify the server's answer."""
    try:
        if isinstance(frame, tuple):  # raw bytes sent as a text frame
            client.ws.send(frame[1], text=True)
        else:
            client.send(frame)
        reply = client.recv(REPLY_TIMEOUT_S)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"socket dropped without a close frame: {exc}"
        return CLOSE, None
    if reply["type"] == "mcp" and reply["data"].get("error"):
        return ERROR, reply  # a JSON-RPC error answer on the MCP channel
    if reply["type"] == "observation":
        obs = reply["data"]["observation"]
        return (OBS_ERROR if obs.get("error") else OBSERVATION), reply
    return reply["type"], reply


def assert_plays(server: ServerProcess) -> None:
    """The server is healthy and a fresh session plays a step."""
    assert server.alive(), server.log_tail()
    assert server.healthy()
    with WireClient(server.ws_url) as client:
        reply = client.reset(split="dev", db_id="concert_singer", seed=0)
        assert reply["type"] == "observation", reply
        reply = client.step("DESCRIBE", "singer")
        assert not reply["data"]["observation"]["error"], reply


@pytest.fixture(scope="module")
def server(spider_data_dir: Path):
    with make_server(spider_data_dir, MAX_CONCURRENT_ENVS="16") as server:
        yield server


def test_frame_table_is_broad():
    assert len(FRAMES) >= 40


@pytest.mark.parametrize(("frame", "allowed", "after_reset"), FRAMES)
def test_bad_frame_gets_error_or_clean_close(server, frame, allowed, after_reset):
    with WireClient(server.ws_url) as client:
        if after_reset:
            reply = client.reset(split="dev", db_id="concert_singer", seed=0)
            assert reply["type"] == "observation", reply
        outcome, reply = outcome_of(client, frame)
        assert outcome in allowed, (outcome, reply)
        if outcome == ERROR and reply["data"].get("code") == "SESSION_ERROR":
            # OpenEnv answers frames it cannot route (not a JSON object, a binary
            # frame) with SESSION_ERROR and then closes the socket cleanly.
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(REPLY_TIMEOUT_S)
            assert closed.value.rcvd is not None
        elif outcome != CLOSE:
            # The session survives a bad frame: it still plays.
            reply = client.reset(split="dev", db_id="concert_singer", seed=0)
            assert reply["type"] == "observation", reply
            reply = client.step("SAMPLE", "singer")
            assert not reply["data"]["observation"]["error"], reply
    assert_plays(server)


def test_pipelined_reset_storm(server):
    """500 resets sent without waiting: 500 observations, in order, then play."""
    with WireClient(server.ws_url) as client:
        for seed in range(500):
            client.send({"type": "reset", "data": {"split": "dev", "seed": seed}})
        replies = [client.recv(REPLY_TIMEOUT_S) for _ in range(500)]
        assert all(r["type"] == "observation" for r in replies)
        reply = client.step("QUERY", "SELECT 1")
        assert not reply["data"]["observation"]["error"], reply
    assert_plays(server)


def test_parallel_reset_storms(server):
    """12 sessions reset 100 times each at once; every reply is an observation."""

    def storm(worker: int) -> int:
        with WireClient(server.ws_url) as client:
            bad = 0
            for i in range(100):
                reply = client.reset(split="dev", seed=worker * 1000 + i)
                bad += reply["type"] != "observation"
            return bad

    with ThreadPoolExecutor(12) as pool:
        assert sum(pool.map(storm, range(12))) == 0
    assert_plays(server)


def test_sessions_beyond_capacity_are_refused_cleanly(server):
    """17 sockets on a 16-session server: one CAPACITY_REACHED, then all play on."""
    clients = [WireClient(server.ws_url) for _ in range(16)]
    try:
        for client in clients:
            assert client.reset(split="dev", seed=0)["type"] == "observation"
        with WireClient(server.ws_url) as extra:
            reply = extra.recv(REPLY_TIMEOUT_S)
            assert reply["type"] == "error", reply
            assert reply["data"]["code"] == "CAPACITY_REACHED", reply
    finally:
        for client in clients:
            client.close()
    assert_plays(server)


HTTP_GARBAGE = [
    ("POST", "/reset", b"{"),
    ("POST", "/reset", b'{"question_id": 5}'),
    ("POST", "/reset", b'{"split": "nope"}'),
    ("POST", "/step", b"[]"),
    ("POST", "/step", b'{"action": {"action_type": "DROP", "argument": "x"}}'),
    ("POST", "/step", b'{"action": {"action_type": "QUERY", "argument": 5}}'),
    ("POST", "/step", b'{"action": {"action_type": "QUERY", "argument": "SELECT 1"}}'),
    ("POST", "/mcp", b"not json"),
    ("POST", "/mcp", b'{"jsonrpc": "2.0", "method": "tools/call", "id": 1}'),
    ("POST", "/sql_env/task", b'{"split": "dev", "index": -1}'),
    ("POST", "/sql_env/task", b'{"split": "dev", "index": 100000000000000000000}'),
    ("POST", "/sql_env/task_range", b'{"split": "dev", "start": "a"}'),
    ("POST", "/sql_env/num_tasks", b'{"split": "../../etc"}'),
    ("GET", "/sql_env/splits", None),
    ("GET", "/nope/splits", None),
    ("GET", "/state", None),
    ("GET", "/metadata", None),
    ("GET", "/schema", None),
    ("GET", "/../../etc/passwd", None),
    ("GET", "/ws", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    HTTP_GARBAGE,
    ids=[f"{m}-{p}-{i}" for i, (m, p, _) in enumerate(HTTP_GARBAGE)],
)
def test_http_garbage_is_a_client_error(server, method, path, body):
    request = urllib.request.Request(
        server.base_url + path,
        data=body,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=REPLY_TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status < 500, (method, path, status)
    assert server.alive()
