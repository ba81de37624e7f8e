"""The recipe learns: a tiny model overfits a handful of train questions.

``make train-overfit`` with its default settings, on the real Spider data: SFT on
the gold trajectories of four easy train questions, then GRPO through
``environment_factory`` on the same four. The thresholds are below what the
measured runs reached (docs/training.md), so a broken link anywhere (loss mask,
rendering, reward, precision) fails the test, while run-to-run noise does not.
"""

from pathlib import Path
from statistics import mean

import pytest

from sql_env.training.overfit import SUMMARY, run_overfit

# Measured (docs/training.md), seeds 0-3: greedy success 4 of 4 after GRPO;
# sampled success over the last 10 steps 0.71-0.88, up 0.15-0.53 from the first
# 3 steps. The test runs seed 0.
MIN_SUCCESS_AFTER_GRPO = 0.75
MIN_FINAL_SAMPLED_SUCCESS = 0.6
MIN_RISE = 0.1


@pytest.mark.slow
def test_tiny_model_overfits_a_handful_of_questions(
    spider_data_dir: Path, tmp_path: Path
) -> None:
    result = run_overfit(tmp_path, spider_data_dir)

    assert result.success_before == 0.0
    assert result.success_after_grpo >= MIN_SUCCESS_AFTER_GRPO
    first, last = mean(result.grpo_success[:3]), mean(result.grpo_success[-10:])
    assert last >= MIN_FINAL_SAMPLED_SUCCESS
    assert last - first >= MIN_RISE
    assert result.grpo_reward == result.grpo_success  # binary reward
    for name in (SUMMARY, "overfit.png", "grpo/learning_curve.png"):
        assert (tmp_path / name).stat().st_size > 0
