"""The server app: health, metadata, schema, task API, and episodes over ``/ws``.

Fast tests run the app in-process on the tiny data. Slow tests start the real server
(``uvicorn sql_env.server.app:app``, as the image runs it) and talk to it over the
network.
"""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import websockets
from fastapi.testclient import TestClient

from sql_env import SQLEnvClient
from sql_env.benchmarks.server_process import sqlenv_server
from sql_env.server.app import build_app
from sql_env.server.question_bank import bank_path, load_bank

CAPACITY = 64


@pytest.fixture(scope="module")
def client(tiny_data_dir: Path) -> TestClient:
    with TestClient(build_app(tiny_data_dir, max_concurrent_envs=4)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def server_url(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with sqlenv_server(
        tiny_data_dir,
        log_path=log,
        MAX_CONCURRENT_ENVS=str(CAPACITY),
        SESSION_TIMEOUT_S="60",
    ) as server:
        yield server.base_url


def gold_texts(data_dir: Path) -> list[str]:
    """Every gold SQL string of the bank (to check that nothing serves one)."""
    bank = load_bank(data_dir)
    return [q.gold_sql for split in ("train", "dev") for q in bank.all(split)]


# ---------------------------------------------------------------- in-process


def test_health_is_healthy_when_data_is_loaded(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_health_is_unhealthy_without_data(tmp_path: Path) -> None:
    with TestClient(build_app(tmp_path / "nothing")) as empty:
        response = empty.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert "make data" in body["detail"]


def test_health_is_unhealthy_when_a_database_is_missing(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "data"
    (broken / "spider").mkdir(parents=True)
    (broken / "spider" / "bank.sqlite").symlink_to(bank_path(tiny_data_dir))
    with TestClient(build_app(broken)) as test_client:
        response = test_client.get("/health")
    assert response.status_code == 503
    assert "missing" in response.json()["detail"]


def test_metadata_describes_the_environment(client: TestClient) -> None:
    metadata = client.get("/metadata").json()
    assert metadata["name"] == "sql_env"
    assert "DESCRIBE" in metadata["description"]
    assert metadata["version"]


def test_schema_shows_the_action_and_state(client: TestClient) -> None:
    schema = client.get("/schema").json()
    action = schema["action"]["properties"]
    assert action["action_type"]["enum"] == ["DESCRIBE", "SAMPLE", "QUERY", "ANSWER"]
    assert action["argument"]["description"]
    assert "budget_remaining" in schema["observation"]["properties"]
    assert "total_reward" in schema["state"]["properties"]


def test_task_api_serves_questions_without_gold(
    client: TestClient, tiny_data_dir: Path
) -> None:
    splits = client.get("/sql_env/splits").json()
    assert {s["name"] for s in splits} == {"spider/train", "spider/dev"}
    count = client.post("/sql_env/num_tasks", json={"split": "dev"}).json()
    assert count["num_tasks"] == len(load_bank(tiny_data_dir).eligible("dev"))
    task = client.post("/sql_env/task", json={"split": "dev", "index": 0}).json()
    assert task["task"]["id"].startswith("spider/dev/")
    assert task["task"]["question"]
    tasks = client.post(
        "/sql_env/task_range", json={"split": "dev", "start": 0, "stop": 100}
    ).json()["tasks"]
    assert len(tasks) == count["num_tasks"]
    served = json.dumps(tasks) + json.dumps(task)
    assert not [sql for sql in gold_texts(tiny_data_dir) if sql in served]
    assert "gold" not in served


def test_task_api_rejects_an_index_out_of_range(client: TestClient) -> None:
    response = client.post("/sql_env/task", json={"split": "dev", "index": 10_000})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"question_id": "spider/dev/999999"}, id="unknown-question"),
        pytest.param({"split": "test"}, id="unknown-split"),
        pytest.param({"split": "dev", "db_id": "nope"}, id="unknown-db"),
        pytest.param({"split": "dev", "index": 1.5}, id="float-index"),
        pytest.param({"question_id": ["spider/dev/0"]}, id="list-question-id"),
        pytest.param({"db_id": ["a", "b"]}, id="list-db-id"),
        pytest.param({"seed": "seven"}, id="text-seed"),
        pytest.param({"reward_mode": 1}, id="number-reward-mode"),
        pytest.param({"episode_id": "x" * 10_000}, id="huge-episode-id"),
    ],
)
def test_http_reset_with_a_bad_argument_is_a_4xx(client: TestClient, body) -> None:
    response = client.post("/reset", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["detail"]


def test_http_reset_returns_a_first_observation(client: TestClient) -> None:
    response = client.post("/reset", json={"split": "dev", "seed": 3})
    assert response.status_code == 200
    assert response.json()["observation"]["question"]


def test_ws_reset_and_step_in_process(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "reset", "data": {"split": "dev", "index": 0}})
        reset = ws.receive_json()
        assert reset["type"] == "observation"
        table = reset["data"]["observation"]["tables"][0]
        ws.send_json(
            {"type": "step", "data": {"action_type": "DESCRIBE", "argument": table}}
        )
        step = ws.receive_json()["data"]
        assert step["observation"]["result"].startswith(f"Table {table}")
        assert step["done"] is False


