"""Execution accuracy, pass@k and majority@k over played episodes, with 95% CIs.

Pure functions of the episodes (and of the answers' group keys, see
``answer_groups``): no I/O. A question played ``k`` times has ``c`` correct
episodes; over the questions of a group:

- ``success_rate``, the execution accuracy: the mean of ``c / k`` (pass@1). With
  answers by SQL this is the dataset's official execution accuracy, each
  answer scored by its rule in the environment.
- ``pass@k``: the unbiased estimator of Chen et al. (2021), ``1 - C(k_total - c,
  k) / C(k_total, k)`` per question, for every ``k`` up to the samples taken.
- ``majority@k``: the share of questions whose most frequent answer (answers
  grouped by key; the earliest group wins a tie) was correct.

Every interval is Wilson's 95% score interval with ``n`` = questions. For a
mean of per-question scores in [0, 1] (pass@1 over several samples, pass@k) it
is conservative: such a score's variance is at most ``p (1 - p)``, the
variance of the 0/1 score Wilson assumes.
"""

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from sql_env.training.data import order_levels
from sql_env.training.rollout import Episode

Z_95 = 1.959963984540054
NO_LEVEL = "(none)"  # the group of questions whose dataset gives no difficulty


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default).

    ``successes`` may be fractional: the sum of per-question scores in [0, 1].
    The bounds always hold the observed rate: at 0/n and n/n the formula's
    exact 0 and 1 come out of floating point a hair inside (5.6e-17 at 0/3),
    which would make the interval miss its own rate.

    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    >>> [round(x, 3) for x in wilson_interval(8, 10)]
    [0.49, 0.943]
    >>> wilson_interval(0, 3)[0], wilson_interval(10, 10)[1]
    (0.0, 1.0)
    """
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that ``k`` of ``n`` samples, ``c`` of them correct, hold a correct one.

    The unbiased estimator of Chen et al. (2021): ``1 - C(n - c, k) / C(n, k)``.

    >>> pass_at_k(10, 0, 5), pass_at_k(10, 10, 1), pass_at_k(4, 1, 1)
    (0.0, 1.0, 0.25)
    >>> round(pass_at_k(4, 1, 2), 4)
    0.5
    """
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the {n} samples, not {k}.")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_correct(keys: Sequence[Hashable | None], correct: Sequence[bool]) -> bool:
    """Whether the most frequent answer of a question's samples was correct.

    Samples with key None (no answer, or one that could not be read or run)
    do not vote. The group with the most votes wins, the earliest group on a
    tie; its first sample's outcome is the question's.

    >>> majority_correct(["a", "b", "b"], [True, False, False])
    False
    >>> majority_correct(["a", "b", None, None], [True, False, False, False])
    True
    >>> majority_correct([None, None], [False, False])
    False
    """
    votes = Counter(key for key in keys if key is not None)
    if not votes:
        return False
    winner = max(votes, key=votes.__getitem__)  # first of the largest, in order
    return bool(correct[list(keys).index(winner)])


@dataclass(frozen=True)
class QuestionOutcome:
    """Every sample of one question: outcomes and the answers' group keys."""

    question_id: str
    db_id: str
    difficulty: str
    correct: tuple[bool, ...]
    keys: tuple[Hashable | None, ...]


def outcomes(
    episodes: Sequence[Episode], keys: Sequence[Hashable | None] | None = None
) -> list[QuestionOutcome]:
    """Episodes grouped by question, in first-played order.

    Args:
        episodes: Played episodes, several per question when sampled.
        keys: One group key per episode (None: group answers by their text).
    """
    keys = [e.answer for e in episodes] if keys is None else keys
    grouped: dict[str, list[tuple[Episode, Hashable | None]]] = defaultdict(list)
    for episode, key in zip(episodes, keys, strict=True):
        grouped[episode.question_id].append((episode, key))
    return [
        QuestionOutcome(
            question_id=qid,
            db_id=plays[0][0].db_id,
            difficulty=plays[0][0].difficulty,
            correct=tuple(e.success for e, _ in plays),
            keys=tuple(key for _, key in plays),
        )
        for qid, plays in grouped.items()
    ]


