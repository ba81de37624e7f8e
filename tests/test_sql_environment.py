"""The episode state machine, checked like Gymnasium's env checker would."""

import json
from pathlib import Path

import pytest

from sql_env.models import SQLAction, SQLObservation
from sql_env.server.question_bank import load_bank
from sql_env.server.rewards import STEP_COST
from sql_env.server.sql_environment import SQLEnvironment

COUNT_QID = "spider/dev/0"  # SELECT count(*) FROM customer -> 6
ORDERED_QID = "spider/dev/1"  # names from France ORDER BY name -> Ann, Cleo


def act(kind: str, argument: str = "") -> SQLAction:
    return SQLAction(action_type=kind, argument=argument)


@pytest.fixture
def env(tiny_data_dir: Path):
    environment = SQLEnvironment(tiny_data_dir)
    yield environment
    environment.close()


def check_invariants(obs: SQLObservation, env: SQLEnvironment) -> None:
    assert obs.step_count == env.state.step_count
    assert obs.budget_remaining == env.max_steps - obs.step_count
    assert len(obs.history) == obs.step_count
    assert obs.reward is not None and -1.0 <= obs.reward <= 1.0
    assert obs.done == env.state.done
    assert obs.tables == ["customer", "orders"]


def test_contract_every_action_then_step_after_done(env: SQLEnvironment) -> None:
    obs = env.reset(question_id=COUNT_QID)
    assert obs.question == "How many customers are there?"
    assert obs.db_id == "shop" and obs.tables == ["customer", "orders"]
    assert obs.step_count == 0 and obs.budget_remaining == 15 and not obs.done
    assert "customer" in obs.result

    budget = obs.budget_remaining
    for action in (
        act("DESCRIBE", "customer"),
        act("SAMPLE", "orders"),
        act("QUERY", "SELECT count(*) FROM customer"),
    ):
        obs = env.step(action)
        check_invariants(obs, env)
        assert not obs.done and not obs.error
        assert obs.budget_remaining == budget - 1
        budget = obs.budget_remaining

    obs = env.step(act("ANSWER", "6"))
    check_invariants(obs, env)
    assert obs.done and not obs.truncated and obs.answer_correct is True
    assert obs.reward == 1.0

    after = env.step(act("QUERY", "SELECT 1"))
    assert after.done and "reset" in after.error and after.reward == 0.0
    assert env.state.step_count == 4


def test_describe_lists_columns_keys_and_rows(env: SQLEnvironment) -> None:
    env.reset(question_id=COUNT_QID)
    text = env.step(act("DESCRIBE", "orders")).result
    assert "Table orders (6 rows)" in text
    assert "- order_id INTEGER, primary key" in text
    assert "- customer_id -> customer.id" in text


@pytest.mark.parametrize("name", ["customer", "CUSTOMER", ' "customer" ', "`customer`"])
def test_table_names_are_forgiving(env: SQLEnvironment, name: str) -> None:
    env.reset(question_id=COUNT_QID)
    assert env.step(act("DESCRIBE", name)).error == ""


def test_sample_shows_first_five_rows_of_all(env: SQLEnvironment) -> None:
    env.reset(question_id=COUNT_QID)
    text = env.step(act("SAMPLE", "customer")).result
    assert text.splitlines()[0] == "id | name | country | score"
    assert len(text.splitlines()) == 7
    assert text.endswith("(showing 5 of 6 rows)")


@pytest.mark.parametrize(
    "name",
    [
        "nope",
        "",
        "customer; DROP TABLE customer",
        "../../etc/passwd",
        'customer" UNION SELECT sql FROM sqlite_master --',
    ],
)
def test_unknown_table_lists_the_tables(env: SQLEnvironment, name: str) -> None:
    env.reset(question_id=COUNT_QID)
    for kind in ("DESCRIBE", "SAMPLE"):
        obs = env.step(act(kind, name))
        assert obs.error.startswith("Unknown table")
        assert "Tables: customer, orders." in obs.error
        assert not obs.done and obs.result == ""


def test_query_shows_twenty_rows_of_many(env: SQLEnvironment) -> None:
    env.reset(question_id=COUNT_QID)
    obs = env.step(
        act(
            "QUERY",
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
            "WHERE x < 57) SELECT x FROM n",
        )
    )
    lines = obs.result.splitlines()
    assert lines[0] == "x" and lines[1] == "1" and lines[20] == "20"
    assert lines[-1] == "(showing 20 of 57 rows)"


