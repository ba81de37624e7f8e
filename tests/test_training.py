"""The TRL wrapper, warm-start data and GRPO over the real environment.

Fast tests drive ``SQLToolEnv`` and the SFT data builder on ``tiny_data_dir``.
The slow ones train the tiny offline model for real: SFT on gold trajectories,
then GRPO steps through ``environment_factory`` against the in-process
environment, and an episode over WebSocket against a uvicorn server.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sql_env.benchmarks.server_process import sqlenv_server
from sql_env.server.question_bank import load_bank
from sql_env.training.data import (
    QuestionArguments,
    fetch_splits,
    fetch_tasks,
    select_questions,
)
from sql_env.training.environment import (
    TOOL_NAMES,
    EpisodeOverError,
    SQLToolEnv,
    check_session_capacity,
    tool_schemas,
)
from sql_env.training.prompts import answer_json, question_text
from sql_env.training.rollout import OraclePolicy, run_episode
from sql_env.training.settings import EpisodeSettings
from tests.test_datasets_play import multi_data  # noqa: F401 (fixture)

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def first_question(data_dir: Path, split: str = "train"):
    return select_questions(load_bank(data_dir), split)[0]


def test_tool_env_plays_gold_answer_to_reward(tiny_data_dir: Path) -> None:
    question = first_question(tiny_data_dir)
    with SQLToolEnv(tiny_data_dir) as env:
        text = env.reset(question_id=question.id, split="train", prompt=[], db_id="x")
        assert question.question in text and "Tables:" in text
        assert "Columns" in env.describe(question.tables_used[0])
        assert "Steps left" in env.query(question.gold_sql)
        assert "correct" in env.answer(answer_json(question.gold_rows))
        assert env.done and env.success and env.get_reward() == 1.0


def test_tool_env_reports_agent_errors_as_text(tiny_data_dir: Path) -> None:
    with SQLToolEnv(tiny_data_dir) as env:
        env.reset(question_id=first_question(tiny_data_dir).id)
        assert env.describe("no_such_table").startswith("Error: Unknown table")
        assert env.query("DELETE FROM student").startswith("Error:")
        assert env.error_count == 2 and not env.done


def test_reset_settings_reach_the_environment(tiny_data_dir: Path) -> None:
    question_id = first_question(tiny_data_dir).id
    with SQLToolEnv(tiny_data_dir, reset_settings={"difficulty": "impossible"}) as env:
        with pytest.raises(ValueError, match="impossible"):
            env.reset(seed=0)
        # A row's own settings override the constructor's.
        env.reset(seed=0, reset_settings={"difficulty": None})
        assert env.observation.question_id
    with SQLToolEnv(tiny_data_dir) as env:
        with pytest.raises(ValueError, match="per_row"):
            env.reset(question_id=question_id, reset_settings={"per_row": 1})


def test_tool_after_answer_raises_for_trl(tiny_data_dir: Path) -> None:
    with SQLToolEnv(tiny_data_dir) as env:
        env.reset(question_id=first_question(tiny_data_dir).id)
        env.answer("[[0]]")
        assert env.done and not env.success and env.get_reward() == 0.0
        with pytest.raises(EpisodeOverError, match="episode is over"):
            env.sample("student")


def test_tool_env_accepts_json_values_for_answer(tiny_data_dir: Path) -> None:
    question = first_question(tiny_data_dir)
    with SQLToolEnv(tiny_data_dir) as env:
        env.reset(question_id=question.id)
        env.answer([list(row) for row in question.gold_rows])
        assert env.success


def test_only_the_four_actions_are_tools() -> None:
    public = {
        name
        for name, member in vars(SQLToolEnv).items()
        if callable(member) and not name.startswith("_")
    }
    assert public - {"reset", "get_reward"} == set(TOOL_NAMES)
    # GRPOTrainer lists them as inspect.getmembers does: by name.
    assert TOOL_NAMES == ("answer", "describe", "query", "sample")
    assert [s["function"]["name"] for s in tool_schemas()] == list(TOOL_NAMES)
    schemas = {s["function"]["name"]: s["function"] for s in tool_schemas()}
    assert schemas["query"]["parameters"]["required"] == ["sql"]
    assert schemas["describe"]["parameters"]["properties"]["table_name"]["description"]


def test_oracle_plans_from_the_bank_not_from_observations(tiny_data_dir: Path) -> None:
    question = first_question(tiny_data_dir, "dev")
    with SQLToolEnv(tiny_data_dir, split="dev") as env:
        env.reset(question_id=question.id)
        start = env.observation.model_dump_json()
        episode = run_episode(env, OraclePolicy(tiny_data_dir), question)
    assert question.gold_sql not in start
    assert episode.success and episode.reward == 1.0
    assert episode.messages[-1] == {"role": "assistant", "content": "Done."}


@pytest.fixture(scope="module")
def warm_tiny_model(tiny_data_dir: Path):
    """The tiny model after SFT on the tiny train split's gold trajectories."""
    from sql_env.training.models import build_tiny_model
    from sql_env.training.recipes import recipe_for_device, sft_config
    from sql_env.training.sft import run_sft, sft_dataset

    model, tokenizer = build_tiny_model(seed=0)
    dataset = sft_dataset(
        select_questions(load_bank(tiny_data_dir), "train"), tiny_data_dir
    )
    config = sft_config(
        recipe_for_device("cpu"),
        str(tiny_data_dir.parent / "sft_out"),
        max_steps=40,
        lr_scheduler_type="constant",
        per_device_train_batch_size=len(dataset),
        disable_tqdm=True,
        seed=0,
    )
    return run_sft(model, tokenizer, dataset, config), tokenizer


