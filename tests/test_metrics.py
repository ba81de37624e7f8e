"""Accuracy, pass@k, majority@k and their intervals, as pure functions.

pass@k is checked against a count over every subset of samples (the quantity
the estimator is unbiased for), not against its own formula.
"""

from itertools import combinations

import pytest

from sql_env.training.metrics import (
    NO_LEVEL,
    majority_correct,
    pass_at_k,
    summarize,
    wilson_interval,
)
from sql_env.training.rollout import Episode


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
        pytest.param(2.5, 7, id="fractional"),
    ],
)
def test_interval_holds_its_rate(successes: float, n: int) -> None:
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= successes / n <= high <= 1.0


def subsets_with_a_success(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (c correct) holding a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(samples, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [(n, c, k) for n in (1, 2, 5, 8) for c in range(n + 1) for k in range(1, n + 1)],
)
def test_pass_at_k_is_the_share_of_k_subsets_with_a_success(
    n: int, c: int, k: int
) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(subsets_with_a_success(n, c, k))


@pytest.mark.parametrize(("n", "k"), [(3, 0), (3, 4)])
def test_pass_at_k_refuses_k_outside_the_samples(n: int, k: int) -> None:
    with pytest.raises(ValueError, match="between 1 and the 3 samples"):
        pass_at_k(n, 1, k)


@pytest.mark.parametrize(
    ("keys", "correct", "expected"),
    [
        pytest.param(["a", "b", "b"], [True, False, False], False, id="majority-wrong"),
        pytest.param(["a", "b", "a"], [True, False, True], True, id="majority-right"),
        pytest.param(["a", "b"], [False, True], False, id="tie-earliest-group"),
        pytest.param(["b", "a"], [True, False], True, id="tie-earliest-group-right"),
        pytest.param([None, None, "a"], [False, False, True], True, id="none-no-vote"),
        pytest.param([None, None], [False, False], False, id="no-votes"),
        # One group, mixed outcomes (answers differing only in row order): the
        # group's first answer decides.
        pytest.param(["a", "a"], [False, True], False, id="group-first-decides"),
    ],
)
def test_majority_vote(keys: list, correct: list, expected: bool) -> None:
    assert majority_correct(keys, correct) is expected


def played(qid: str, level: str, outcomes: list[bool], db: str = "db") -> list:
    return [
        Episode(
            qid,
            db,
            level,
            "p",
            ok,
            float(ok),
            4,
            0,
            truncated=False,
            answered=True,
            sample=i,
            answer="right" if ok else f"wrong{i}",
        )
        for i, ok in enumerate(outcomes)
    ]


def test_summary_orders_levels_and_counts_questions_not_episodes() -> None:
    episodes = [
        *played("q1", "", [True, False, False]),
        *played("q2", "challenging", [False, False, False]),
        *played("q3", "simple", [True, True, True], db="other"),
        *played("q4", "simple", [False, True, True]),
    ]
    summary = summarize(episodes, levels=("simple", "moderate", "challenging"))
    assert summary["n"] == 4 and summary["samples"] == 3 and summary["episodes"] == 12
    assert summary["success_rate"] == pytest.approx((1 / 3 + 0 + 1 + 2 / 3) / 4)
    assert list(summary["per_difficulty"]) == ["simple", "challenging", NO_LEVEL]
    simple = summary["per_difficulty"]["simple"]
    assert simple["n"] == 2 and simple["success_rate"] == pytest.approx(5 / 6)
    assert simple["ci95"] == pytest.approx(wilson_interval(5 / 3, 2))
    # pass@3: q1, q3, q4 have a success; majority@3 (answers grouped by text):
    # q1's wrong answers differ from one another, so the earliest (right) wins.
    assert summary["pass_at_k"] == {"k": 3, **_rate(3, 4)}
    assert summary["majority_at_k"]["rate"] == pytest.approx(3 / 4)
    assert [p["k"] for p in summary["pass_curve"]] == [1, 2, 3]
    assert summary["pass_curve"][0]["rate"] == pytest.approx(summary["success_rate"])
    assert summary["per_database"]["other"]["success_rate"] == 1.0


def test_one_sample_has_no_pass_or_majority() -> None:
    summary = summarize(played("q1", "easy", [True]) + played("q2", "easy", [False]))
    assert summary["samples"] == 1 and summary["success_rate"] == 0.5
    assert "pass_at_k" not in summary and "pass_curve" not in summary
    assert "majority_at_k" not in summary["per_difficulty"]["easy"]


def _rate(successes: float, n: int) -> dict:
    return {"rate": successes / n, "ci95": list(wilson_interval(successes, n))}