# ----------------------------------------------------------------- live server


@pytest.mark.slow
def test_reset_arguments_pass_through_the_websocket(
    server_url: str, tiny_data_dir: Path
) -> None:
    bank = load_bank(tiny_data_dir)
    named = bank.eligible("dev")[1]
    train_db = bank.db_ids("train")[0]
    with SQLEnvClient(base_url=server_url).sync() as env:
        obs = env.reset(question_id=named.id).observation
        assert (obs.question_id, obs.question) == (named.id, named.question)

        obs = env.reset(split="train", db_id=train_db).observation
        assert obs.db_id == train_db and obs.question_id.startswith("spider/train/")

        env.reset(split="dev", index=2, reward_mode="shaped")
        state = env.state()
        assert state.question_id == bank.eligible("dev")[2].id
        assert (state.split, state.reward_mode) == ("dev", "shaped")

        first = [env.reset(split="dev", seed=7).observation.question_id for _ in "ab"]
    with SQLEnvClient(base_url=server_url).sync() as other:
        again = other.reset(split="dev", seed=7).observation.question_id
    assert first[0] == first[1] == again


@pytest.mark.slow
def test_bad_reset_argument_is_an_error_and_the_session_lives_on(
    server_url: str,
) -> None:
    with SQLEnvClient(base_url=server_url).sync() as env:
        with pytest.raises(RuntimeError, match="Unknown question_id"):
            env.reset(question_id="spider/dev/999999")
        assert env.reset(split="dev").observation.question


async def _play_tagged_session(url: str, number: int, question, barrier) -> dict:
    """One session: its own question, a query that echoes its tag, its gold answer."""
    async with SQLEnvClient(base_url=url, message_timeout_s=120) as env:
        await barrier.wait()  # every session is open before any plays
        obs = (await env.reset(question_id=question.id)).observation
        tag = f"session-{number}"
        echoed = (await env.query(f"SELECT '{tag}' AS tag")).observation
        answer = json.dumps([list(row) for row in question.gold_rows])
        final = await env.answer(answer)
        state = await env.state()
        await barrier.wait()  # every session has played ...
        await barrier.wait()  # ... and stays open until the 65th was tried
    return {
        "question_id": obs.question_id,
        "state_question_id": state.question_id,
        "echo": echoed.result,
        "tag": tag,
        "reward": final.reward,
        "correct": final.observation.answer_correct,
    }