@pytest.mark.slow
def test_grpo_steps_reach_environment_and_log(
    warm_tiny_model, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from trl import GRPOConfig

    from sql_env.training.grpo import train_grpo

    model, tokenizer = warm_tiny_model
    questions = select_questions(load_bank(tiny_data_dir), "train")
    config = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=96,
        max_tool_calling_iterations=4,
        max_steps=3,
        learning_rate=1e-4,
        beta=0.0,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    result = train_grpo(model, tokenizer, questions * 4, config, data_dir=tiny_data_dir)

    assert [r["step"] for r in result.records] == [1, 2, 3]
    for record in result.records:
        assert math.isfinite(record["reward"]) and 0.0 <= record["success"] <= 1.0
    # Tool calls were parsed from the model and executed as environment steps.
    assert sum(r["tool_calls"] for r in result.records) > 0
    assert sum(r["env_steps"] for r in result.records) > 0
    logged = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert logged == result.records
    assert result.curve_path.stat().st_size > 1000


@pytest.fixture(scope="module")
def two_session_server(tiny_data_dir: Path):
    """A uvicorn SQLEnv server on the tiny data that holds two sessions."""
    with sqlenv_server(
        tiny_data_dir, MAX_CONCURRENT_ENVS="2", SESSION_TIMEOUT_S="60"
    ) as server:
        yield server.base_url


@pytest.mark.slow
def test_episode_over_websocket_matches_in_process(
    two_session_server: str, tiny_data_dir: Path
) -> None:
    question = first_question(tiny_data_dir, "dev")
    with SQLToolEnv(env_url=two_session_server, split="dev") as env:
        remote = run_episode(env, OraclePolicy(tiny_data_dir), question)
    with SQLToolEnv(tiny_data_dir, split="dev") as env:
        local = run_episode(env, OraclePolicy(tiny_data_dir), question)
    assert remote.success and remote.messages == local.messages


@pytest.mark.slow
def test_session_capacity_check_names_the_limit(two_session_server: str) -> None:
    check_session_capacity(two_session_server, 2)
    with pytest.raises(RuntimeError, match="accepted 2 concurrent sessions"):
        check_session_capacity(two_session_server, 3)


@pytest.mark.slow
def test_task_api_lists_the_playable_questions(
    two_session_server: str, tiny_data_dir: Path
) -> None:
    bank = load_bank(tiny_data_dir)
    for split in ("train", "dev"):
        tasks = fetch_tasks(two_session_server, split)
        assert [(t.id, t.db_id, t.difficulty) for t in tasks] == [
            (q.id, q.db_id, q.difficulty) for q in bank.eligible(split)
        ]


@pytest.mark.slow
def test_grpo_against_a_server_needs_no_local_data(
    two_session_server: str, tmp_path: Path
) -> None:
    out = tmp_path / "grpo"
    subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "train_grpo.py"),
            *("--env_url", two_session_server, "--model", "tiny"),
            *("--data_dir", str(tmp_path / "no_data_here")),
            *("--max_steps", "1", "--max_completion_length", "32"),
            *("--per_device_train_batch_size", "2", "--num_generations", "2"),
            *("--output_dir", str(out)),
        ],
        check=True,
        cwd=tmp_path,
    )
    (record,) = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    assert record["step"] == 1 and math.isfinite(record["reward"])
    assert not (tmp_path / "no_data_here").exists()


