"""``SQLEnvClient`` against the real server: typed results, helpers in every mode."""

import asyncio
import json
from pathlib import Path

import pytest

from sql_env import SQLEnvClient
from sql_env.benchmarks.server_process import sqlenv_server
from sql_env.models import SQLObservation, SQLState
from sql_env.server.question_bank import Question, load_bank
from tests.e2e.play_episode import play


@pytest.fixture(scope="module")
def server_url(tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with sqlenv_server(tiny_data_dir, log_path=log, SQLENV_MAX_STEPS="4") as server:
        yield server.base_url


@pytest.fixture(scope="module")
def question(tiny_data_dir: Path) -> Question:
    return load_bank(tiny_data_dir).eligible("dev")[0]


def gold_answer(question: Question) -> str:
    return json.dumps([list(row) for row in question.gold_rows])


def test_parse_result_gives_a_typed_observation() -> None:
    client = SQLEnvClient(base_url="http://127.0.0.1:1")
    payload = {
        "observation": {"question": "Q?", "tables": ["t"], "answer_correct": True},
        "reward": 1.0,
        "done": True,
    }
    result = client._parse_result(payload)
    assert isinstance(result.observation, SQLObservation)
    assert result.observation.tables == ["t"]
    assert (result.reward, result.done) == (1.0, True)
    assert (result.observation.reward, result.observation.done) == (1.0, True)


def test_step_payload_is_the_action_fields() -> None:
    from sql_env.models import SQLAction

    client = SQLEnvClient(base_url="http://127.0.0.1:1")
    payload = client._step_payload(SQLAction(action_type="QUERY", argument="SELECT 1"))
    assert payload == {"action_type": "QUERY", "argument": "SELECT 1"}


@pytest.mark.slow
def test_sync_client_plays_an_episode_to_a_correct_answer(
    server_url: str, question: Question
) -> None:
    with SQLEnvClient(base_url=server_url).sync() as env:
        result = play(env, question)
        state = env.state()
    assert isinstance(result.observation, SQLObservation)
    assert isinstance(state, SQLState)
    assert state.answer_correct is True and state.total_reward == 1.0
    assert state.step_count == 4 and state.done


@pytest.mark.slow
def test_async_client_helpers_are_awaitable(
    server_url: str, question: Question
) -> None:
    async def run() -> tuple[SQLObservation, SQLObservation, SQLState]:
        async with SQLEnvClient(base_url=server_url) as env:
            obs = (await env.reset(question_id=question.id)).observation
            described = (await env.describe(obs.tables[0])).observation
            await env.sample(obs.tables[0])
            await env.query("SELECT 1")
            final = (await env.answer(gold_answer(question))).observation
            return described, final, await env.state()

    described, final, state = asyncio.run(run())
    assert described.result.startswith("Table ")
    assert final.answer_correct is True and final.reward == 1.0
    assert state.step_count == 4


@pytest.mark.slow
def test_plain_client_helpers_work_synchronously(
    server_url: str, question: Question
) -> None:
    with SQLEnvClient(base_url=server_url) as env:
        obs = env.reset(question_id=question.id).observation
        sampled = env.sample(obs.tables[0]).observation
        answered = env.act("ANSWER", gold_answer(question))
    assert sampled.result.splitlines()[-1].startswith("(")
    assert answered.observation.answer_correct is True


@pytest.mark.slow
def test_wrong_answer_scores_zero_and_later_steps_are_errors(
    server_url: str, question: Question
) -> None:
    with SQLEnvClient(base_url=server_url).sync() as env:
        env.reset(question_id=question.id)
        wrong = env.answer("definitely not it")
        after = env.query("SELECT 1")
    assert wrong.done and wrong.reward == 0.0
    assert wrong.observation.answer_correct is False
    assert after.observation.error and after.done


@pytest.mark.slow
def test_step_budget_truncates_the_episode(server_url: str, question: Question) -> None:
    with SQLEnvClient(base_url=server_url).sync() as env:
        env.reset(question_id=question.id)
        steps = [env.query("SELECT 1") for _ in range(4)]  # SQLENV_MAX_STEPS=4
    assert [s.done for s in steps] == [False, False, False, True]
    assert steps[-1].observation.truncated
    assert steps[-1].observation.budget_remaining == 0


@pytest.mark.slow
def test_agent_mistakes_come_back_as_errors_not_exceptions(
    server_url: str, question: Question
) -> None:
    with SQLEnvClient(base_url=server_url).sync() as env:
        env.reset(question_id=question.id)
        unknown = env.describe("no_such_table").observation
        write = env.query("DELETE FROM customer").observation
        syntax = env.query("SELEC oops").observation
    assert "Unknown table" in unknown.error
    assert write.error and syntax.error
    assert not (unknown.done or write.done or syntax.done)
