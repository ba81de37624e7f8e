"""Answer checking: right answers pay, wrong ones never do, nothing raises."""

import dataclasses
import itertools
import json
import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sql_env.server import execution_match, verifier
from sql_env.server.answer_reading import MAX_ANSWER_CHARS, number_key
from sql_env.server.verifier import (
    Gold,
    Verdict,
    bird_execution_match,
    cell_f1,
    check_answer,
    is_degenerate,
    prepare_gold,
    read_result,
    rows_match,
    spider_execution_match,
)

COUNTRIES = [("France",), ("USA",), ("Spain",)]
PAIRS = [("Ann", 35.5), ("Bob", 12.25)]
ORDERED = [("Cleo", 99.0), ("Ann", 35.5), ("Ann", 20.0)]
DUPLICATES = [("France",), ("France",), ("USA",)]
# spider/dev/97-98: two distinct makers that differ only by a leading space
MAKERS = [("volkswagen",), ("ford",), (" volkswagen",), ("ford",), ("volkswagen",)]
CASE_TITLES = [("Dazed And Confused",), ("Dazed and Confused",), ("Help!",)]
NULL_SPELLINGS = [("",), ("Null",), ("Paris",)]
AVERAGE = [(19.625,)]  # spider/dev/85: another population averages 19.559


def check(answer: str, gold: list[tuple], order_matters: bool = False) -> bool:
    return check_answer(answer, prepare_gold(gold, order_matters)).correct


