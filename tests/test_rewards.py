"""Reward terms: binary is exact, shaped is bounded so correctness dominates."""

import itertools
import random

import pytest

from sql_env.server.rewards import (
    PROGRESS_WEIGHT,
    STEP_COST,
    closeness,
    step_reward,
)
from sql_env.server.verifier import prepare_gold

BUDGET = 15


def episode_return(mode: str, potentials: list[float], correct: bool | None) -> float:
    """Sum of step rewards: one step per potential, then an ANSWER (if any)."""
    total, before = 0.0, 0.0
    for after in potentials:
        total += step_reward(
            mode,
            answered=False,
            correct=False,
            potential_before=before,
            potential_after=after,
        )
        before = after
    if correct is not None:
        total += step_reward(
            mode,
            answered=True,
            correct=correct,
            potential_before=before,
            potential_after=before,
        )
    return total


@pytest.mark.parametrize(
    ("answered", "correct", "expected"),
    [(True, True, 1.0), (True, False, 0.0), (False, False, 0.0)],
)
def test_binary_pays_only_a_correct_answer(
    answered: bool, correct: bool, expected: float
) -> None:
    assert (
        step_reward(
            "binary",
            answered=answered,
            correct=correct,
            potential_before=0.3,
            potential_after=0.9,
        )
        == expected
    )


def test_progress_terms_telescope() -> None:
    potentials = [0.2, 0.7, 0.1, 1.0, 0.4]
    total = episode_return("shaped", potentials, correct=None)
    assert total == pytest.approx(PROGRESS_WEIGHT * 0.4 - STEP_COST * len(potentials))


def test_correct_answer_always_dominates() -> None:
    rng = random.Random(0)
    worst_correct, best_other = float("inf"), float("-inf")
    for _ in range(2_000):
        steps = rng.randrange(0, BUDGET)
        potentials = [rng.choice([0.0, rng.random(), 1.0]) for _ in range(steps)]
        worst_correct = min(worst_correct, episode_return("shaped", potentials, True))
        best_other = max(best_other, episode_return("shaped", potentials, False))
        truncated = potentials + [1.0] * (BUDGET - steps)
        best_other = max(best_other, episode_return("shaped", truncated, None))
    assert worst_correct >= 1.0 - BUDGET * STEP_COST - 1e-9
    assert best_other <= PROGRESS_WEIGHT - STEP_COST + 1e-9
    assert worst_correct > best_other


@pytest.mark.parametrize(
    ("rows", "expected"),
    [([["Ann"], ["Cleo"]], 1.0), ([["Ann"]], 0.6), ([["Zed"]], 0.0), ([], 0.0)],
)
def test_closeness(rows: list, expected: float) -> None:
    gold = [("Ann",), ("Cleo",)]
    assert closeness(rows, prepare_gold(gold, False)) == pytest.approx(expected)


def test_closeness_grid_stays_in_unit_interval() -> None:
    gold = [("a", 1), ("b", 2)]
    cells = ["a", "b", 1, 2, "z"]
    for a, b in itertools.product(cells, repeat=2):
        assert 0.0 <= closeness([[a, b]], prepare_gold(gold, False)) <= 1.0
