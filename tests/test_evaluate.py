"""scripts/evaluate.py: baselines, summary statistics and the files it writes.

The script runs as a user runs it, in a subprocess; the statistics and plots
are tested as library functions.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sql_env.server.question_bank import load_bank
from sql_env.training.metrics import summarize, wilson_interval
from sql_env.training.plots import plot_policy_comparison
from sql_env.training.rollout import Episode

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py"

PLOTS = (
    "success_by_difficulty.png",
    "success_by_database.png",
    "steps_per_episode.png",
)


def run_evaluate(data_dir: Path, out: Path, *args: str) -> dict:
    subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--data_dir", str(data_dir), "--out", str(out), "--no-progress"),
            *args,
        ],
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return json.loads((out / "summary.json").read_text())


def assert_report_written(out: Path, n: int) -> None:
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == n
    assert {"question_id", "success", "messages"} <= set(json.loads(lines[0]))
    for name in PLOTS:
        assert (out / name).stat().st_size > 1000, name


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        pytest.param(0, 0, 0.0, 1.0, id="empty"),
        pytest.param(0, 10, 0.0, 0.2775, id="none"),
        pytest.param(10, 10, 0.7225, 1.0, id="all"),
        pytest.param(50, 100, 0.4038, 0.5962, id="half"),
    ],
)
def test_wilson_interval(successes: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-4)


@pytest.mark.parametrize(
    ("successes", "n"),
    [
        pytest.param(0, 3, id="0-of-3"),
        pytest.param(10, 10, id="10-of-10"),
        pytest.param(0, 200, id="0-of-200"),
    ],
)
def test_interval_holds_its_rate_and_plots(
    successes: int, n: int, tmp_path: Path
) -> None:
    low, high = wilson_interval(successes, n)
    assert low <= successes / n <= high
    summary = {"n": n, "success_rate": successes / n, "ci95": [low, high]}
    # A bound a hair past the rate, as summaries written elsewhere may have.
    nudged = {**summary, "ci95": [low + 1e-17, high - 1e-16]}
    path = plot_policy_comparison(
        {"policy": summary, "nudged": nudged}, tmp_path / "c.png"
    )
    assert path.stat().st_size > 1000


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