@pytest.mark.parametrize(
    ("answer", "gold", "order_matters", "expected"),
    [
        # scalars and integers (exact)
        pytest.param("6", [(6,)], False, True, id="int-text"),
        pytest.param("6.0", [(6,)], False, True, id="int-as-float"),
        pytest.param("6.00", [(6,)], False, True, id="int-with-zeros"),
        pytest.param("6.01", [(6,)], False, False, id="int-exact"),
        pytest.param("5.999", [(6,)], False, False, id="int-not-rounded"),
        pytest.param("7", [(6,)], False, False, id="int-wrong"),
        pytest.param('"6"', [(6,)], False, True, id="json-string-number"),
        pytest.param("[6]", [(6,)], False, True, id="list-of-one"),
        pytest.param("[[6]]", [(6,)], False, True, id="table-of-one"),
        pytest.param("```json\n[[6]]\n```", [(6,)], False, True, id="code-fence"),
        pytest.param("true", [(1,)], False, True, id="json-bool-is-integer"),
        pytest.param("1e3", [(1000,)], False, True, id="scientific"),
        pytest.param("-0.5", [(-0.5,)], False, True, id="negative"),
        pytest.param("0", [(-0.0,)], False, True, id="negative-zero"),
        pytest.param(
            "9223372036854775807", [(2**63 - 1,)], False, True, id="int64-exact"
        ),
        pytest.param(
            "9223372036854775806", [(2**63 - 1,)], False, False, id="int64-off-by-one"
        ),
        pytest.param(
            "9.223372036854776e18", [(2**63 - 1,)], False, False, id="int64-as-float"
        ),
        # REAL gold: the answer's written precision decides
        pytest.param("19.6253", [(19.6253,)], False, True, id="float-exact"),
        pytest.param("19.625", [(19.6253,)], False, True, id="float-3-decimals"),
        pytest.param("19.63", [(19.6253,)], False, True, id="float-2-decimals"),
        pytest.param("19.630", [(19.6253,)], False, False, id="float-3-decimals-wrong"),
        pytest.param("19.6", [(19.6253,)], False, False, id="float-1-decimal"),
        pytest.param("20", [(19.6253,)], False, False, id="float-0-decimals"),
        pytest.param("19.559", AVERAGE, False, False, id="dev85-other-population"),
        pytest.param("19.56", AVERAGE, False, False, id="dev85-other-population-2dp"),
        pytest.param("19.62", AVERAGE, False, True, id="tie-half-even"),
        pytest.param("19.63", AVERAGE, False, True, id="tie-half-up"),
        pytest.param("2.67", [(2.675,)], False, True, id="tie-binary-below-python"),
        pytest.param("2.68", [(2.675,)], False, True, id="tie-binary-below-sqlite"),
        pytest.param("29.88", [(29.875,)], False, True, id="float-rounded-up"),
        pytest.param("30.5", [(29.875,)], False, False, id="float-off"),
        pytest.param(
            "783.8", [(783.7985890347726,)], False, True, id="round-2-trailing-zero"
        ),
        pytest.param(
            "783.80", [(783.7985890347726,)], False, True, id="round-2-zero-kept"
        ),
        pytest.param("784", [(783.7985890347726,)], False, False, id="round-0"),
        pytest.param("2", [(2.0,)], False, True, id="float-gold-integral"),
        pytest.param("2.01", [(2.0,)], False, False, id="float-gold-integral-strict"),
        pytest.param("19.6", [(19.6004,)], False, True, id="one-decimal-equal-at-two"),
        pytest.param("0.3", [(0.1 + 0.2,)], False, True, id="double-noise"),
        pytest.param(
            "19.625299999999996",
            [(19.625300000000003,)],
            False,
            True,
            id="noise-17-digits",
        ),
        pytest.param("1.0000001", [(1.0,)], False, False, id="seven-decimals-differ"),
        pytest.param("1e308", [(1e308,)], False, True, id="largest-doubles"),
        # hostile numbers: refused, never raised
        pytest.param("1" * 5000, [(5.0,)], False, False, id="5000-digit-number"),
        pytest.param("1" * 5000, [(5,)], False, False, id="5000-digit-vs-int"),
        pytest.param("9" * 309, [(1.5,)], False, False, id="309-digit-vs-float"),
        pytest.param(str(10**308), [(1e308,)], False, True, id="309-digit-equal-float"),
        pytest.param("1e999999999", [(1.5,)], False, False, id="huge-exponent"),
        pytest.param("1e9999999999", [(1.5,)], False, False, id="exponent-too-long"),
        pytest.param(
            "1e-999999999", [(0.0,)], False, True, id="tiny-read-at-350-places"
        ),
        pytest.param("1e-999999999", [(1e-300,)], False, False, id="tiny-not-a-double"),
        pytest.param("0." + "0" * 400, [(0.0,)], False, True, id="zero-400-places"),
        pytest.param("[1e400]", [(1.5,)], False, False, id="json-overflow"),
        pytest.param("NaN", [(1.5,)], False, False, id="nan"),
        pytest.param("Infinity", [(float("inf"),)], False, True, id="infinity"),
        # number formats
        pytest.param("1,200", [(1200,)], False, True, id="thousands"),
        pytest.param('"1,200"', [(1200,)], False, True, id="thousands-json-string"),
        pytest.param("1,234,567.5", [(1234567.5,)], False, True, id="thousands-float"),
        pytest.param("$19,500.00", [(19500,)], False, True, id="currency"),
        pytest.param("$19,500.00", [(19500.0,)], False, True, id="currency-float"),
        pytest.param("-$5.25", [(-5.25,)], False, True, id="currency-negative"),
        pytest.param("€3.50", [(3.5,)], False, True, id="euro"),
        pytest.param("45%", [(45.0,)], False, True, id="percent"),
        pytest.param("45%", [(0.45,)], False, False, id="percent-not-fraction"),
        pytest.param("1,20", [(1.2,)], False, False, id="ambiguous-decimal-comma"),
        pytest.param("1,20", [(120,)], False, False, id="ambiguous-short-group"),
        pytest.param("1.200,50", [(1200.5,)], False, False, id="ambiguous-european"),
        pytest.param("12,00,000", [(1200000,)], False, False, id="ambiguous-lakh"),
        pytest.param("1 200", [(1200,)], False, False, id="ambiguous-space"),
        pytest.param("0,123", [(123,)], False, False, id="ambiguous-leading-zero"),
        pytest.param("$1e3", [(1000,)], False, False, id="currency-exponent"),
        pytest.param("1,20", [("1,20",)], False, True, id="text-gold-read-alike"),
        pytest.param("$5", [("$5",)], False, True, id="currency-text-gold"),
        # text
        pytest.param(" paris ", [("Paris",)], False, True, id="trim-case"),
        pytest.param("Pariss", [("Paris",)], False, False, id="string-wrong"),
        pytest.param('"42"', [("42",)], False, True, id="numeric-string-gold"),
        pytest.param("42", [("042",)], False, True, id="numeric-string-leading-zero"),
        pytest.param("null", [(None,), (1,)], False, False, id="shape-mismatch"),
        pytest.param("", [(6,)], False, False, id="empty-answer"),
        # lists and tables
        pytest.param('["France", "USA", "Spain"]', COUNTRIES, False, True, id="column"),
        pytest.param(
            '["spain", "france", "usa"]', COUNTRIES, False, True, id="column-any-order"
        ),
        pytest.param('["France", "USA"]', COUNTRIES, False, False, id="missing-row"),
        pytest.param(
            '["France", "USA", "Spain", "Italy"]',
            COUNTRIES,
            False,
            False,
            id="extra-row",
        ),
        pytest.param("France\nUSA\nSpain", COUNTRIES, False, True, id="lines"),
        pytest.param("France\nUSA", COUNTRIES, False, False, id="lines-missing"),
        pytest.param('[["Ann", 35.5], ["Bob", 12.25]]', PAIRS, False, True, id="rows"),
        pytest.param(
            '[[12.25, "Bob"], [35.5, "Ann"]]', PAIRS, False, True, id="columns-swapped"
        ),
        pytest.param(
            '[["Ann", 35.5], ["Bob", 13]]', PAIRS, False, False, id="rows-value-off"
        ),
        pytest.param(
            '[{"name": "Ann", "amount": 35.5}, {"name": "Bob", "amount": 12.25}]',
            PAIRS,
            False,
            True,
            id="row-objects",
        ),
        pytest.param(
            '{"rows": [["Ann", 35.5], ["Bob", 12.25]]}',
            PAIRS,
            False,
            True,
            id="rows-object",
        ),
        pytest.param('["Ann", 35.5]', [("Ann", 35.5)], False, True, id="flat-row"),
        pytest.param(
            '[35.5, "ann"]', [("Ann", 35.5)], False, True, id="flat-row-any-order"
        ),
        pytest.param('["Ann", 35.5]', PAIRS, False, False, id="flat-row-vs-two-rows"),
        pytest.param(
            '[["Ann", [35.5]]]', [("Ann", 35.5)], False, False, id="nested-value"
        ),
        pytest.param(
            '[["Ann"], ["Bob", 1]]', [("Ann",), ("Bob",)], False, False, id="ragged"
        ),
        # ORDER BY
        pytest.param(
            '[["Cleo", 99], ["Ann", 35.5], ["Ann", 20]]',
            ORDERED,
            True,
            True,
            id="ordered",
        ),
        pytest.param(
            '[["Ann", 35.5], ["Cleo", 99], ["Ann", 20]]',
            ORDERED,
            True,
            False,
            id="order-swapped",
        ),
        pytest.param(
            '[["Ann", 35.5], ["Cleo", 99], ["Ann", 20]]',
            ORDERED,
            False,
            True,
            id="order-free-without-order-by",
        ),
        pytest.param(
            '[[99, "Cleo"], [35.5, "Ann"], [20, "Ann"]]',
            ORDERED,
            True,
            True,
            id="ordered-columns-swapped",
        ),
        # DISTINCT listings and colliding gold rows
        pytest.param(
            '["France", "USA"]', DUPLICATES, False, True, id="distinct-listing"
        ),
        pytest.param(
            '["France", "France", "USA"]', DUPLICATES, False, True, id="with-repeats"
        ),
        pytest.param(
            '["France", "USA", "USA"]', DUPLICATES, False, False, id="wrong-repeats"
        ),
        pytest.param('["France"]', DUPLICATES, False, False, id="distinct-missing"),
        pytest.param(
            '["volkswagen", "ford", " volkswagen"]',
            MAKERS,
            False,
            True,
            id="dev97-sql-distinct",
        ),
        pytest.param(
            '["volkswagen", "ford"]', MAKERS, False, True, id="dev97-compared-distinct"
        ),
        pytest.param(
            '["volkswagen", "ford", "volkswagen"]',
            MAKERS,
            False,
            True,
            id="dev97-spaces-lost",
        ),
        pytest.param(
            json.dumps([r[0] for r in MAKERS]), MAKERS, False, True, id="dev97-all-rows"
        ),
        pytest.param(
            '["ford", "ford", "volkswagen"]',
            MAKERS,
            False,
            False,
            id="dev97-wrong-repeats",
        ),
        pytest.param('["volkswagen"]', MAKERS, False, False, id="dev97-missing"),
        pytest.param(
            '["Dazed And Confused", "Dazed and Confused", "Help!"]',
            CASE_TITLES,
            False,
            True,
            id="case-collision-both",
        ),
        pytest.param(
            '["Dazed and Confused", "Help!"]',
            CASE_TITLES,
            False,
            True,
            id="case-collision-one",
        ),
        pytest.param(
            '["Help!"]', CASE_TITLES, False, False, id="case-collision-missing"
        ),
        pytest.param(
            '["", "Null", "Paris"]',
            NULL_SPELLINGS,
            False,
            True,
            id="null-collision-both",
        ),
        pytest.param(
            '[null, "Paris"]', NULL_SPELLINGS, False, True, id="null-collision-one"
        ),
        pytest.param(
            '["Paris"]', NULL_SPELLINGS, False, False, id="null-collision-missing"
        ),
        # NULL
        pytest.param("[null, 1]", [(None, 1)], False, True, id="null-json"),
        pytest.param('["None", 1]', [(None, 1)], False, True, id="null-none-text"),
        pytest.param('["", 1]', [(None, 1)], False, True, id="null-empty"),
        pytest.param("[0, 1]", [(None, 1)], False, False, id="null-is-not-zero"),
        # several plausible pairings of rounded rows
        pytest.param(
            "[[1.00, 1.00], [1.00, 1.01]]",
            [(1.004, 0.996), (1.001, 1.006)],
            False,
            True,
            id="ambiguous-rounded-rows",
        ),
        pytest.param(
            "[[1.00, 1.00], [1.00, 1.00]]",
            [(1.004, 0.996), (1.001, 1.006)],
            False,
            False,
            id="ambiguous-rounded-rows-wrong",
        ),
        pytest.param(
            '[["b", 1.00], ["a", 1.00]]',
            [("a", 1.004), ("b", 0.996)],
            False,
            True,
            id="rounded-rows-told-apart-by-text",
        ),
        # degenerate gold never pays
        pytest.param("[]", [], False, False, id="empty-gold"),
        pytest.param("null", [(None,)], False, False, id="all-null-gold"),
        pytest.param("[1, 2]", [(1,), (2, 3)], False, False, id="ragged-gold"),
    ],
)
def test_check_answer(
    answer: str, gold: list[tuple], order_matters: bool, expected: bool
) -> None:
    assert check(answer, gold, order_matters) is expected


