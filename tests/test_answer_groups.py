"""Which answers vote together for majority@k: value readings and SQL results."""

from pathlib import Path

import pytest

from sql_env.server.question_bank import load_bank
from sql_env.training.answer_groups import (
    BY_READING,
    BY_RESULT,
    BY_TEXT,
    AnswerGrouper,
    value_key,
)
from sql_env.training.rollout import Episode


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param("[[3]]", "3", True, id="scalar-spellings"),
        pytest.param("3", '["3.0"]', True, id="number-precision"),
        pytest.param('[["Paris", 2]]', '[["paris ", 2.0]]', True, id="case-space"),
        pytest.param('[["a"], ["b"]]', "b\na", True, id="rows-any-order"),
        pytest.param("null", '[[""]]', True, id="null-spellings"),
        pytest.param("3", "4", False, id="other-number"),
        pytest.param('[["a", 1]]', '[[1, "a"]]', False, id="columns-in-order"),
        pytest.param('[["a"], ["a"]]', '[["a"]]', False, id="rows-a-multiset"),
    ],
)
def test_value_answers_group_by_their_reading(a: str, b: str, same: bool) -> None:
    assert (value_key(a) == value_key(b)) is same


def answered(db_id: str, answer: str | None) -> Episode:
    return Episode("q", db_id, "", "p", False, 0.0, 1, 0, False, True, answer=answer)


def test_sql_answers_group_by_their_result_on_the_database(
    tiny_data_dir: Path,
) -> None:
    grouper = AnswerGrouper("sql", "spider", tiny_data_dir)
    assert grouper.grouping == BY_RESULT
    keys = grouper.keys(
        [
            answered("shop", "SELECT count(*) FROM customer"),
            answered("shop", "SELECT 6"),
            answered("shop", "select COUNT(name) from customer"),
            answered("shop", "SELECT 7"),
            answered("shop", "SELECT nope FROM customer"),  # fails: no vote
            answered("shop", "DELETE FROM customer"),  # refused: no vote
            answered("shop", None),  # never answered: no vote
        ]
    )
    assert keys[0] == keys[1] == keys[2] != keys[3]
    assert keys[4:] == [None, None, None]


def test_sql_answers_group_by_text_without_the_data(tmp_path: Path) -> None:
    grouper = AnswerGrouper("sql", "spider", tmp_path / "nothing_here")
    assert grouper.grouping == BY_TEXT
    a, b, c = grouper.keys(
        [
            answered("shop", "SELECT  6 ;"),
            answered("shop", "SELECT 6"),
            answered("shop", "SELECT 3 + 3"),
        ]
    )
    assert a == b != c


def test_value_grouping_reads_no_database(tiny_data_dir: Path) -> None:
    grouper = AnswerGrouper("value", "spider", tiny_data_dir)
    assert grouper.grouping == BY_READING
    question = load_bank(tiny_data_dir).eligible("dev")[0]
    keys = grouper.keys([answered(question.db_id, "[[6]]"), answered("ghost", "6")])
    assert keys[0] == keys[1]