def test_query_output_is_capped(env: SQLEnvironment) -> None:
    env.reset(question_id=COUNT_QID)
    obs = env.step(
        act(
            "QUERY",
            "SELECT hex(zeroblob(500)) AS a, hex(zeroblob(500)) AS b "
            "FROM customer, orders",
        )
    )
    assert len(obs.result) < 4_500
    assert "…" in obs.result and obs.result.endswith("of 36 rows)")


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("DELETE FROM customer", "not allowed"),
        ("SELECT * FROM nope", "no such table"),
        ("SELECT 1; SELECT 2", "one SQL statement"),
        ("PRAGMA writable_schema = 1", "PRAGMA"),
    ],
)
def test_bad_query_is_an_error_and_the_episode_goes_on(
    env: SQLEnvironment, sql: str, fragment: str
) -> None:
    env.reset(question_id=COUNT_QID)
    obs = env.step(act("QUERY", sql))
    assert fragment in obs.error and not obs.done and obs.step_count == 1
    assert env.step(act("ANSWER", "6")).reward == 1.0


def test_query_deadline_is_enforced(tiny_data_dir: Path) -> None:
    environment = SQLEnvironment(tiny_data_dir, query_timeout_s=0.2)
    environment.reset(question_id=COUNT_QID)
    obs = environment.step(
        act(
            "QUERY",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT max(x) FROM c",
        )
    )
    assert "longer than 0.2 s" in obs.error and not obs.done
    environment.close()


def test_budget_exhaustion_truncates_episode(tiny_data_dir: Path) -> None:
    environment = SQLEnvironment(tiny_data_dir, max_steps=3)
    environment.reset(question_id=COUNT_QID)
    for _ in range(2):
        assert not environment.step(act("QUERY", "SELECT 6")).done
    obs = environment.step(act("QUERY", "SELECT 6"))
    assert obs.done and obs.truncated and obs.reward == 0.0
    assert obs.answer_correct is None and "budget exhausted" in obs.result
    assert environment.state.truncated and environment.state.done
    assert "reset" in environment.step(act("ANSWER", "6")).error


def test_answer_on_last_step_is_terminated_not_truncated(tiny_data_dir: Path) -> None:
    environment = SQLEnvironment(tiny_data_dir, max_steps=2)
    environment.reset(question_id=COUNT_QID)
    environment.step(act("DESCRIBE", "customer"))
    obs = environment.step(act("ANSWER", "6"))
    assert obs.done and not obs.truncated and obs.reward == 1.0


def test_wrong_answer_ends_episode_with_zero(env: SQLEnvironment) -> None:
    env.reset(question_id=ORDERED_QID)
    obs = env.step(act("ANSWER", '["Cleo", "Ann"]'))
    assert obs.done and obs.reward == 0.0 and obs.answer_correct is False


def test_same_seed_gives_same_questions(tiny_data_dir: Path) -> None:
    def questions(seed: int) -> list[str]:
        environment = SQLEnvironment(tiny_data_dir)
        ids = [environment.reset(seed=seed, split="dev").question_id]
        ids += [environment.reset(split="dev").question_id for _ in range(9)]
        return ids

    assert questions(7) == questions(7)
    # Another seed draws another sequence: the seed is used, not just accepted.
    assert questions(7) != questions(8)