@pytest.mark.parametrize(
    ("answer", "reading"),
    [
        pytest.param("42", "read as one value", id="scalar"),
        pytest.param("Paris, London", "read as one value", id="text-with-comma"),
        pytest.param("[]", "read as an empty list", id="empty-list"),
        pytest.param('["a"]', "read as a list of 1 value", id="list-of-one"),
        pytest.param("[1, 2, 3, 4]", "read as a list of 4 values", id="flat-list"),
        pytest.param("a\nb", "read as a list of 2 values (one per line)", id="lines"),
        pytest.param(
            "[[1, 2], [3, 4], [5, 6]]", "read as 3 rows x 2 columns", id="rows"
        ),
        pytest.param('[{"a": 1}]', "read as 1 row x 1 column", id="objects"),
        pytest.param("[[1], [2, 3]]", "read as 2 rows of 1 to 2 values", id="ragged"),
        pytest.param(
            json.dumps([[1]] * 10_000), "read as 10,000 rows x 1 column", id="many-rows"
        ),
        pytest.param(
            " " * (MAX_ANSWER_CHARS + 1),
            f"not read: longer than {MAX_ANSWER_CHARS:,} characters",
            id="too-long",
        ),
    ],
)
def test_reading_says_how_the_answer_was_read(answer: str, reading: str) -> None:
    golds = [
        prepare_gold([(1,)], False),
        prepare_gold(PAIRS, True),
        prepare_gold([], False),
    ]
    verdicts = {check_answer(answer, gold).reading for gold in golds}
    assert verdicts == {reading}  # the same for every gold: it tells nothing about it


