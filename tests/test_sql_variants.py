"""On every playable Spider dev question: near-miss SQL never pays, right SQL does.

Each gold query is rewritten with sqlglot (WHERE dropped, ORDER BY flipped,
LIMIT changed, aggregates swapped, columns permuted, float columns rounded),
run in the real sandbox, and its rows answered as JSON, as an agent would.
Whether a variant's result is the gold result is decided here by a plain
reference comparison written for this test (not the verifier): same rows up to
column order, row order where the gold has ORDER BY, each distinct gold row
listed once, strings trimmed and case-folded, and a REAL equal to the gold
rounded to the variant's written decimals (at least 2).
"""

import itertools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from sql_env.ingest.gold import jsonable
from sql_env.server.errors import SQLEnvError
from sql_env.server.question_bank import Question, load_bank
from sql_env.server.sandbox import Sandbox
from sql_env.server.verifier import Gold, check_answer, prepare_gold

pytestmark = pytest.mark.slow

VARIANT_TIMEOUT_S = 5.0
MAX_PERMUTED_WIDTH = 6  # the reference tries every column order up to this width
AGGREGATE_SWAPS = {
    "avg->sum": (exp.Avg, exp.Sum),
    "avg->max": (exp.Avg, exp.Max),
    "sum->avg": (exp.Sum, exp.Avg),
    "min->max": (exp.Min, exp.Max),
    "max->min": (exp.Max, exp.Min),
}
ROUNDINGS = (1, 2, 3)


# ------------------------------------------------------------------ variants


def top_selects(tree: exp.Expression) -> list[exp.Select]:
    """The SELECTs whose columns make the result (every arm of a UNION)."""
    if isinstance(tree, exp.Select):
        return [tree]
    if isinstance(tree, exp.SetOperation):
        return top_selects(tree.this) + top_selects(tree.expression)
    return []


def variants(question: Question) -> Iterator[tuple[str, str]]:
    """(kind, sql) rewrites of the gold query; kinds that do not apply are skipped."""
    tree = sqlglot.parse_one(question.gold_sql, read="sqlite")
    first = top_selects(tree)
    if not first:
        return
    if first[0].args.get("where") is not None:
        changed = tree.copy()
        top_selects(changed)[0].set("where", None)
        yield "where-dropped", changed.sql("sqlite")
    if tree.args.get("order") is not None:
        changed = tree.copy()
        for ordered in changed.args["order"].expressions:
            ordered.set("desc", not ordered.args.get("desc"))
        yield "order-flipped", changed.sql("sqlite")
    limit = tree.args.get("limit")
    if limit is not None and isinstance(limit.expression, exp.Literal):
        changed = tree.copy()
        n = int(changed.args["limit"].expression.this)
        changed.args["limit"].set("expression", exp.Literal.number(n + 1))
        yield "limit-changed", changed.sql("sqlite")
    if len(first[0].expressions) >= 2 and "*" not in first[0].sql():
        changed = tree.copy()
        for select in top_selects(changed):
            select.set("expressions", list(reversed(select.expressions)))
        yield "columns-permuted", changed.sql("sqlite")
    for kind, (old, new) in AGGREGATE_SWAPS.items():
        changed = tree.copy()
        swapped = False
        for select in top_selects(changed):
            for node in [n for e in select.expressions for n in e.find_all(old)]:
                node.replace(new(this=node.this))
                swapped = True
        if swapped:
            yield kind, changed.sql("sqlite")
    floats = float_columns(question)
    if floats and "*" not in first[0].sql():
        for places in ROUNDINGS:
            changed = tree.copy()
            for select in top_selects(changed):
                for i in floats:
                    if i < len(select.expressions):
                        select.expressions[i].replace(
                            rounded(select.expressions[i], places)
                        )
            yield f"rounded-{places}", changed.sql("sqlite")


def float_columns(question: Question) -> list[int]:
    width = len(question.gold_rows[0])
    return [
        i
        for i in range(width)
        if any(isinstance(r[i], float) for r in question.gold_rows)
    ]


def rounded(projection: exp.Expression, places: int) -> exp.Expression:
    alias = projection.alias if isinstance(projection, exp.Alias) else None
    inner = projection.this if isinstance(projection, exp.Alias) else projection
    call = exp.Round(this=inner.copy(), decimals=exp.Literal.number(places))
    return exp.alias_(call, alias) if alias else call


# ---------------------------------------------------------------- reference


