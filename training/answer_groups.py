"""Which sampled answers are the same answer: the votes of majority@k.

- Answers by value are grouped by the verifier's reading of them
  (``read_answer``): the table the text is first read as (a flat list as one
  column), each cell as the verifier keys it (text trimmed and case-folded,
  the spellings of NULL as one, numbers at 15 significant digits), rows as a
  multiset. ``[[3]]``, ``3`` and ``["3.0"]`` are one answer.
- Answers by SQL are grouped by their result: each statement runs on the
  question's database in the sandbox the environment uses (``Sandbox``, same
  read-only rules and deadline), locally, and its rows are read as the verifier
  reads a QUERY result, as a multiset. A statement that fails does not vote.
  Without the dataset's data here (an evaluation over a server), they are
  grouped by their text with whitespace collapsed, a weaker grouping.

Nothing here reads a gold query or a gold result: the vote must be one a
deployed agent could hold. Rows are a multiset even where the gold orders them,
so two answers that differ only in row order vote together; the group's first
answer then decides its outcome (``metrics.majority_correct``).
"""

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from sql_env.models import AnswerMode
from sql_env.server.answer_reading import FLOAT_DIGITS, NUMBER, read_answer, significant
from sql_env.server.errors import SQLEnvError
from sql_env.server.question_bank import list_datasets, load_bank
from sql_env.server.sandbox import QUERY_TIMEOUT_S, Sandbox
from sql_env.server.verifier import read_result
from sql_env.training.rollout import Episode

Key = Hashable
# Names of the groupings, as the summary records them.
BY_READING = "value reading"
BY_RESULT = "sql result"
BY_TEXT = "sql text"


def table_key(table: Sequence[Sequence[Any]]) -> Key:
    """A table of verifier cells as an order-free key (rows as a multiset).

    >>> from sql_env.server.verifier import read_result
    >>> table_key(read_result([(1, "B"), (2.0, "a")])) == table_key(
    ...     read_result([("2", "A"), (1.0, "b")]))
    True
    """
    rows = [tuple(_cell_key(cell) for cell in row) for row in table]
    return tuple(sorted(rows, key=repr))


def _cell_key(cell: tuple) -> tuple:
    return significant(cell, FLOAT_DIGITS) if cell[0] == NUMBER else cell


def value_key(text: str) -> Key | None:
    """The group of a value answer: its first reading as a table (None: unread).

    >>> value_key("[[3]]") == value_key("3") == value_key('["3.0"]')
    True
    >>> value_key('["Paris", "Rome"]') == value_key("rome\\nparis")
    True
    """
    reading = read_answer(text)
    return table_key(reading.tables[0]) if reading.tables else None


def sql_text_key(sql: str) -> Key:
    """The group of a SQL answer by its text: whitespace collapsed, no final ``;``.

    >>> sql_text_key("SELECT  1 ;") == sql_text_key("SELECT 1")
    True
    """
    return " ".join(sql.split()).rstrip(";").rstrip()


class AnswerGrouper:
    """Group keys of the answers of one evaluation's episodes.

    Args:
        answer: The episodes' answer format.
        dataset: Their dataset.
        data_dir: Where that dataset's data is built, if it is here.
        timeout_s: Deadline of each SQL answer's local run.
    """

    def __init__(
        self,
        answer: AnswerMode,
        dataset: str,
        data_dir: Path | None = None,
        timeout_s: float = QUERY_TIMEOUT_S,
    ) -> None:
        self._answer = answer
        self._timeout_s = timeout_s
        local = data_dir is not None and dataset in list_datasets(Path(data_dir))
        self._bank = load_bank(Path(data_dir), dataset) if local else None
        self._sandboxes: dict[str, Sandbox] = {}
        self._results: dict[tuple[str, str], Key | None] = {}

    @property
    def grouping(self) -> str:
        """How answers are grouped: by reading, by SQL result or by SQL text."""
        if self._answer == "value":
            return BY_READING
        return BY_RESULT if self._bank is not None else BY_TEXT

    def key(self, episode: Episode) -> Key | None:
        """The group of an episode's answer (None: no answer, or it cannot vote)."""
        if episode.answer is None:
            return None
        if self._answer == "value":
            return value_key(episode.answer)
        if self._bank is None:
            return sql_text_key(episode.answer)
        memo = (episode.db_id, episode.answer)
        if memo not in self._results:
            self._results[memo] = self._result_key(*memo)
        return self._results[memo]

    def keys(self, episodes: Sequence[Episode]) -> list[Key | None]:
        """The group key of every episode, in order; closes the databases after."""
        try:
            return [self.key(episode) for episode in episodes]
        finally:
            self.close()

    def _result_key(self, db_id: str, sql: str) -> Key | None:
        assert self._bank is not None
        sandbox = self._sandboxes.get(db_id)
        if sandbox is None:
            sandbox = Sandbox(self._bank.db_path(db_id), timeout_s=self._timeout_s)
            self._sandboxes[db_id] = sandbox
        try:
            result = sandbox.execute(sql)
        except SQLEnvError:
            return None
        return (table_key(read_result(result.rows)), result.more_rows)

    def close(self) -> None:
        """Close the databases opened for SQL answers; safe to call twice."""
        for sandbox in self._sandboxes.values():
            sandbox.close()
        self._sandboxes.clear()