def test_make_sft_data_saves_a_reloadable_dataset(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    from datasets import load_from_disk

    subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "make_sft_data.py"),
            *("--data_dir", str(tiny_data_dir), "--out", str(tmp_path)),
        ],
        check=True,
    )
    dataset = load_from_disk(str(tmp_path / "dataset"))
    assert len(dataset) == len(load_bank(tiny_data_dir).eligible("train"))
    call = dataset[0]["messages"][2]["tool_calls"][0]["function"]
    assert call == {
        "name": "describe",
        "arguments": {"table_name": call["arguments"]["table_name"]},
    }
    assert [t["function"]["name"] for t in json.loads(dataset[0]["tools"])] == list(
        TOOL_NAMES
    )
    assert json.loads((tmp_path / "sample.json").read_text())["question_id"]


# ----------------------------------------------------- datasets and settings


@pytest.mark.parametrize("answer", ["value", "sql"])
@pytest.mark.parametrize("schema", ["hidden", "given"])
def test_question_text_shows_what_the_settings_show(
    multi_data: Path,  # noqa: F811 (the fixture)
    schema: str,
    answer: str,
) -> None:
    bank = load_bank(multi_data, "bird")
    question = next(q for q in bank.eligible("dev") if q.evidence)
    for evidence in (True, False):
        settings = EpisodeSettings("bird", schema, answer, evidence)
        with SQLToolEnv(multi_data, reset_settings=settings.reset_kwargs()) as env:
            text = env.reset(question_id=question.id)
            observation = env.observation
        assert text == question_text(observation)
        # The environment's instructions, verbatim, come first: one source.
        assert text.startswith(observation.instructions + "\n")
        assert f"ANSWER({answer})" in text
        assert ("the BIRD rule" in text) is (answer == "sql")
        assert f"Question: {question.question}" in text
        assert (f"Evidence: {question.evidence}" in text) is evidence
        assert ("CREATE TABLE" in text) is (schema == "given")
        assert ("Tables: " in text) is (schema == "hidden")


def test_answer_tool_schema_covers_both_answer_formats() -> None:
    answer = next(s for s in tool_schemas() if s["function"]["name"] == "answer")
    described = answer["function"]["parameters"]["properties"]["value"]["description"]
    assert "JSON" in described and "SELECT statement" in described


def test_grpo_rows_carry_the_settings_to_reset(
    multi_data: Path,  # noqa: F811 (the fixture)
) -> None:
    from sql_env.training.grpo import grpo_dataset

    settings = EpisodeSettings("custom", "given", "sql", evidence=False)
    questions = QuestionArguments(dataset="custom", data_dir=multi_data).questions(
        "train", None, seed=0
    )
    rows = grpo_dataset(questions, settings)
    assert rows[0]["reset_settings"] == settings.reset_kwargs()
    with SQLToolEnv(multi_data) as env:
        for row in rows:  # as GRPOTrainer calls it: every column
            env.reset(**row)
            assert env.observation.question_id == row["question_id"]
            assert env.observation.db_schema and not env.observation.evidence
            assert "ANSWER(sql)" in env.observation.instructions


