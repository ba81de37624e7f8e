"""The environment's contract, checked the same way in-process and over ``/ws``.

In the spirit of Gymnasium's env checker: reset, every action type, ANSWER, a step
after the end, with the observation invariants at each step; and determinism: the
same seed gives the same questions and the same observations, also after an
unseeded run. Each check runs on the in-process ``SQLEnvironment`` (what TRL and
evaluation use) and through the app's real ``/ws`` route (Starlette's TestClient,
the same ASGI stack uvicorn serves), so the two transports cannot drift apart.
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi.testclient import TestClient

from sql_env.models import SQLAction, SQLObservation
from sql_env.server.app import build_app
from sql_env.server.sql_environment import MAX_STEPS, SQLEnvironment

COUNT_QID = "spider/dev/0"  # SELECT count(*) FROM customer -> 6


class Player(Protocol):
    def reset(self, **kwargs: Any) -> SQLObservation: ...

    def step(self, action_type: str, argument: str) -> SQLObservation: ...

    def state(self) -> dict[str, Any]: ...


class InProcess:
    def __init__(self, data_dir: Path) -> None:
        self.env = SQLEnvironment(data_dir)

    def reset(self, **kwargs: Any) -> SQLObservation:
        return self.env.reset(**kwargs)

    def step(self, action_type: str, argument: str) -> SQLObservation:
        return self.env.step(SQLAction(action_type=action_type, argument=argument))

    def state(self) -> dict[str, Any]:
        return self.env.state.model_dump()


class OverWebSocket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def _observation(self, reply: dict[str, Any]) -> SQLObservation:
        assert reply["type"] == "observation", reply
        data = reply["data"]
        return SQLObservation.model_validate(
            {**data["observation"], "done": data["done"], "reward": data["reward"]}
        )

    def reset(self, **kwargs: Any) -> SQLObservation:
        self.ws.send_json({"type": "reset", "data": kwargs})
        return self._observation(self.ws.receive_json())

    def step(self, action_type: str, argument: str) -> SQLObservation:
        data = {"action_type": action_type, "argument": argument}
        self.ws.send_json({"type": "step", "data": data})
        return self._observation(self.ws.receive_json())

    def state(self) -> dict[str, Any]:
        self.ws.send_json({"type": "state"})
        return self.ws.receive_json()["data"]


@pytest.fixture(scope="module")
def app_client(tiny_data_dir: Path) -> Iterator[TestClient]:
    with TestClient(build_app(tiny_data_dir, max_concurrent_envs=8)) as client:
        yield client


@pytest.fixture(params=["in-process", "websocket"])
def players(request, tiny_data_dir: Path, app_client: TestClient):
    """A factory of players on one transport; sockets closed at the end."""
    with contextlib.ExitStack() as sockets:

        def make() -> Player:
            if request.param == "in-process":
                return InProcess(tiny_data_dir)
            return OverWebSocket(
                sockets.enter_context(app_client.websocket_connect("/ws"))
            )

        yield make


def check(obs: SQLObservation, state: dict[str, Any], *, done: bool) -> None:
    assert obs.step_count == state["step_count"]
    assert obs.budget_remaining == MAX_STEPS - obs.step_count
    assert len(obs.history) == obs.step_count
    assert obs.reward is not None and -0.21 <= obs.reward <= 1.19
    assert obs.done is done == state["done"]
    assert obs.tables == ["customer", "orders"]


def test_every_action_then_a_step_after_the_end(players) -> None:
    player = players()
    obs = player.reset(question_id=COUNT_QID)
    assert obs.step_count == 0 and not obs.done and obs.instructions
    assert obs.result == "Database shop has tables: customer, orders."
    for action_type, argument in (
        ("DESCRIBE", "customer"),
        ("SAMPLE", "orders"),
        ("QUERY", "SELECT count(*) FROM customer"),
        ("QUERY", "SELECT nope FROM customer"),
    ):
        obs = player.step(action_type, argument)
        check(obs, player.state(), done=False)
        assert bool(obs.error) is (argument == "SELECT nope FROM customer")
        assert obs.instructions == "" and obs.db_schema == ""
    obs = player.step("ANSWER", "6")
    check(obs, player.state(), done=True)
    assert obs.answer_correct is True and obs.reward == 1.0
    after = player.step("QUERY", "SELECT 1")
    assert after.done and "reset" in after.error and after.reward == 0.0
    assert player.state()["step_count"] == 5


def test_the_budget_truncates(players) -> None:
    player = players()
    player.reset(question_id=COUNT_QID)
    for _ in range(MAX_STEPS - 1):
        assert not player.step("DESCRIBE", "customer").done
    last = player.step("DESCRIBE", "customer")
    assert last.done and last.truncated and last.answer_correct is None


def _episode(player: Player, **reset: Any) -> list[dict[str, Any]]:
    """A seeded reset and three steps; everything but the random episode id."""
    observations = [player.reset(**reset)]
    table = observations[0].tables[0]
    for action_type, argument in (
        ("DESCRIBE", table),
        ("SAMPLE", table),
        ("QUERY", f'SELECT count(*) FROM "{table}"'),
    ):
        observations.append(player.step(action_type, argument))
    return [o.model_dump() for o in observations]


def test_the_same_seed_gives_the_same_questions_and_observations(players) -> None:
    first, second = players(), players()
    runs = []
    for player in (first, second):
        seeded = _episode(player, seed=11, split="dev")
        more = [player.reset(split="dev").question_id for _ in range(12)]
        runs.append((seeded, more))
    assert runs[0] == runs[1]
    other = players()
    assert [other.reset(seed=12, split="dev").question_id] + [
        other.reset(split="dev").question_id for _ in range(12)
    ] != [runs[0][0][0]["question_id"]] + runs[0][1]


def test_a_seeded_run_after_an_unseeded_one_is_the_seeded_run(players) -> None:
    fresh, used = players(), players()
    for _ in range(5):
        used.reset(split="dev")  # unseeded: any questions
        used.step("QUERY", "SELECT 1")
    assert _episode(fresh, seed=3, split="dev") == _episode(used, seed=3, split="dev")