def cell_equal(value: Any, gold: Any) -> bool:
    """The reference rule for one cell (see the module docstring)."""
    if (
        isinstance(gold, float)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        if not math.isfinite(gold) or not math.isfinite(value):
            return value == gold
        if abs(value - gold) <= 1e-12 * max(1.0, abs(gold)):
            return True
        written = Decimal(repr(float(value)))
        places = max(2, -written.as_tuple().exponent)
        return abs(written - Decimal(repr(gold))) <= Decimal(5) / 10 ** (places + 1)
    if isinstance(gold, str) and isinstance(value, str):
        return gold.strip().casefold() == value.strip().casefold()
    if gold is None or value is None:
        return (gold if value is None else value) in (None, "")
    return type(value) is not bool and value == gold


def rows_equal(rows: list[tuple], gold: list[tuple], ordered: bool) -> bool:
    if len(rows) != len(gold):
        return False
    if ordered:
        return all(
            all(map(cell_equal, row, want))
            for row, want in zip(rows, gold, strict=True)
        )
    left = list(gold)  # greedy pairing, grouped by the exact (non-REAL) cells
    buckets: dict[tuple, list[tuple]] = {}
    for want in left:
        buckets.setdefault(exact_part(want), []).append(want)
    for row in rows:
        bucket = buckets.get(exact_part(row), [])
        match = next((w for w in bucket if all(map(cell_equal, row, w))), None)
        if match is None:
            return False
        bucket.remove(match)
    return True


def exact_part(row: tuple) -> tuple:
    return tuple(
        v.strip().casefold() if isinstance(v, str) else "" if v is None else v
        for v in row
        if not isinstance(v, float)
    )


def same_result(rows: list[tuple], question: Question) -> bool:
    """Whether a variant's rows are the gold result (reference comparison)."""
    gold = list(question.gold_rows)
    listings = [gold, list(dict.fromkeys(gold))]
    width = len(gold[0])
    if any(len(r) != width for r in rows):
        return False
    orders = (
        itertools.permutations(range(width))
        if width <= MAX_PERMUTED_WIDTH
        else [tuple(range(width))]
    )
    for order in orders:
        permuted = [tuple(row[j] for j in order) for row in rows]
        for listing in listings:
            if rows_equal(permuted, listing, question.order_matters):
                return True
    return False


# ------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Outcome:
    question_id: str
    kind: str
    same: bool  # the reference says the variant's result is the gold result
    accepted: bool  # the verifier paid the JSON of the variant's rows


def outcomes(
    data_dir: Path, judge: Callable[[str, Question], bool] | None = None
) -> list[Outcome]:
    """Every variant of every playable dev question, run and judged."""
    bank = load_bank(data_dir)
    if judge is None:
        golds: dict[str, Gold] = {}

        def judge(answer: str, question: Question) -> bool:
            gold = golds.get(question.id)
            if gold is None:
                gold = prepare_gold(question.gold_rows, question.order_matters)
                golds[question.id] = gold
            return check_answer(answer, gold).correct

    found = []
    for question in bank.eligible("dev"):
        with Sandbox(bank.db_path(question.db_id), timeout_s=VARIANT_TIMEOUT_S) as box:
            for kind, sql in variants(question):
                try:
                    result = box.execute(sql)
                except SQLEnvError:
                    continue  # a rewrite SQLite refuses is no answer at all
                rows = [tuple(jsonable(v) for v in row) for row in result.rows]
                if result.more_rows or not rows:
                    continue
                answer = json.dumps([list(r) for r in rows])
                found.append(
                    Outcome(
                        question.id,
                        kind,
                        same_result(rows, question),
                        judge(answer, question),
                    )
                )
    return found


@pytest.fixture(scope="module")
def dev_outcomes(spider_data_dir: Path) -> list[Outcome]:
    return outcomes(spider_data_dir)


def test_no_variant_with_a_different_result_is_paid(
    dev_outcomes: list[Outcome],
) -> None:
    paid = [(o.question_id, o.kind) for o in dev_outcomes if o.accepted and not o.same]
    assert paid == []
    kinds = {o.kind for o in dev_outcomes if not o.same}
    assert {"where-dropped", "order-flipped", "avg->sum", "rounded-1"} <= kinds


def test_every_variant_with_the_gold_result_is_paid(
    dev_outcomes: list[Outcome],
) -> None:
    refused = [
        (o.question_id, o.kind) for o in dev_outcomes if o.same and not o.accepted
    ]
    assert refused == []


@pytest.mark.parametrize("kind", ["columns-permuted", "rounded-2", "rounded-3"])
def test_permuted_and_rounded_variants_are_paid(
    dev_outcomes: list[Outcome], kind: str
) -> None:
    of_kind = [o for o in dev_outcomes if o.kind == kind]
    assert len(of_kind) >= 50
    assert [o.question_id for o in of_kind if not (o.same and o.accepted)] == []
