"""The TRL wrapper, warm-start data and GRPO over the real environment.

Fast tests drive ``SQLToolEnv`` and the SFT data builder on ``tiny_data_dir``.
The slow ones train the tiny offline model for real: SFT on gold trajectories,
then GRPO steps through ``environment_factory`` against the in-process
environment, and an episode over WebSocket against a uvicorn server.
"""

import json
import math
import os
from pathlib import Path

import pytest

from sql_env.benchmarks.server_process import sqlenv_server
from sql_env.server.question_bank import load_bank
from sql_env.training.data import select_questions
from sql_env.training.environment import (
    TOOL_NAMES,
    EpisodeOverError,
    SQLToolEnv,
    check_session_capacity,
    tool_schemas,
)
from sql_env.training.prompts import answer_json, training_prompt
from sql_env.training.rollout import OraclePolicy, run_episode

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
    schemas = {s["function"]["name"]: s["function"] for s in tool_schemas()}
    assert schemas["query"]["parameters"]["required"] == ["sql"]
    assert schemas["describe"]["parameters"]["properties"]["table_name"]["description"]


def test_sft_data_renders_like_grpo_prompts(tiny_data_dir: Path) -> None:
    from sql_env.training.models import build_tiny_tokenizer
    from sql_env.training.sft import sft_dataset

    questions = select_questions(load_bank(tiny_data_dir), "train")
    dataset = sft_dataset(questions, tiny_data_dir)
    assert len(dataset) == len(questions)
    example = dataset[0]
    messages = example["messages"]
    assert [m["role"] for m in messages[:3]] == ["system", "user", "assistant"]
    calls = [m["tool_calls"][0]["function"] for m in messages if m.get("tool_calls")]
    assert [c["name"] for c in calls][-2:] == ["query", "answer"]
    assert all(
        set(c["arguments"]) in ({"table_name"}, {"sql"}, {"value"}) for c in calls
    )

    # TRL renders the tools from the bound methods of the environment.
    tokenizer = build_tiny_tokenizer()
    env = SQLToolEnv(tiny_data_dir)
    trl_tools = [getattr(env, name) for name in TOOL_NAMES]
    prompt = messages[:2]
    from_data = tokenizer.apply_chat_template(
        prompt, tools=json.loads(example["tools"]), tokenize=False
    )
    like_trl = tokenizer.apply_chat_template(prompt, tools=trl_tools, tokenize=False)
    assert from_data == like_trl
    assert training_prompt()[0] == prompt[0]


def test_oracle_plans_from_the_bank_not_from_observations(tiny_data_dir: Path) -> None:
    question = first_question(tiny_data_dir, "dev")
    with SQLToolEnv(tiny_data_dir, split="dev") as env:
        env.reset(question_id=question.id)
        start = env.observation.model_dump_json()
        episode = run_episode(env, OraclePolicy(tiny_data_dir), question)
    assert question.gold_sql not in start
    assert episode.success and episode.reward == 1.0
    assert episode.messages[-1] == {"role": "assistant", "content": "Done."}


def test_tiny_model_builds_with_tool_template() -> None:
    from trl.chat_template_utils import supports_tool_calling

    from sql_env.training.models import build_tiny_model

    model, tokenizer = build_tiny_model()
    assert supports_tool_calling(tokenizer)
    assert sum(p.numel() for p in model.parameters()) < 300_000
    ids = tokenizer("<tool_call>x</tool_call>")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "<tool_call>"


@pytest.fixture(scope="module")
def warm_tiny_model(tiny_data_dir: Path):
    """The tiny model after SFT on the tiny train split's gold trajectories."""
    from trl import SFTConfig

    from sql_env.training.models import build_tiny_model
    from sql_env.training.sft import run_sft, sft_dataset

    model, tokenizer = build_tiny_model(seed=0)
    dataset = sft_dataset(
        select_questions(load_bank(tiny_data_dir), "train"), tiny_data_dir
    )
    config = SFTConfig(
        output_dir=str(tiny_data_dir.parent / "sft_out"),
        max_steps=40,
        learning_rate=2e-2,
        lr_scheduler_type="constant",
        per_device_train_batch_size=len(dataset),
        assistant_only_loss=True,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
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


def test_make_sft_data_saves_a_reloadable_dataset(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    from datasets import load_from_disk

    from sql_env.scripts.make_sft_data import main as make_sft_data

    path = make_sft_data(["--data_dir", str(tiny_data_dir), "--out", str(tmp_path)])
    dataset = load_from_disk(str(path))
    assert len(dataset) == len(load_bank(tiny_data_dir).eligible("train"))
    call = dataset[0]["messages"][2]["tool_calls"][0]["function"]
    assert call == {
        "name": "describe",
        "arguments": {"table_name": call["arguments"]["table_name"]},
    }
    assert json.loads((tmp_path / "sample.json").read_text())["question_id"]
