"""No payload the server sends ever carries a question's gold SQL or gold rows.

Gold data is read from the bank directly (test side). A real server plays many
episodes (dev and train) over WebSocket: reset, DESCRIBE, SAMPLE, a probe QUERY,
a wrong ANSWER, a step after the end, and ``state`` after every move. Every
observation and state is scanned for the gold SQL; those that no agent action
produced (reset, state, the ANSWER outcome, after-the-end) are also scanned for
the gold rows. Then every HTTP route: /metadata, /schema, /health, /openapi.json,
/state, the task API, and /web on a server with the web interface enabled.
"""

import json
import random
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sql_env.benchmarks.server_process import ServerProcess, WireClient
from sql_env.benchmarks.server_process import sqlenv_server as make_server
from sql_env.server.episode_text import instructions
from sql_env.server.question_bank import (
    SPIDER_LEVELS,
    Question,
    QuestionBank,
    load_bank,
)
from sql_env.server.sql_environment import MAX_STEPS

pytestmark = pytest.mark.slow

EPISODES_PER_SPLIT = 100
SEED = 5
ENV_NAME = "sql_env"
PUBLIC_TASK_KEYS = {
    "id",
    "index",
    "dataset",
    "split",
    "db_id",
    "question",
    "evidence",
    "difficulty",
}
GOLD_KEY = re.compile(r"gold", re.IGNORECASE)


def norm(text: str) -> str:
    """Lower case, one space between tokens: formatting cannot hide a match."""
    return " ".join(text.lower().split())


