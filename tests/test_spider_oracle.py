"""On the real Spider data: the oracle always wins and a perturbed answer never does."""

import json
from pathlib import Path

import pytest

from sql_env.models import SQLAction
from sql_env.server.answer_reading import gold_key
from sql_env.server.question_bank import Question, load_bank
from sql_env.server.sql_environment import SQLEnvironment
from sql_env.server.verifier import prepare_gold, read_result, rows_match

pytestmark = pytest.mark.slow


def play(env: SQLEnvironment, question: Question, answer: str) -> float:
    env.reset(question_id=question.id)
    obs = env.step(SQLAction(action_type="QUERY", argument=question.gold_sql))
    assert obs.error == "", (question.id, obs.error)
    obs = env.step(SQLAction(action_type="ANSWER", argument=answer))
    assert obs.done
    return obs.reward


def as_json(rows: list[list]) -> str:
    return json.dumps(rows)


def changed(value: object) -> object:
    if isinstance(value, bool | int):
        return value + 1_000_003
    if isinstance(value, float):
        return value * 1.5 + 1_000_003.5
    if value is None:
        return "zz-not-null"
    return f"{value}-zz"


def perturbations(question: Question) -> dict[str, list[list]]:
    """Wrong answers built from the gold rows; each must score 0."""
    rows = [list(row) for row in question.gold_rows]
    out = {"value-changed": [row[:] for row in rows]}
    out["value-changed"][0][0] = changed(rows[0][0])
    out["row-added"] = rows + [[changed(v) for v in rows[0]]]
    counts = {}
    for row in rows:
        key = tuple(gold_key(v) for v in row)
        counts[key] = counts.get(key, 0) + 1
    unique = [
        i for i, row in enumerate(rows) if counts[tuple(gold_key(v) for v in row)] == 1
    ]
    if len(rows) > 1 and unique:
        out["row-dropped"] = rows[: unique[-1]] + rows[unique[-1] + 1 :]
    if question.order_matters:
        for k in range(1, len(rows)):
            if not rows_match(read_result([rows[k]]), prepare_gold([rows[0]], False)):
                swapped = rows[:]
                swapped[0], swapped[k] = swapped[k], swapped[0]
                out["order-swapped"] = swapped
                break
    return out


@pytest.fixture(scope="module")
def env(spider_data_dir: Path):
    environment = SQLEnvironment(spider_data_dir)
    yield environment
    environment.close()


def test_build_report_matches_the_shared_mirror(spider_data_dir: Path) -> None:
    report = json.loads((spider_data_dir / "spider" / "report.json").read_text())
    dev, train = report["splits"]["dev"], report["splits"]["train"]
    assert dev["questions"] == 1034
    assert dev["questions"] - dev["excluded"]["missing_database"] == 972
    assert train["questions"] == 7000
    assert train["questions"] - train["excluded"]["missing_database"] == 6904
    assert train["excluded"]["gold_error"] == 3
    assert "wta_1" in report["databases"]["missing"]


@pytest.mark.parametrize(("split", "at_least"), [("dev", 900), ("train", 6_500)])
def test_oracle_scores_every_playable_question(
    env: SQLEnvironment, spider_data_dir: Path, split: str, at_least: int
) -> None:
    questions = load_bank(spider_data_dir).eligible(split)
    assert len(questions) > at_least
    failures = [
        q.id
        for q in questions
        if play(env, q, as_json([list(r) for r in q.gold_rows])) != 1.0
    ]
    assert failures == []


def test_perturbed_answers_score_zero_on_every_dev_question(
    env: SQLEnvironment, spider_data_dir: Path
) -> None:
    seen: dict[str, int] = {}
    wrongly_paid = []
    for question in load_bank(spider_data_dir).eligible("dev"):
        for kind, rows in perturbations(question).items():
            seen[kind] = seen.get(kind, 0) + 1
            if play(env, question, as_json(rows)) != 0.0:
                wrongly_paid.append((question.id, kind))
    assert wrongly_paid == []
    assert seen["value-changed"] > 900 and seen["row-added"] > 900
    assert seen["row-dropped"] > 300 and seen["order-swapped"] >= 50


def collisions(question: Question) -> list[list[list]]:
    """Groups of distinct gold rows that the verifier compares as equal."""
    groups: dict[tuple, list[list]] = {}
    for row in dict.fromkeys(question.gold_rows):
        groups.setdefault(tuple(gold_key(v) for v in row), []).append(list(row))
    return [group for group in groups.values() if len(group) > 1]


def test_no_correct_answer_is_refused_on_colliding_gold_rows(
    env: SQLEnvironment, spider_data_dir: Path
) -> None:
    bank = load_bank(spider_data_dir)
    questions = [
        q for split in ("dev", "train") for q in bank.eligible(split) if collisions(q)
    ]
    # ' volkswagen'/'volkswagen' (dev 97-98), 'Dazed And Confused'/'Dazed and
    # Confused', ''/'Null' (train): 2 dev and 10 train questions in Spider 1.0.
    assert len(questions) >= 12
    refused, paid = [], []
    for question in questions:
        colliding = collisions(question)
        rows = [list(r) for r in question.gold_rows]
        sql_distinct = [list(r) for r in dict.fromkeys(question.gold_rows)]
        by_key: dict[tuple, list] = {}
        for r in sql_distinct:
            by_key.setdefault(tuple(gold_key(v) for v in r), r)
        key_distinct = list(by_key.values())  # one spelling per compared value
        right = {
            "all-rows": rows,
            "sql-distinct": sql_distinct,
            "compared-distinct": key_distinct,
            "compared-distinct-other-spelling": [
                next((g[-1] for g in colliding if r in g), r) for r in key_distinct
            ],
        }
        for kind, answer in right.items():
            if play(env, question, as_json(answer)) != 1.0:
                refused.append((question.id, kind))
        unique = [r for r in key_distinct if not any(r in g for g in colliding)]
        wrong = {"extra-row": sql_distinct + [[changed(v) for v in sql_distinct[0]]]}
        if unique:
            wrong["unique-row-dropped"] = [r for r in sql_distinct if r != unique[0]]
        for kind, answer in wrong.items():
            if play(env, question, as_json(answer)) != 0.0:
                paid.append((question.id, kind))
    assert refused == [] and paid == []
