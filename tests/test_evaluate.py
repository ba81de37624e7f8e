"""scripts/evaluate.py and run_evaluation: baselines in every setting, pass@k,
majority@k, the files written.

The script runs as a user runs it, in a subprocess; the settings matrix and the
sampled metrics run through ``run_evaluation`` on data built by the real build
(Spider, BIRD and a custom dataset side by side, as in test_datasets_play).
Majority@k is checked with a policy whose answers the test controls.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from sql_env.models import ANSWER_MODES, SCHEMA_MODES, SQLObservation
from sql_env.server.question_bank import Question, load_bank
from sql_env.training.answer_groups import BY_READING, BY_RESULT
from sql_env.training.data import QuestionArguments
from sql_env.training.evaluation import format_table, run_evaluation
from sql_env.training.metrics import summarize, wilson_interval
from sql_env.training.plots import plot_policy_comparison
from sql_env.training.prompts import answer_json
from sql_env.training.rollout import (
    FINAL_MESSAGE,
    Episode,
    OraclePolicy,
    RandomPolicy,
    assistant_message,
    tool_call,
)
from sql_env.training.settings import EpisodeSettings
from tests.test_datasets_play import DATASETS, multi_data  # noqa: F401 (fixture)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py"

PLOTS = (
    "success_by_difficulty.png",
    "success_by_database.png",
    "steps_per_episode.png",
)


def run_script(data_dir: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--data_dir", str(data_dir), "--out", str(out), "--no-progress"),
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def run_evaluate(data_dir: Path, out: Path, *args: str) -> dict:
    done = run_script(data_dir, out, *args)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "summary.json").read_text())


def assert_report_written(out: Path, n: int) -> None:
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == n
    assert {"question_id", "success", "messages"} <= set(json.loads(lines[0]))
    for name in PLOTS:
        assert (out / name).stat().st_size > 1000, name


def test_summary_splits_by_database_and_difficulty() -> None:
    def episode(db: str, level: str, success: bool, errors: int = 0) -> Episode:
        episode.count = getattr(episode, "count", 0) + 1
        return Episode(
            f"q{episode.count}",
            db,
            level,
            "p",
            success,
            float(success),
            4,
            errors,
            truncated=not success,
            answered=success,
        )

    summary = summarize(
        [
            episode("a", "easy", True),
            episode("a", "hard", False, errors=2),
            episode("b", "easy", True),
        ]
    )
    assert summary["n"] == 3 and summary["success_rate"] == pytest.approx(2 / 3)
    assert summary["per_database"]["a"] == {
        "n": 2,
        "success_rate": 0.5,
        "ci95": list(wilson_interval(1, 2)),
    }
    assert summary["per_difficulty"]["easy"]["success_rate"] == 1.0
    assert summary["error_rate"] == pytest.approx(2 / 12)
    assert summary["truncation_rate"] == pytest.approx(1 / 3)


def test_oracle_solves_every_tiny_dev_question(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    summary = run_evaluate(
        tiny_data_dir, tmp_path, "--policy", "oracle", "--split", "dev"
    )
    eligible = load_bank(tiny_data_dir).eligible("dev")
    assert summary["n"] == len(eligible) and summary["success_rate"] == 1.0
    assert summary["ci95"][1] == 1.0 and summary["truncation_rate"] == 0.0
    assert_report_written(tmp_path, len(eligible))


def test_sample_is_seeded(tiny_data_dir: Path, tmp_path: Path) -> None:
    def ids(out: Path) -> list[str]:
        run_evaluate(
            tiny_data_dir, out, "--policy", "random", "--n", "3", "--seed", "7"
        )
        lines = (out / "trajectories.jsonl").read_text().splitlines()
        return [json.loads(line)["question_id"] for line in lines]

    assert ids(tmp_path / "a") == ids(tmp_path / "b")


def test_llm_policy_runs_a_local_model(tiny_data_dir: Path, tmp_path: Path) -> None:
    summary = run_evaluate(
        tiny_data_dir,
        tmp_path,
        "--policy",
        "llm",
        "--model",
        "tiny",
        "--n",
        "2",
        "--max_turns",
        "2",
        "--max_new_tokens",
        "8",
    )
    assert summary["n"] == 2 and 0.0 <= summary["success_rate"] <= 1.0
    assert_report_written(tmp_path, 2)


def test_train_logs_become_reward_curves(tiny_data_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "run" / "train_log.jsonl"
    log.parent.mkdir()
    log.write_text(
        "\n".join(
            json.dumps(
                {"step": s, "reward": s / 4, "success": s / 8, "tool_calls": 1.0}
            )
            for s in (1, 2, 3)
        )
    )
    run_evaluate(
        tiny_data_dir,
        tmp_path / "eval",
        "--policy",
        "oracle",
        "--n",
        "2",
        "--train_logs",
        str(log),
    )
    assert (tmp_path / "eval" / "reward_curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_oracle_scores_all_of_spider_dev(spider_data_dir: Path, tmp_path: Path) -> None:
    summary = run_evaluate(
        spider_data_dir, tmp_path, "--policy", "oracle", "--split", "dev"
    )
    assert summary["n"] == len(load_bank(spider_data_dir).eligible("dev"))
    assert summary["success_rate"] == 1.0
    assert_report_written(tmp_path, summary["n"])


@pytest.mark.slow
def test_random_scores_near_zero_on_spider_dev(
    spider_data_dir: Path, tmp_path: Path
) -> None:
    summary = run_evaluate(
        spider_data_dir, tmp_path, "--policy", "random", "--split", "dev", "--n", "300"
    )
    assert summary["n"] == 300 and summary["success_rate"] < 0.05
    assert summary["per_difficulty"] and summary["per_database"]


def test_openai_messages_link_tool_results_to_calls() -> None:
    from sql_env.training.llm_policy import _to_openai
    from sql_env.training.rollout import assistant_message, tool_call

    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q"},
        assistant_message(tool_call("query", sql="SELECT 1")),
        {"role": "tool", "name": "query", "content": "1"},
    ]
    converted = _to_openai(messages)
    call = converted[2]["tool_calls"][0]
    assert call["function"] == {"name": "query", "arguments": '{"sql": "SELECT 1"}'}
    assert converted[3] == {"role": "tool", "tool_call_id": call["id"], "content": "1"}


def test_policy_comparison_plots_bounds_a_hair_past_the_rate(tmp_path: Path) -> None:
    low, high = wilson_interval(0, 3)
    summary = {"n": 3, "success_rate": 0.0, "ci95": [low, high]}
    nudged = {**summary, "ci95": [low + 1e-17, high - 1e-16]}
    path = plot_policy_comparison(
        {"policy": summary, "nudged": nudged}, tmp_path / "c.png"
    )
    assert path.stat().st_size > 1000


# ------------------------------------------------- every dataset and setting


def playable(data_dir: Path, dataset: str) -> list[Question]:
    bank = load_bank(data_dir, dataset)
    return [q for split in bank.splits for q in bank.eligible(split)]


def one_digit(question: Question) -> bool:
    """The only kind of answer the random policy can guess: one integer 0-9."""
    rows = question.gold_rows
    return len(rows) == 1 and len(rows[0]) == 1 and rows[0][0] in range(10)


@pytest.mark.parametrize("answer", ANSWER_MODES)
@pytest.mark.parametrize("schema", SCHEMA_MODES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_oracle_scores_all_and_random_only_guesses_in_every_setting(
    multi_data: Path,  # noqa: F811 (the fixture)
    dataset: str,
    schema: str,
    answer: str,
    tmp_path: Path,
) -> None:
    settings = EpisodeSettings(dataset, schema, answer)
    questions = playable(multi_data, dataset)
    levels = load_bank(multi_data, dataset).levels
    kwargs = dict(settings=settings, samples=2, levels=levels, data_dir=multi_data)
    oracle = run_evaluation(
        OraclePolicy(multi_data, answer),
        questions,
        tmp_path / "oracle",
        progress=False,
        **kwargs,
    ).summary
    assert oracle["n"] == len(questions) >= 3
    assert oracle["success_rate"] == 1.0 and oracle["majority_at_k"]["rate"] == 1.0
    assert oracle["settings"] == settings.reset_kwargs()
    assert list(oracle["per_difficulty"])[: len(levels)] == [
        level for level in levels if level in {q.difficulty for q in questions}
    ]
    random = run_evaluation(
        RandomPolicy(0, answer),
        questions,
        tmp_path / "random",
        progress=False,
        **kwargs,
    ).summary
    trajectories = (tmp_path / "random" / "trajectories.jsonl").read_text()
    won = {
        record["question_id"]
        for record in map(json.loads, trajectories.splitlines())
        if record["success"]
    }
    guessable = {q.id for q in questions if one_digit(q)}
    assert won <= guessable
    assert random["success_rate"] <= len(guessable) / len(questions)
    assert random["success_rate"] < 0.25


# ------------------------------------------------- majority@k, answers controlled


class ScriptedPolicy:
    """Answers at once, with the answer the test picks for each sample."""

    name = "scripted"

    def __init__(self, data_dir: Path, answers: Callable[[Question, int], str]):
        self._bank = load_bank(data_dir)
        self._answers = answers
        self._plays: Counter[str] = Counter()
        self._answer = ""

    def begin(self, observation: SQLObservation) -> None:
        question = self._bank.get(observation.question_id)
        self._answer = self._answers(question, self._plays[question.id])
        self._plays[question.id] += 1

    def act(self, messages: list) -> dict:
        if messages[-1]["role"] == "tool":
            return assistant_message(content=FINAL_MESSAGE)
        return assistant_message(tool_call("answer", value=self._answer))


WRONG = {
    "value": ('[["not a gold value"]]', '["NOT A GOLD VALUE "]'),
    "sql": ("SELECT 'not a gold value'", "SELECT 'not a ' || 'gold value'"),
}


def right(question: Question, answer: str) -> tuple[str, str]:
    """Two right answers that read (or run) the same but are written differently."""
    if answer == "sql":
        return question.gold_sql, f"SELECT * FROM ({question.gold_sql})"
    rows = [list(row) for row in question.gold_rows]
    return answer_json(rows), json.dumps(rows, indent=2)


@pytest.mark.parametrize(
    ("answer", "grouping"), [("value", BY_READING), ("sql", BY_RESULT)]
)
@pytest.mark.parametrize(
    ("plan", "majority"),
    [
        # wrong, then the right answer twice in two spellings: 2 votes to 1.
        pytest.param(("wrong", "right", "right2"), 1.0, id="right-wins"),
        # right once, then one wrong answer twice in two spellings.
        pytest.param(("right", "wrong", "wrong2"), 0.0, id="wrong-wins"),
    ],
)
def test_majority_groups_answers_by_meaning_not_text(
    tiny_data_dir: Path,
    tmp_path: Path,
    answer: str,
    grouping: str,
    plan: tuple[str, ...],
    majority: float,
) -> None:
    def pick(question: Question, sample: int) -> str:
        options = {
            "right": right(question, answer)[0],
            "right2": right(question, answer)[1],
            "wrong": WRONG[answer][0],
            "wrong2": WRONG[answer][1],
        }
        return options[plan[sample]]

    questions = load_bank(tiny_data_dir).eligible("dev")
    report = run_evaluation(
        ScriptedPolicy(tiny_data_dir, pick),
        questions,
        tmp_path,
        settings=EpisodeSettings(answer=answer),
        samples=3,
        data_dir=tiny_data_dir,
        progress=False,
    )
    summary = report.summary
    rights = sum(name.startswith("right") for name in plan)
    assert summary["success_rate"] == pytest.approx(rights / 3)  # spellings are right
    assert summary["pass_at_k"]["rate"] == 1.0
    assert summary["majority_at_k"]["rate"] == majority
    assert summary["majority_grouping"] == grouping
    assert (tmp_path / "pass_at_k.png").stat().st_size > 1000
    # By their text the three answers are three groups: the earliest wins a tie,
    # so the majority follows the first answer, whatever the others mean.
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    episodes = [Episode(**json.loads(line)) for line in lines]
    by_text = summarize(episodes)  # keys: the answers' text
    assert by_text["majority_at_k"]["rate"] == float(plan[0] == "right")


# ------------------------------------------------- the script and its arguments


def test_script_evaluates_bird_with_schema_and_sql_answers_sampled(
    multi_data: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    args = ("--dataset", "bird", "--split", "dev", "--schema", "given")
    args += ("--answer", "sql", "--policy", "oracle", "--samples", "2")
    done = run_script(multi_data, tmp_path, *args)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    bank = load_bank(multi_data, "bird")
    assert summary["n"] == len(bank.eligible("dev")) and summary["samples"] == 2
    assert summary["success_rate"] == 1.0
    assert summary["settings"] == {
        "dataset": "bird",
        "schema": "given",
        "answer": "sql",
        "evidence": True,
    }
    assert summary["pass_at_k"]["rate"] == summary["majority_at_k"]["rate"] == 1.0
    assert format_table(summary) in done.stdout
    assert list(summary["per_difficulty"]) == [
        level
        for level in bank.levels
        if level in {q.difficulty for q in bank.eligible("dev")}
    ]
    assert (tmp_path / "pass_at_k.png").stat().st_size > 1000
    assert_report_written(tmp_path, 2 * summary["n"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("--split", "minidev"),
            "Unknown split 'minidev' of spider; use one of",
            id="split-of-another-dataset",
        ),
        pytest.param(
            ("--dataset", "bird", "--difficulty", "easy"),
            "Unknown difficulty 'easy'; choose from simple, moderate, challenging",
            id="level-of-another-dataset",
        ),
        pytest.param(
            ("--dataset", "nope"),
            "No question bank for dataset 'nope'",
            id="unbuilt-dataset",
        ),
    ],
)
def test_script_checks_split_and_level_against_the_dataset(
    multi_data: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
    args: tuple[str, ...],
    message: str,
) -> None:
    done = run_script(multi_data, tmp_path, *args)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_question_arguments_select_by_the_dataset_levels(
    multi_data: Path,  # noqa: F811 (the fixture)
) -> None:
    args = QuestionArguments(dataset="custom", data_dir=multi_data, answer="sql")
    bank = load_bank(multi_data, "custom")
    ordered = args.questions("train", None, seed=3, curriculum=True)
    levels = [q.difficulty for q in ordered]
    assert levels == sorted(levels, key=[*bank.levels, ""].index)
    assert args.settings() == EpisodeSettings("custom", answer="sql")
    args.difficulty = "L2"
    assert {q.difficulty for q in args.questions("train", None, seed=0)} == {"L2"}