def test_verdict_is_a_frozen_value() -> None:
    verdict = check_answer("6", prepare_gold([(6,)], False))
    assert verdict == Verdict(correct=True, reading="read as one value")
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.correct = False  # type: ignore[misc]


def test_gold_is_frozen_and_survives_pickling() -> None:
    gold = prepare_gold(MAKERS, order_matters=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        gold.width = 3  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(gold))
    assert isinstance(copy, Gold) and copy == gold
    assert check_answer('["volkswagen", "ford"]', copy).correct


def test_gold_is_normalised_once_not_per_answer() -> None:
    gold = prepare_gold(PAIRS, order_matters=False)
    before = pickle.dumps(gold)
    for answer in ('[["Ann", 35.5], ["Bob", 12.25]]', "x", "[[1, 2]]"):
        check_answer(answer, gold)
    assert pickle.dumps(gold) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("19.630", ("number", False, "1963", -2, 3), id="keeps-places"),
        pytest.param("1,200", ("number", False, "12", 2, 0), id="thousands"),
        pytest.param("$19,500.00", ("number", False, "195", 2, 2), id="currency"),
        pytest.param("-45%", ("number", True, "45", 0, 0), id="percent"),
        pytest.param("1e3", ("number", False, "1", 3, -3), id="exponent"),
        pytest.param("-0.00", ("number", False, "", 0, 2), id="negative-zero"),
        pytest.param(".5", ("number", False, "5", -1, 1), id="leading-dot"),
        pytest.param("1,20", None, id="short-group"),
        pytest.param("1.200,50", None, id="european"),
        pytest.param("$-5", None, id="sign-after-currency"),
        pytest.param("$45%", None, id="currency-and-percent"),
        pytest.param("١٢", None, id="non-ascii-digits"),
        pytest.param("-", None, id="sign-alone"),
    ],
)
def test_number_formats(text: str, expected: tuple | None) -> None:
    assert number_key(text) == expected