@pytest.mark.parametrize("dataset", ["spider", "bird", "custom"])
def test_sft_data_answers_the_gold_sql_with_the_schema_given(
    multi_data: Path,  # noqa: F811 (the fixture)
    dataset: str,
) -> None:
    from sql_env.training.sft import sft_dataset

    bank = load_bank(multi_data, dataset)
    questions = select_questions(bank, "dev")
    settings = EpisodeSettings(dataset, "given", "sql")
    data = sft_dataset(questions, multi_data, settings=settings)
    assert len(data) == len(questions)
    for row, question in zip(data, questions, strict=True):
        calls = [m["tool_calls"][0]["function"] for m in row["messages"][2::2][:-1]]
        # The schema is given: no describe; the answer is the gold SQL itself.
        assert [c["name"] for c in calls] == ["query", "answer"]
        assert calls[-1]["arguments"] == {"value": question.gold_sql}


def test_selection_refuses_splits_and_levels_of_other_datasets(
    multi_data: Path,  # noqa: F811 (the fixture)
) -> None:
    bird = load_bank(multi_data, "bird")
    with pytest.raises(ValueError, match="Unknown split 'test' of bird"):
        select_questions(bird, "test")
    args = QuestionArguments(dataset="bird", data_dir=multi_data, difficulty="hard")
    with pytest.raises(ValueError, match="choose from simple, moderate, challenging"):
        args.questions("dev", None, seed=0)
    args.difficulty = "moderate,simple"
    picked = args.questions("dev", None, seed=0, curriculum=True)
    assert [q.difficulty for q in picked] == sorted(
        (q.difficulty for q in picked), key=bird.levels.index
    )
    assert {q.difficulty for q in picked} == {"simple", "moderate"}


@pytest.fixture(scope="module")
def multi_data_server(multi_data: Path):  # noqa: F811 (the fixture)
    """A uvicorn SQLEnv server on the three datasets."""
    with sqlenv_server(multi_data, MAX_CONCURRENT_ENVS="2") as server:
        yield server.base_url


@pytest.mark.slow
def test_task_api_selects_by_dataset_over_a_server(
    multi_data_server: str,
    multi_data: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    assert "bird/dev" in fetch_splits(multi_data_server)
    bank = load_bank(multi_data, "bird")
    tasks = fetch_tasks(multi_data_server, "dev", "bird")
    assert [(t.id, t.difficulty, t.evidence) for t in tasks] == [
        (q.id, q.difficulty, q.evidence) for q in bank.eligible("dev")
    ]
    # No local data: splits and levels come from the server.
    args = QuestionArguments(dataset="bird", data_dir=tmp_path / "none")
    picked = args.questions("dev", None, 0, curriculum=True, env_url=multi_data_server)
    assert [q.difficulty for q in picked] == sorted(
        (q.difficulty for q in picked), key=[*bank.levels, ""].index
    )
    with pytest.raises(ValueError, match="has no split 'bird/test'; it serves"):
        args.questions("test", None, 0, env_url=multi_data_server)
    args.difficulty = "easy"
    with pytest.raises(ValueError, match="Unknown difficulty 'easy'"):
        args.questions("dev", None, 0, env_url=multi_data_server)
    # An episode over the server in the evaluation's settings.
    settings = EpisodeSettings("bird", "given", "sql")
    with SQLToolEnv(
        env_url=multi_data_server, reset_settings=settings.reset_kwargs()
    ) as env:
        episode = run_episode(env, OraclePolicy(multi_data, "sql"), tasks[0])
    assert episode.success and episode.answer == bank.get(tasks[0].id).gold_sql
