"""Answer checking: right answers pay, wrong ones never do."""

import pytest

from sql_env.server.verifier import (
    answer_matches,
    cell_f1,
    is_degenerate,
    normalize,
    parse_answer,
    results_match,
)

COUNTRIES = [("France",), ("USA",), ("Spain",)]
PAIRS = [("Ann", 35.5), ("Bob", 12.25)]
ORDERED = [("Cleo", 99.0), ("Ann", 35.5), ("Ann", 20.0)]
DUPLICATES = [("France",), ("France",), ("USA",)]


@pytest.mark.parametrize(
    ("answer", "gold", "order_matters", "expected"),
    [
        # scalars
        pytest.param("6", [(6,)], False, True, id="int-text"),
        pytest.param("6.0", [(6,)], False, True, id="int-as-float"),
        pytest.param("6.01", [(6,)], False, False, id="int-exact"),
        pytest.param("7", [(6,)], False, False, id="int-wrong"),
        pytest.param('"6"', [(6,)], False, True, id="json-string-number"),
        pytest.param("[6]", [(6,)], False, True, id="list-of-one"),
        pytest.param("[[6]]", [(6,)], False, True, id="table-of-one"),
        pytest.param("```json\n[[6]]\n```", [(6,)], False, True, id="code-fence"),
        pytest.param("29.88", [(29.875,)], False, True, id="float-rounded"),
        pytest.param("29.875", [(29.875,)], False, True, id="float-exact"),
        pytest.param("30.5", [(29.875,)], False, False, id="float-off-by-2pct"),
        pytest.param("2.01", [(2.0,)], False, True, id="float-gold-integral"),
        pytest.param("-0.5", [(-0.5,)], False, True, id="negative"),
        pytest.param("1e3", [(1000,)], False, True, id="scientific"),
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
        pytest.param(
            '["France", "USA"]', COUNTRIES, False, False, id="column-missing-row"
        ),
        pytest.param(
            '["France", "USA", "Spain", "Italy"]',
            COUNTRIES,
            False,
            False,
            id="column-extra-row",
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
        pytest.param('["Ann", 35.5]', [("Ann", 35.5)], False, True, id="flat-row"),
        pytest.param(
            '[35.5, "ann"]', [("Ann", 35.5)], False, True, id="flat-row-any-order"
        ),
        pytest.param('["Ann", 35.5]', PAIRS, False, False, id="flat-row-vs-two-rows"),
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
        # DISTINCT relaxation
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
        # NULL
        pytest.param("[null, 1]", [(None, 1)], False, True, id="null-json"),
        pytest.param('["None", 1]', [(None, 1)], False, True, id="null-none-text"),
        pytest.param('["", 1]', [(None, 1)], False, True, id="null-empty"),
        pytest.param("[0, 1]", [(None, 1)], False, False, id="null-is-not-zero"),
        # degenerate gold never pays
        pytest.param("[]", [], False, False, id="empty-gold"),
        pytest.param("null", [(None,)], False, False, id="all-null-gold"),
    ],
)
def test_answer_matches(
    answer: str, gold: list[tuple], order_matters: bool, expected: bool
) -> None:
    assert answer_matches(answer, gold, order_matters) is expected


def test_tolerance_is_configurable() -> None:
    assert not answer_matches("29.5", [(29.875,)], False, rel_tol=0.001)
    assert answer_matches("29.5", [(29.875,)], False, rel_tol=0.05)


def test_bool_json_counts_as_integer() -> None:
    assert answer_matches("true", [(1,)], False)


def test_blob_gold_compares_as_text() -> None:
    assert results_match([["abc"]], [(b"abc",)], False)


def test_many_columns_with_equal_values_finds_the_permutation() -> None:
    gold = [tuple(range(8)), tuple(range(1, 9))]
    candidate = [list(reversed(row)) for row in gold]
    assert results_match(candidate, gold, False)


def test_parse_answer_readings_of_a_flat_list() -> None:
    assert parse_answer("[1, 2]") == [[[1], [2]], [[1, 2]]]


def test_normalize_spellings_of_null() -> None:
    assert {normalize(v) for v in (None, "", "NULL", "none", " None ")} == {None}


def test_is_degenerate() -> None:
    assert is_degenerate([]) and is_degenerate([(None, None)])
    assert not is_degenerate([(None, 0)])


def test_cell_f1_rises_with_overlap() -> None:
    gold = [("a", 1), ("b", 2)]
    assert cell_f1([], gold) == 0.0
    assert 0 < cell_f1([["a"]], gold) < cell_f1([["a", 1]], gold) < 1.0
    assert cell_f1([[2, "b"], [1, "a"]], gold) == 1.0