HOSTILE = [
    "",
    " ",
    "[" * 100_000,
    "{" * 100_000,
    '{"rows": 5}',
    '{"rows": []}',
    "[[]]",
    "{}",
    '{"rows": [1, [2], {"a": null}]}',
    "1" * 5000,
    "-" + "9" * 309,
    "0." + "0" * 100_000 + "1",
    "1e" + "9" * 5000,
    "1e-999999999",
    "\ud800",
    "\x00" * 10,
    "```",
    "```json\n```",
    "[1, 2" + ", 3" * 100_000,
    "[" + ",".join(["1e308"] * 1000) + "]",
    "NaN\nInfinity\n-Infinity",
    "$\n%\n.\n,\n-",
    json.dumps([["x" * 1000, 1.5]] * 100),
]
GOLDS = [
    prepare_gold([(6,)], False),
    prepare_gold([(19.6253,)], False),
    prepare_gold(PAIRS, True),
    prepare_gold(MAKERS, False),
    prepare_gold([(None, 1.5, "x", 2**62, b"\xff")], False),
    prepare_gold([(float("inf"), -0.0, 1e-320)], False),
    prepare_gold([], False),
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_answers_are_refused_without_raising(text: str) -> None:
    for gold in GOLDS:
        verdict = check_answer(text, gold)
        assert verdict.correct is False and verdict.reading


JSON_NUMBERS = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.from_regex(
        r"-?[0-9]{1,400}(\.[0-9]{0,400})?([eE][+-]?[0-9]{1,12})?", fullmatch=True
    ),
)
CELLS = st.one_of(st.none(), st.booleans(), st.text(max_size=20), JSON_NUMBERS)