def _rate(scores: Sequence[float]) -> dict[str, Any]:
    n = len(scores)
    total = math.fsum(scores)
    return {"rate": total / n if n else 0.0, "ci95": list(wilson_interval(total, n))}


def rates(questions: Sequence[QuestionOutcome]) -> dict[str, Any]:
    """Execution accuracy of a group of questions, and pass@k / majority@k.

    Returns:
        ``n`` (questions), ``success_rate`` and ``ci95``; when every question
        was played ``k > 1`` times, also ``pass_at_k`` and ``majority_at_k``
        (each ``{"k", "rate", "ci95"}``).
    """
    samples = min((len(q.correct) for q in questions), default=1)
    accuracy = _rate([sum(q.correct) / len(q.correct) for q in questions])
    result: dict[str, Any] = {
        "n": len(questions),
        "success_rate": accuracy["rate"],
        "ci95": accuracy["ci95"],
    }
    if samples > 1:
        result["pass_at_k"] = {"k": samples, **pass_rate(questions, samples)}
        result["majority_at_k"] = {
            "k": samples,
            **_rate([majority_correct(q.keys, q.correct) for q in questions]),
        }
    return result


def pass_rate(questions: Sequence[QuestionOutcome], k: int) -> dict[str, Any]:
    """pass@k over questions (each played at least ``k`` times), with its CI."""
    return _rate([pass_at_k(len(q.correct), sum(q.correct), k) for q in questions])


def summarize(
    episodes: Sequence[Episode],
    keys: Sequence[Hashable | None] | None = None,
    levels: Sequence[str] = (),
) -> dict[str, Any]:
    """Accuracy with Wilson 95% CI, pass@k and majority@k, per level and database.

    Args:
        episodes: The played episodes (``samples`` per question).
        keys: Group keys of the answers, for majority@k (see ``answer_groups``).
        levels: The dataset's difficulty levels, easiest first: the order of
            ``per_difficulty`` (questions without a level come last).

    Returns:
        Over questions: ``n``, ``samples``, ``success_rate``, ``ci95``, and when
        sampling ``pass_at_k``, ``majority_at_k`` and ``pass_curve`` (pass@1 to
        pass@k); over episodes: ``episodes``, ``mean_reward``, ``mean_steps``,
        ``error_rate`` (share of steps whose action failed), ``truncation_rate``
        (share that ran out of steps or turns without answering),
        ``answer_rate``; and ``per_difficulty`` and ``per_database``, each
        group with the question-level rates.
    """
    questions = outcomes(episodes, keys)
    n = len(episodes)
    steps = sum(e.steps for e in episodes)
    by_level: dict[str, list[QuestionOutcome]] = defaultdict(list)
    by_db: dict[str, list[QuestionOutcome]] = defaultdict(list)
    for question in questions:
        by_level[question.difficulty].append(question)
        by_db[question.db_id].append(question)
    summary: dict[str, Any] = {
        **rates(questions),
        "samples": min((len(q.correct) for q in questions), default=0),
        "episodes": n,
        "mean_reward": sum(e.reward for e in episodes) / n if n else 0.0,
        "mean_steps": steps / n if n else 0.0,
        "error_rate": sum(e.errors for e in episodes) / steps if steps else 0.0,
        "truncation_rate": sum(e.truncated for e in episodes) / n if n else 0.0,
        "answer_rate": sum(e.answered for e in episodes) / n if n else 0.0,
        "per_difficulty": {
            level or NO_LEVEL: rates(by_level[level])
            for level in order_levels(by_level, levels)
        },
        "per_database": {db: rates(group) for db, group in sorted(by_db.items())},
    }
    if summary["samples"] > 1:
        summary["pass_curve"] = [
            {"k": k, **pass_rate(questions, k)}
            for k in range(1, summary["samples"] + 1)
        ]
    return summary