def test_reset_by_index_follows_the_task_list(env: SQLEnvironment) -> None:
    task = env.get_task("dev", 2)
    assert env.reset(split="dev", index=2).question_id == task["id"]
    assert env.num_tasks("dev") == 6 == env.num_tasks("spider/dev")
    assert env.list_splits() == ["spider/dev", "spider/train"]
    assert len(env.get_task_range("dev", 1, 3)) == 2


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"question_id": "spider/dev/999"}, "Unknown question_id"),
        ({"question_id": "spider/dev/6"}, "excluded"),
        ({"split": "test"}, "Unknown split"),
        ({"split": "dev", "db_id": "nowhere"}, "Unknown db_id"),
        ({"split": "train", "db_id": "shop"}, r"belongs to split\(s\) dev"),
        ({"hardness": "impossible"}, "Unknown difficulty"),
        ({"difficulty": "impossible"}, "Unknown difficulty"),
        ({"dataset": "nowhere"}, "Unknown dataset"),
        ({"schema": "partial"}, "schema: Input should be"),
        ({"answer": "code"}, "answer: Input should be"),
        ({"reward_mode": "dense"}, "reward_mode: Input should be 'binary'"),
        ({"split": "dev", "index": 1.5}, "index: Input should be a valid int"),
        ({"question_id": ["spider/dev/0"]}, "question_id: Input should be"),
        ({"seed": "7"}, "seed: Input should be a valid int"),
        ({"split": "dev", "index": 99}, "out of range"),
        ({"questoin_id": "spider/dev/0"}, "unknown reset argument 'questoin_id'"),
    ],
)
def test_bad_reset_arguments_are_clear_errors(
    env: SQLEnvironment, kwargs: dict, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        env.reset(**kwargs)


def test_step_before_reset_is_an_error(env: SQLEnvironment) -> None:
    obs = env.step(act("QUERY", "SELECT 1"))
    assert "reset" in obs.error and obs.done


def test_shaped_rewards_credit_progress_and_keep_the_correct_answer_on_top(
    env: SQLEnvironment,
) -> None:
    env.reset(question_id=ORDERED_QID, reward_mode="shaped")
    near = env.step(
        act("QUERY", "SELECT name FROM customer WHERE country IN ('France', 'USA')")
    )
    exact = env.step(
        act("QUERY", "SELECT name FROM customer WHERE country = 'France' ORDER BY name")
    )
    done = env.step(act("ANSWER", '["Ann", "Cleo"]'))
    assert near.reward > 0 and exact.reward > 0  # closer each time
    assert done.reward == pytest.approx(1.0 - STEP_COST)
    assert env.state.rewards == [near.reward, exact.reward, done.reward]
    assert env.state.total_reward == pytest.approx(0.2 - 3 * STEP_COST + 1.0)

    env.reset(question_id=ORDERED_QID, reward_mode="shaped")
    env.step(
        act("QUERY", "SELECT name FROM customer WHERE country = 'France' ORDER BY name")
    )
    wrong = env.step(act("ANSWER", "Ann"))
    assert wrong.done and env.state.total_reward < 0.2


def test_binary_rewards_are_zero_until_a_correct_answer(env: SQLEnvironment) -> None:
    env.reset(question_id=ORDERED_QID)
    rewards = [
        env.step(act("QUERY", "SELECT name FROM customer ORDER BY name")).reward,
        env.step(act("ANSWER", "Ann\nCleo")).reward,
    ]
    assert rewards == [0.0, 1.0]


def test_no_observation_or_state_contains_the_gold(tiny_data_dir: Path) -> None:
    bank = load_bank(tiny_data_dir)
    environment = SQLEnvironment(tiny_data_dir)
    for question in bank.eligible("dev") + bank.eligible("train"):
        payloads = [environment.reset(question_id=question.id)]
        for action in (
            act("DESCRIBE", question.tables_used[0]),
            act("QUERY", "SELECT 1"),
            act("ANSWER", "wrong"),
        ):
            payloads.append(environment.step(action))
        payloads.append(environment.state)
        text = " ".join(json.dumps(p.model_dump()) for p in payloads)
        assert question.gold_sql not in text
        assert json.dumps([list(r) for r in question.gold_rows]) not in text
    environment.close()


def test_history_lines_name_action_and_outcome(env: SQLEnvironment) -> None:
    env.reset(question_id=COUNT_QID)
    env.step(act("DESCRIBE", "customer"))
    env.step(act("QUERY", "SELECT nope FROM customer"))
    obs = env.step(act("QUERY", "SELECT count(*) FROM customer"))
    assert obs.history == [
        "DESCRIBE customer -> Table customer (6 rows)",
        "QUERY SELECT nope FROM customer -> error: SQL error: no such column: nope",
        "QUERY SELECT count(*) FROM customer -> 1 row",
    ]


@pytest.mark.parametrize("kind", ["DESCRIBE", "SAMPLE", "QUERY", "ANSWER"])
def test_lone_surrogate_is_an_error_and_the_episode_survives(
    env: SQLEnvironment, kind: str
) -> None:
    env.reset(question_id=COUNT_QID)
    obs = env.step(act(kind, "customer\ud800"))
    assert "not valid Unicode" in obs.error and not obs.done
    json.dumps(obs.model_dump())  # serialisable: the session can go on
    assert env.step(act("ANSWER", "6")).reward == 1.0


def test_one_operation_at_a_time_a_reset_waits_for_a_running_answer(
    tiny_data_dir: Path,
) -> None:
    """Two coroutines on one environment (two clicks, two frames) never overlap."""
    import asyncio

    env = SQLEnvironment(tiny_data_dir)
    env.reset(question_id=COUNT_QID)

    async def race() -> tuple[SQLObservation, SQLObservation]:
        answer = asyncio.ensure_future(
            env.step_async(act("ANSWER", "6" + " " * 900_000))
        )
        await asyncio.sleep(0)  # the answer is in flight when the reset arrives
        reset = asyncio.ensure_future(env.reset_async(question_id=ORDERED_QID))
        return await answer, await reset

    answered, fresh = asyncio.run(race())
    assert answered.answer_correct is True and answered.reward == 1.0
    assert answered.question_id == COUNT_QID
    assert fresh.question_id == ORDERED_QID and fresh.step_count == 0
    assert env.state.rewards == [] and env.state.question_id == ORDERED_QID
    env.close()


def test_a_closed_environment_refuses_to_play(tiny_data_dir: Path) -> None:
    env = SQLEnvironment(tiny_data_dir)
    env.reset(question_id=COUNT_QID)
    env.close()
    env.close()
    assert "closed" in env.step(act("DESCRIBE", "customer")).error
    with pytest.raises(ValueError, match="closed"):
        env.reset(question_id=COUNT_QID)


def test_sql_runs_in_worker_processes_not_in_this_one(tiny_data_dir: Path) -> None:
    import os

    env = SQLEnvironment(tiny_data_dir)
    env.reset(question_id=COUNT_QID)
    before = env.pool.stats.jobs
    assert "6" in env.step(act("QUERY", "SELECT count(*) FROM customer")).result
    assert env.pool.stats.jobs == before + 1
    pids = env.pool.worker_pids()
    assert pids and os.getpid() not in pids


def test_schema_given_puts_create_table_statements_in_the_reset(
    env: SQLEnvironment,
) -> None:
    given = env.reset(question_id=COUNT_QID, schema="given")
    assert given.db_schema.startswith("CREATE TABLE customer (")
    assert "FOREIGN KEY (customer_id) REFERENCES customer (id)" in given.db_schema
    assert "schema is given" in given.instructions
    assert env.state.schema_mode == "given"
    after = env.step(act("DESCRIBE", "orders"))
    assert after.db_schema == "" and after.instructions == ""
    hidden = env.reset(question_id=COUNT_QID)
    assert hidden.db_schema == "" and "schema is given" not in hidden.instructions


@pytest.mark.parametrize(
    ("sql", "correct", "reading"),
    [
        pytest.param(
            "SELECT name FROM customer WHERE country = 'France' ORDER BY name",
            True,
            "ran: 2 rows x 1 columns",
            id="gold",
        ),
        pytest.param(
            "SELECT name FROM customer WHERE country = 'France' ORDER BY name DESC",
            False,
            "ran: 2 rows x 1 columns",
            id="order-flipped",
        ),
        pytest.param(
            "SELECT name FROM customer", False, "ran: 6 rows x 1 columns", id="more"
        ),
        pytest.param(
            "SELECT nope FROM customer", False, "no such column", id="sql-error"
        ),
        pytest.param("DELETE FROM customer", False, "the SQL failed", id="write"),
    ],
)
def test_answers_by_sql_are_run_and_scored_by_the_official_rule(
    env: SQLEnvironment, sql: str, correct: bool, reading: str
) -> None:
    start = env.reset(question_id=ORDERED_QID, answer="sql")
    assert "ANSWER(sql)" in start.instructions and "Spider" in start.instructions
    obs = env.step(act("ANSWER", sql))
    assert obs.done and not obs.error and obs.answer_correct is correct
    assert reading in obs.result
    assert obs.reward == (1.0 if correct else 0.0)


def test_an_answer_by_sql_that_runs_past_the_deadline_scores_zero(
    tiny_data_dir: Path,
) -> None:
    env = SQLEnvironment(tiny_data_dir, query_timeout_s=0.3)
    env.reset(question_id=COUNT_QID, answer="sql")
    obs = env.step(
        act(
            "ANSWER",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c",
        )
    )
    assert obs.done and obs.answer_correct is False and "longer than" in obs.result


def test_answers_by_value_say_how_they_were_read_and_nothing_of_the_gold(
    env: SQLEnvironment,
) -> None:
    env.reset(question_id=ORDERED_QID)
    obs = env.step(act("ANSWER", '["Ann", "Bob"]'))
    assert obs.answer_correct is False and "read as" in obs.result
    assert "Cleo" not in obs.result and "2 rows" not in obs.result.split("read as")[0]


def test_instructions_describe_the_episode_for_a_newcomer(env: SQLEnvironment) -> None:
    text = env.reset(question_id=COUNT_QID).instructions
    for word in ("DESCRIBE", "SAMPLE", "QUERY", "ANSWER(value)", "15 steps"):
        assert word in text