def _json_text(value: object) -> str:
    if isinstance(value, str) and value and value[0] in "-0123456789":
        return value  # a literal number, possibly far past a double's range
    if isinstance(value, list):
        return "[" + ", ".join(_json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(k)}: {_json_text(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return json.dumps(value)


def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    keys = st.sampled_from(["rows", "a", "b"])
    return st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=3)


ANSWERS = st.one_of(
    st.text(),
    st.text(alphabet='0123456789,.$%eE+- \n[]{}"nul'),
    st.recursive(CELLS, _containers, max_leaves=40).map(_json_text),
)


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(text=ANSWERS)
def test_check_answer_never_raises(text: str) -> None:
    for gold in GOLDS:
        verdict = check_answer(text, gold)
        assert isinstance(verdict.correct, bool) and verdict.reading.startswith(
            ("read as", "not read")
        )


def wide_gold(rows: int = 10_000, columns: int = 10) -> list[tuple[float, ...]]:
    """Identical float columns: the shape that took the old search 389 s."""
    rng = random.Random(0)
    return [tuple([rng.uniform(0, 1000)] * columns) for _ in range(rows)]


WIDE = wide_gold()


def _wide_answers() -> dict[str, tuple[list[list], bool]]:
    rows = [list(r) for r in WIDE]
    rng = random.Random(1)
    shuffled = [row[::-1] for row in rows]
    rng.shuffle(shuffled)
    swapped = [row[:] for row in rows]
    swapped[0][0], swapped[1][0] = swapped[1][0], swapped[0][0]  # columns keep values
    nudged = [row[:] for row in rows]
    nudged[5][3] += 0.01
    return {
        "exact": (rows, True),
        "rounded-2": ([[round(v, 2) for v in row] for row in rows], True),
        "rounded-3": ([[round(v, 3) for v in row] for row in rows], True),
        "rows-shuffled-columns-reversed": (shuffled, True),
        "values-moved-between-rows": (swapped, False),
        "one-value-off-by-0.01": (nudged, False),
        "rounded-1": ([[round(v, 1) for v in row] for row in rows], False),
        "one-row-missing": (rows[1:], False),
    }


@pytest.mark.parametrize(("kind", "case"), _wide_answers().items())
def test_wide_gold_of_identical_float_columns_is_checked(
    kind: str, case: tuple[list[list], bool]
) -> None:
    answer, expected = case
    gold = prepare_gold(WIDE, order_matters=False)
    assert check_answer(json.dumps(answer), gold).correct is expected


def test_rows_match_reads_query_results_like_answers() -> None:
    gold = prepare_gold([("Ann", 19.6253)], order_matters=False)
    assert rows_match(read_result([(19.63, "ann")]), gold)
    assert not rows_match(read_result([("Ann", 19.6)]), gold)
    assert not rows_match(read_result([("Ann", 19.6253)]), prepare_gold([], False))


def test_cell_f1_rises_with_overlap() -> None:
    gold = prepare_gold([("a", 1), ("b", 2)], order_matters=False)
    assert cell_f1(read_result([]), gold) == 0.0
    one, two = read_result([["a"]]), read_result([["a", 1]])
    assert 0 < cell_f1(one, gold) < cell_f1(two, gold) < 1.0
    assert cell_f1(read_result([[2, "b"], [1.0, "a"]]), gold) == 1.0


def test_is_degenerate() -> None:
    assert is_degenerate([]) and is_degenerate([(None, None)])
    assert not is_degenerate([(None, 0)])


# -------------------------------------------------- official execution rules

# Expected values are the outcomes of the official functions themselves, run on
# this table at development time (never derived with our code):
# - spider: result_eq(gold, predicted, order_matters) from taoyds/test-suite-sql-eval
#   exec_eval.py (file at commit 14784c3546b8aac64dc6ce018ce923bc5efbc75d,
#   repository head e97acc546ecbee8fa27fa8dbf025ef61493a876c);
# - bird: calculate_ex(predicted, gold) from bird-bench/mini_dev
#   evaluation/evaluation_ex.py (head 4d970a9a97b172101840c661d74cc5a5e1c6ffa4);
#   AlibabaResearch/DAMO-ConvAI bird/llm/src/evaluation.py execute_sql (file at
#   dec31ae335d7a5168ee17d5cc40c105e0da66d4e) gave the same on every case it
#   can run (SQLite-typed rows of equal width).
EXECUTION_CASES = [
    # id, predicted, gold, order_matters, spider, bird
    ("identical", [(1, "a"), (2, "b")], [(1, "a"), (2, "b")], False, True, True),
    ("rows-reordered", [(2, "b"), (1, "a")], [(1, "a"), (2, "b")], False, True, True),
    (
        "rows-reordered-ordered",
        [(2, "b"), (1, "a")],
        [(1, "a"), (2, "b")],
        True,
        False,
        True,
    ),
    (
        "columns-permuted",
        [("a", 1), ("b", 2)],
        [(1, "a"), (2, "b")],
        False,
        True,
        False,
    ),
    (
        "columns-permuted-ordered",
        [("a", 1), ("b", 2)],
        [(1, "a"), (2, "b")],
        True,
        True,
        False,
    ),
    ("repeats-differ", [(1,), (1,), (2,)], [(1,), (2,), (2,)], False, False, True),
    ("repeats-dropped", [(1,), (2,)], [(1,), (1,), (2,)], False, False, True),
    ("int-vs-float", [(1.0,)], [(1,)], False, True, True),
    ("int-vs-bool", [(True, 5)], [(1, 5)], False, False, True),
    ("bool-sorts-after-digits", [(True, 0)], [(1, 0)], False, True, True),
    ("case-differs", [("A",)], [("a",)], False, False, False),
    ("trailing-space", [("a ",)], [("a",)], False, False, False),
    ("text-vs-int", [("1",)], [(1,)], False, False, False),
    ("float-noise", [(0.30000000000000004,)], [(0.3,)], False, False, False),
    ("float-rounded", [(19.63,)], [(19.6253,)], False, False, False),
    ("null-equal", [(None, 1)], [(None, 1)], False, True, True),
    ("null-vs-empty", [("", 1)], [(None, 1)], False, False, False),
    ("both-empty", [], [], False, True, True),
    ("predicted-empty", [], [(1,)], False, False, False),
    ("gold-empty", [(1,)], [], False, False, False),
    ("wider-prediction", [(1, 2)], [(1,)], False, False, False),
    ("narrower-prediction", [(1,)], [(1, 2)], False, False, False),
    ("same-values-other-rows", [(1, 2), (2, 1)], [(1, 1), (2, 2)], False, False, False),
    ("column-swap-within-rows", [(1, 2), (3, 4)], [(2, 1), (4, 3)], False, True, False),
    ("column-swap-one-row", [(1, 2), (3, 4)], [(2, 1), (3, 4)], False, False, False),
    (
        "four-columns-permuted",
        [(4, 3, 2, 1), (8, 7, 6, 5)],
        [(1, 2, 3, 4), (5, 6, 7, 8)],
        False,
        True,
        False,
    ),
    (
        "four-equal-columns",
        [(1, 1, 1, 1), (2, 2, 2, 2)],
        [(1, 1, 1, 1), (2, 2, 2, 2)],
        False,
        True,
        True,
    ),
    (
        "five-columns-one-off",
        [(1, 2, 3, 4, 5), (1, 2, 3, 4, 6)],
        [(1, 2, 3, 4, 5), (1, 2, 3, 4, 5)],
        False,
        False,
        False,
    ),
    (
        "six-columns-values-moved",
        [(1, 1, 1, 1, 1, 2), (2, 2, 2, 2, 2, 1)],
        [(1, 1, 1, 1, 1, 1), (2, 2, 2, 2, 2, 2)],
        False,
        False,
        False,
    ),
    (
        "six-columns-rows-swapped",
        [(2,) * 6, (1,) * 6],
        [(1,) * 6, (2,) * 6],
        False,
        True,
        True,
    ),
    (
        "six-columns-rows-swapped-ordered",
        [(2,) * 6, (1,) * 6],
        [(1,) * 6, (2,) * 6],
        True,
        False,
        True,
    ),
    (
        "ordered-columns-permuted",
        [(3, "x"), (1, "y")],
        [("x", 3), ("y", 1)],
        True,
        True,
        False,
    ),
    ("single-column-ragged", [(1,), (2, 3)], [(1,), (2, 3)], True, True, True),
    ("bytes-vs-text", [(b"a",)], [("a",)], False, False, False),
    ("negative-zero", [(-0.0,)], [(0,)], False, True, True),
    ("big-integer", [(2**63 - 1,)], [(9223372036854775807,)], False, True, True),
    ("big-integer-as-float", [(float(2**63),)], [(2**63,)], False, True, True),
]


@pytest.mark.parametrize(
    ("predicted", "gold", "order_matters", "spider", "bird"),
    [pytest.param(*case[1:], id=case[0]) for case in EXECUTION_CASES],
)
def test_execution_match_rules_agree_with_the_official_code(
    predicted: list[tuple],
    gold: list[tuple],
    order_matters: bool,
    spider: bool,
    bird: bool,
) -> None:
    assert spider_execution_match(predicted, gold, order_matters) is spider
    assert bird_execution_match(predicted, gold) is bird


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        pytest.param([([1],)], [([1],)], id="unhashable-value"),
        pytest.param([(1, 2), (3,)], [(1, 2), (3,)], id="ragged-rows"),
        pytest.param([(10**5000,)], [(10**5000,)], id="integer-past-str-limit"),
    ],
)
def test_execution_match_returns_false_where_the_official_code_raises(
    predicted: list[tuple], gold: list[tuple]
) -> None:
    for order_matters in (False, True):
        assert spider_execution_match(predicted, gold, order_matters) is False
    if predicted[0] and isinstance(predicted[0][0], list):
        assert bird_execution_match(predicted, gold) is False


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("columns-reversed", True), ("rows-shuffled", True), ("values-moved", False)],
)
def test_spider_rule_on_wide_identical_columns_is_bounded(
    kind: str, expected: bool
) -> None:
    # The official search enumerates up to 10**10 column tuples here.
    gold = wide_gold(rows=2_000)
    predicted = [list(row) for row in gold]
    if kind == "columns-reversed":
        predicted = [row[::-1] for row in predicted]
    elif kind == "rows-shuffled":
        random.Random(2).shuffle(predicted)
    else:
        predicted[0][0], predicted[1][0] = predicted[1][0], predicted[0][0]
    assert spider_execution_match(predicted, gold, False) is expected


