"""Reward terms: pure functions of the step outcome and the episode so far.

``binary`` pays 1.0 for a correct ANSWER and nothing else. ``shaped`` adds
two small terms for denser credit in long episodes:

- progress: ``PROGRESS_WEIGHT * (phi_new - phi_old)``, where ``phi`` is the
  closeness of the latest QUERY result to the gold result (1.0 when it
  matches, else ``0.9 * cell F1``). The terms telescope, so an episode's
  progress sum is ``PROGRESS_WEIGHT * phi_last`` whatever path it took.
- step cost: ``-STEP_COST`` for every step, ANSWER included.

Bounds with the defaults (budget 15): a correct episode returns at least
``1 - 15 * 0.01 = 0.85``; an incorrect or truncated one at most
``0.2 - 0.01 = 0.19``. A correct answer always dominates.
"""

from collections.abc import Sequence
from typing import Any, Literal, get_args

from sql_env.server.verifier import Gold, cell_f1, read_result, rows_match

RewardMode = Literal["binary", "shaped"]
REWARD_MODES: tuple[RewardMode, ...] = get_args(RewardMode)
CORRECT_REWARD = 1.0
PROGRESS_WEIGHT = 0.2
STEP_COST = 0.01
# Every step's reward lies in this range in both modes (openenv.yaml declares it):
# shaped mode's worst step loses all progress and pays the step cost; its best
# answers correctly while reaching the gold result.
STEP_REWARD_RANGE = (
    -PROGRESS_WEIGHT - STEP_COST,
    CORRECT_REWARD + PROGRESS_WEIGHT - STEP_COST,
)


def closeness(rows: Sequence[Sequence[Any]], gold: Gold) -> float:
    """Potential of a QUERY result: 1.0 if it is the gold result, else 0.9 * F1.

    In [0, 1] and never raises. Bounded cost for any result and any gold:
    linear in the cells of both, plus at most ``verifier.MAX_WORK`` matching
    steps.

    >>> from sql_env.server.verifier import prepare_gold
    >>> gold = prepare_gold([(6,)], order_matters=False)
    >>> closeness([[6]], gold), closeness([[5]], gold), closeness([[6], [5]], gold)
    (1.0, 0.0, 0.6)
    """
    table = read_result(rows)
    if rows_match(table, gold):
        return 1.0
    return 0.9 * cell_f1(table, gold)


def step_reward(
    mode: RewardMode,
    *,
    answered: bool,
    correct: bool,
    potential_before: float,
    potential_after: float,
) -> float:
    """The reward of one step.

    Args:
        mode: ``"binary"`` or ``"shaped"``.
        answered: The step was an ANSWER.
        correct: The ANSWER matched the gold result.
        potential_before: ``phi`` before the step (0.0 at reset).
        potential_after: ``phi`` after it (unchanged unless a QUERY ran).

    >>> step_reward("binary", answered=True, correct=True,
    ...             potential_before=0.0, potential_after=0.0)
    1.0
    >>> round(step_reward("shaped", answered=False, correct=False,
    ...                   potential_before=0.0, potential_after=0.5), 3)
    0.09
    """
    outcome = CORRECT_REWARD if answered and correct else 0.0
    if mode == "binary":
        return outcome
    progress = PROGRESS_WEIGHT * (potential_after - potential_before)
    return outcome + progress - STEP_COST