def strings(value) -> Iterator[str]:
    """Every string value inside a decoded JSON value (keys not included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def text_of(payload) -> str:
    """The values of a payload as one normalised text; each value on its line."""
    return norm("\n".join(strings(payload)))


INSTRUCTIONS = instructions(
    schema_mode="hidden",
    answer_mode="value",
    rule="spider",
    max_steps=MAX_STEPS,
    evidence=False,
)


def secret_values(question: Question, bank: QuestionBank) -> set[str]:
    """Gold cells an observation could not show by chance: long, non-numeric, and
    not in the question text, the table names or the ids."""
    public = norm(
        " ".join(
            (question.question, question.db_id, question.id, question.split)
            + SPIDER_LEVELS
            + (INSTRUCTIONS,)  # the same words for every question
        )
    )
    tables = {norm(t) for t in bank.schema(question.db_id).table_names}
    secrets = set()
    for row in question.gold_rows:
        for cell in row:
            if not isinstance(cell, str):
                continue
            value = norm(cell)
            if len(value) < 4 or value in tables or value in public:
                continue
            try:
                float(value)
            except ValueError:
                secrets.add(value)
    return secrets


def assert_no_gold_sql(payload, question: Question, where: str) -> None:
    assert norm(question.gold_sql) not in text_of(payload), (where, question.id)
    assert not any(GOLD_KEY.search(k) for k in keys_of(payload)), (where, payload)


def assert_no_gold_rows(payload, question: Question, secrets: set[str], where: str):
    text = text_of(payload)
    rows = [list(r) for r in question.gold_rows]
    if rows and rows != [[]]:
        assert norm(json.dumps(rows, default=str)) not in text, (where, question.id)
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, (where, question.id, leaked)


def keys_of(value) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from keys_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_of(item)


def sample_questions(bank: QuestionBank) -> list[Question]:
    rng = random.Random(SEED)
    picked = []
    for split in ("dev", "train"):
        pool = sorted(bank.eligible(split), key=lambda q: q.id)
        picked += rng.sample(pool, min(EPISODES_PER_SPLIT, len(pool)))
    return picked


def probe_sql(table: str) -> str:
    quoted = '"' + table.replace('"', '""') + '"'
    return f"SELECT 1 AS probe FROM {quoted} LIMIT 1"


@pytest.fixture(scope="module")
def bank(spider_data_dir: Path) -> QuestionBank:
    return load_bank(spider_data_dir)


@pytest.fixture(scope="module")
def server(spider_data_dir: Path) -> Iterator[ServerProcess]:
    with make_server(spider_data_dir, MAX_CONCURRENT_ENVS="8") as server:
        yield server


def play_and_scan(client: WireClient, question: Question, bank: QuestionBank) -> int:
    """One episode; returns how many payloads were scanned."""
    secrets = secret_values(question, bank)
    scanned = 0

    def check(reply: dict, where: str, rows_too: bool) -> dict:
        nonlocal scanned
        assert reply["type"] in ("observation", "state"), reply
        assert_no_gold_sql(reply, question, where)
        if rows_too:
            data = reply["data"]
            payload = dict(data.get("observation", data))
            payload.pop("history", None)  # lines echo the agent's own results
            assert_no_gold_rows(payload, question, secrets, where)
        scanned += 1
        state = client.state()
        assert_no_gold_sql(state, question, where + "/state")
        assert_no_gold_rows(state, question, secrets, where + "/state")
        scanned += 1
        return reply

    obs = check(client.reset(question_id=question.id), "reset", True)
    tables = obs["data"]["observation"]["tables"]
    table = question.tables_used[0] if question.tables_used else tables[0]
    check(client.step("DESCRIBE", table), "describe", False)
    check(client.step("SAMPLE", table), "sample", False)
    if norm(probe_sql(table)) != norm(question.gold_sql):
        check(client.step("QUERY", probe_sql(table)), "query", False)
    end = check(client.step("ANSWER", "[]"), "answer", True)
    assert end["data"]["done"], end
    check(client.step("QUERY", "SELECT 1"), "after-end", True)
    return scanned


def test_episodes_never_show_gold(server: ServerProcess, bank: QuestionBank):
    questions = sample_questions(bank)
    assert len(questions) >= 2 * EPISODES_PER_SPLIT * 0.9
    with WireClient(server.ws_url) as client:
        scanned = sum(play_and_scan(client, q, bank) for q in questions)
    assert scanned >= 10 * len(questions)


def get(server: ServerProcess, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.base_url + path,
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read().decode()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def assert_no_gold_in(payload, bank: QuestionBank, where: str) -> None:
    """No gold SQL of any question, and no key naming gold data."""
    text = norm(payload if isinstance(payload, str) else json.dumps(payload))
    assert "gold_sql" not in text and "gold_rows" not in text, where
    text = norm(payload) if isinstance(payload, str) else text_of(payload)
    for split in ("dev", "train"):
        for question in bank.all(split):
            assert norm(question.gold_sql) not in text, (where, question.id)


def assert_public_tasks(tasks: list[dict], bank: QuestionBank, where: str) -> None:
    assert tasks, where
    for task in tasks:
        assert set(task) <= PUBLIC_TASK_KEYS, (where, task)
        question = bank.get(task["id"])
        text = text_of(task)
        assert norm(question.gold_sql) not in text, (where, task)
        secrets = secret_values(question, bank)
        assert not [s for s in secrets if s in text], (where, task)


@pytest.mark.parametrize(
    "path", ["/metadata", "/schema", "/health", "/openapi.json", "/state"]
)
def test_info_routes_never_show_gold(server: ServerProcess, bank, path: str):
    assert_no_gold_in(get(server, path), bank, path)


def test_task_api_never_shows_gold(server: ServerProcess, bank: QuestionBank):
    splits = get(server, f"/{ENV_NAME}/splits")
    assert {s["name"] for s in splits} == {"spider/dev", "spider/train"}
    for split in ("dev", "train", "spider/dev"):
        count = get(server, f"/{ENV_NAME}/num_tasks", {"split": split})["num_tasks"]
        assert count == len(bank.eligible(split.removeprefix("spider/")))
        tasks = get(server, f"/{ENV_NAME}/tasks", {"split": split})["tasks"]
        assert len(tasks) == count
        assert_public_tasks(tasks, bank, f"tasks/{split}")
        one = get(server, f"/{ENV_NAME}/task", {"split": split, "index": 0})["task"]
        assert_public_tasks([one], bank, f"task/{split}")
        some = get(
            server,
            f"/{ENV_NAME}/task_range",
            {"split": split, "start": 0, "stop": 50},
        )["tasks"]
        assert_public_tasks(some, bank, f"task_range/{split}")


def test_web_interface_never_shows_gold(spider_data_dir: Path, bank: QuestionBank):
    with make_server(
        spider_data_dir,
        ENABLE_WEB_INTERFACE="true",
        GRADIO_ANALYTICS_ENABLED="False",
    ) as server:
        scanned = 0
        for path in ("/web/", "/web/config", "/web/info", "/metadata", "/schema"):
            try:
                payload = get(server, path)
            except urllib.error.HTTPError as exc:
                assert exc.code == 404, (path, exc.code)
                continue
            assert_no_gold_in(payload, bank, path)
            scanned += 1
        assert scanned >= 3