def parity_rows(width: int, parity: int) -> list[tuple[int, ...]]:
    """0/1 rows of one parity: every projection on fewer columns looks the same."""
    rows = itertools.product([0, 1], repeat=width)
    return [r for r in rows if sum(r) % 2 == parity]


def test_a_search_past_its_budget_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    gold = prepare_gold(parity_rows(9, 0), order_matters=False)
    assert not check_answer(json.dumps(parity_rows(9, 1)), gold).correct
    staircase = [tuple(range(k, k + 9)) for k in range(256)]
    gold = prepare_gold(staircase, order_matters=False)
    permuted = json.dumps([row[::-1] for row in staircase])  # found by the search
    assert check_answer(permuted, gold).correct
    monkeypatch.setattr(verifier, "MAX_WORK", 0)
    monkeypatch.setattr(verifier, "WORK_PER_CELL", 1)
    verdict = check_answer(permuted, gold)
    assert not verdict.correct and verdict.reading == "read as 256 rows x 9 columns"


def test_the_spider_rule_answers_false_past_its_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gold = [tuple(range(k, k + 6)) for k in range(50)]
    predicted = [row[::-1] for row in gold]
    assert spider_execution_match(predicted, gold, False)
    monkeypatch.setattr(execution_match, "MAX_SPIDER_WORK", 10)
    assert not spider_execution_match(predicted, gold, False)


