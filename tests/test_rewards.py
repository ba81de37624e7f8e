"""Reward terms: binary is exact, shaped is bounded so correctness dominates."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


NAMES = [("Ann",), ("Cleo",)]


@pytest.mark.parametrize(
    ("rows", "gold", "order_matters", "expected"),
    [
        pytest.param([["Ann"], ["Cleo"]], NAMES, False, 1.0, id="gold-result"),
        pytest.param([["cleo"], ["ann "]], NAMES, False, 1.0, id="compared-as-answers"),
        pytest.param([["Ann"]], NAMES, False, 0.6, id="half-the-cells"),
        pytest.param([["Zed"]], NAMES, False, 0.0, id="nothing-shared"),
        pytest.param([], NAMES, False, 0.0, id="no-rows"),
        pytest.param([["Cleo"], ["Ann"]], NAMES, True, 0.9, id="wrong-order-all-cells"),
        pytest.param([[19.63]], [(19.6253,)], False, 1.0, id="rounded-2-decimals"),
        pytest.param([[19.559]], [(19.625,)], False, 0.0, id="dev85-other-population"),
        pytest.param(
            [[35.5, "Ann"]], [("Ann", 35.5)], False, 1.0, id="columns-permuted"
        ),
        pytest.param([["a"]], [("a",), ("a",)], False, 1.0, id="distinct-listing"),
        pytest.param([[2]], [(2.0,)], False, 1.0, id="int-equals-float"),
        pytest.param([[None]], [(None,)], False, 0.0, id="degenerate-gold"),
    ],
)
def test_closeness(
    rows: list, gold: list[tuple], order_matters: bool, expected: float
) -> None:
    assert closeness(rows, prepare_gold(gold, order_matters)) == pytest.approx(expected)


def test_closeness_grid_stays_in_unit_interval() -> None:
    gold = prepare_gold([("a", 1), ("b", 2)], order_matters=False)
    cells = ["a", "b", 1, 2, "z"]
    for a, b in itertools.product(cells, repeat=2):
        assert 0.0 <= closeness([[a, b]], gold) <= 1.0


def test_closeness_of_a_10k_row_result_against_a_wide_gold() -> None:
    rng = random.Random(0)
    rows = [tuple([rng.uniform(0, 1000)] * 10) for _ in range(10_000)]
    gold = prepare_gold(rows, order_matters=False)
    assert closeness(rows, gold) == 1.0
    moved = [list(r) for r in rows]
    moved[0][0], moved[1][0] = moved[1][0], moved[0][0]
    assert closeness(moved, gold) == pytest.approx(0.9)  # every cell, wrong rows
    assert closeness(rows[:5_000], gold) == pytest.approx(0.9 * 2 / 3)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


SQL_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.binary(max_size=10),
    st.just(10**5000),
    st.just(Unprintable()),
    st.lists(st.integers(), max_size=2),
)
ROWS = st.lists(st.lists(SQL_VALUES, min_size=1, max_size=4), max_size=12)
GOLDS = [
    prepare_gold([(6,)], False),
    prepare_gold([("Ann", 19.6253), ("Bob", None)], True),
    prepare_gold([(1.5, 1.5, 1.5)], False),
    prepare_gold([], False),
]


@settings(max_examples=300, deadline=None, database=None)
@given(rows=ROWS)
def test_closeness_never_raises_and_stays_in_unit_interval(rows: list[list]) -> None:
    for gold in GOLDS:
        assert 0.0 <= closeness(rows, gold) <= 1.0


def test_the_manifest_declares_the_step_reward_range_and_version() -> None:
    import importlib.metadata
    from pathlib import Path

    import yaml

    from sql_env.server.rewards import STEP_REWARD_RANGE

    manifest = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "openenv.yaml").read_text()
    )
    low, high = manifest["validation"]["reward"]["range"]
    assert (low, high) == pytest.approx(STEP_REWARD_RANGE)
    assert manifest["version"] == importlib.metadata.version("openenv-sql-env")


@pytest.mark.parametrize("mode", ["binary", "shaped"])
def test_no_step_reward_leaves_the_declared_range(mode: str) -> None:
    from sql_env.server.rewards import STEP_REWARD_RANGE, step_reward

    low, high = STEP_REWARD_RANGE
    for answered, correct in itertools.product((False, True), repeat=2):
        for before, after in itertools.product((0.0, 0.5, 1.0), repeat=2):
            reward = step_reward(
                mode,
                answered=answered,
                correct=correct and answered,
                potential_before=before,
                potential_after=after,
            )
            assert low - 1e-12 <= reward <= high + 1e-12