@pytest.mark.slow
def test_64_concurrent_sessions_play_without_crosstalk_and_65th_is_refused(
    server_url: str, tiny_data_dir: Path
) -> None:
    bank = load_bank(tiny_data_dir)
    questions = bank.eligible("dev") + bank.eligible("train")

    async def run() -> tuple[list[dict], str]:
        barrier = asyncio.Barrier(CAPACITY + 1)
        sessions = [
            asyncio.create_task(
                _play_tagged_session(
                    server_url, i, questions[i % len(questions)], barrier
                )
            )
            for i in range(CAPACITY)
        ]
        await barrier.wait()  # all 64 connected
        await barrier.wait()  # all 64 played and still connected
        refused = ""
        try:
            async with SQLEnvClient(base_url=server_url) as extra:
                await extra.reset()
        except RuntimeError as exc:
            refused = str(exc)
        finally:
            await barrier.wait()  # let the 64 close
        return await asyncio.gather(*sessions), refused

    results, refused = asyncio.run(run())
    assert "CAPACITY_REACHED" in refused
    for number, result in enumerate(results):
        expected = questions[number % len(questions)].id
        assert result["question_id"] == result["state_question_id"] == expected
        assert result["tag"] in result["echo"]
        assert result["echo"].count("session-") == 1
        assert (result["reward"], result["correct"]) == (1.0, True), result
    with SQLEnvClient(base_url=server_url).sync() as env:  # slots were freed
        assert env.reset(split="dev").observation.question


@pytest.mark.slow
def test_malformed_frames_get_error_frames_and_the_session_continues(
    server_url: str,
) -> None:
    ws_url = server_url.replace("http://", "ws://") + "/ws"

    async def run() -> list[dict]:
        replies = []
        async with websockets.connect(ws_url) as ws:
            frames = [
                json.dumps({"type": "reset", "data": {"split": "dev", "index": 0}}),
                "{not json",
                json.dumps({"type": "teleport"}),
                json.dumps({"type": "step", "data": {"action_type": "DROP"}}),
                json.dumps(
                    {
                        "type": "step",
                        "data": {"action_type": "QUERY", "argument": "x", "extra": 1},
                    }
                ),
                json.dumps({"type": "reset", "data": {"question_id": "nope"}}),
                json.dumps(
                    {"type": "step", "data": {"action_type": "QUERY", "argument": "x;"}}
                ),
                json.dumps(
                    {
                        "type": "step",
                        "data": {"action_type": "QUERY", "argument": "SELECT 41 + 1"},
                    }
                ),
                json.dumps({"type": "state"}),
            ]
            for frame in frames:
                await ws.send(frame)
                replies.append(json.loads(await ws.recv()))
        return replies

    replies = asyncio.run(run())
    kinds = [(r["type"], r["data"].get("code")) for r in replies]
    assert kinds == [
        ("observation", None),
        ("error", "INVALID_JSON"),
        ("error", "UNKNOWN_TYPE"),
        ("error", "VALIDATION_ERROR"),
        ("error", "VALIDATION_ERROR"),
        ("error", "EXECUTION_ERROR"),
        ("observation", None),
        ("observation", None),
        ("state", None),
    ]
    bad_sql, good = replies[6]["data"], replies[7]["data"]
    assert bad_sql["observation"]["error"] and not bad_sql["done"]
    assert "42" in good["observation"]["result"]
    assert good["observation"]["step_count"] == 2
    assert replies[8]["data"]["step_count"] == 2


@pytest.mark.slow
def test_openenv_validate_url_passes_against_the_live_server(server_url: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openenv.cli",
            "validate",
            "--url",
            server_url,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True, report


@pytest.mark.slow
def test_idle_session_is_reaped_and_frees_its_slot(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    settings = {"MAX_CONCURRENT_ENVS": "1", "SESSION_TIMEOUT_S": "1"}
    with sqlenv_server(
        tiny_data_dir, log_path=tmp_path / "server.log", **settings
    ) as server:
        url, ws_url = server.base_url, server.ws_url

        async def run() -> tuple[str, str]:
            async with websockets.connect(ws_url) as idle:
                await idle.send(json.dumps({"type": "reset", "data": {}}))
                await idle.recv()
                async with SQLEnvClient(base_url=url) as second:
                    with pytest.raises(RuntimeError) as refused:
                        await second.reset()
                await asyncio.sleep(6.5)  # OpenEnv's reaper runs every 5 s at least
                async with SQLEnvClient(base_url=url) as third:
                    obs = (await third.reset(split="dev")).observation
            return str(refused.value), obs.question

        refused, question = asyncio.run(run())
    assert "CAPACITY_REACHED" in refused
    assert question