GOLD_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_subnormal=False),
    st.text(alphabet="abcXYZ 019.,-", max_size=8),
)


@st.composite
def gold_and_answers(
    draw: st.DrawFn,
) -> tuple[list[tuple], bool, list[list], list[list]]:
    """A gold table, a right way of writing it, and a wrong one (one cell changed)."""
    width = draw(st.integers(1, 4))
    rows = draw(
        st.lists(st.tuples(*[GOLD_VALUES] * width), min_size=1, max_size=6).filter(
            lambda rs: not is_degenerate(rs)
        )
    )
    ordered = draw(st.booleans())
    places = draw(st.integers(2, 8))
    order = draw(st.permutations(range(width)))

    def written(value: object) -> object:
        if isinstance(value, float):
            return round(value, places)
        if isinstance(value, str):
            return draw(st.sampled_from([value, value.upper(), f" {value} "]))
        return value

    right = [[written(row[j]) for j in order] for row in rows]
    if not ordered:
        right = draw(st.permutations(right))
    wrong = [list(row) for row in rows]
    r, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, width - 1))
    value = wrong[r][c]
    if isinstance(value, bool | int):
        wrong[r][c] = value + 1
    elif isinstance(value, float):
        wrong[r][c] = value + 1.0
    else:
        wrong[r][c] = "zz" if value is None else f"{value}zz"
    return rows, ordered, list(right), wrong


@settings(max_examples=500, deadline=None, database=None)
@given(case=gold_and_answers())
def test_rewritten_gold_is_paid_and_a_changed_cell_is_not(
    case: tuple[list[tuple], bool, list[list], list[list]],
) -> None:
    rows, ordered, right, wrong = case
    gold = prepare_gold(rows, ordered)
    assert check_answer(json.dumps(right), gold).correct
    assert not check_answer(json.dumps(wrong), gold).correct
