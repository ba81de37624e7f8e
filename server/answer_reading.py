"""How values and ANSWER texts are read into comparable cells.

One reading serves both sides: a gold cell from SQLite and a cell of the
agent's answer become the same kind of hashable key, so comparing them is a
dictionary lookup. The rules (with examples in docs/reward.md):

- NULL: ``None``, JSON ``null``, and the strings ``""``, ``"null"``, ``"none"``.
- Numbers are exact decimals, kept with the digits they were written with.
  JSON numbers never pass through ``float``: ``19.630`` keeps its three
  decimals and a 5,000-digit number stays a string of digits. Text reads as a
  number when its format is unambiguous: ``1,200`` and ``$19,500.00`` (commas
  only in groups of three), a leading currency sign (``$ € £ ¥``), a trailing
  ``%`` (``45%`` reads as 45, the number SQL computes as ``100.0 * part /
  whole``). ``1,20``, ``1.200,50``, ``1 200`` and ``12,00,000`` stay text.
- Text is trimmed and compared case-insensitively.
- A value that is itself a list or an object matches nothing.

Keys are tuples tagged by kind: ``(NULL,)``, ``(TEXT, s)``,
``(NUMBER, negative, digits, exponent)`` for the exact value
``±int(digits) * 10**exponent`` (digits without leading or trailing zeros),
and ``(FLOAT, ...)`` the same for a gold REAL at 15 significant digits.
"""

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_ANSWER_CHARS = 16_000_000  # the engine caps ANSWER near 1 MB; this guards callers
FLOAT_DIGITS = 15  # digits of a double that survive any summation order
MAX_EXPONENT_DIGITS = 9  # "1e99999999999" reads as text: no value is that large

NULL, TEXT, NUMBER, FLOAT, OTHER = "null", "text", "number", "float", "other"
NULL_KEY: tuple[str] = (NULL,)
OTHER_KEY: tuple[str] = (OTHER,)
NULL_TOKENS = frozenset({"", "null", "none"})
_NON_FINITE = {
    "inf": "inf",
    "+inf": "inf",
    "infinity": "inf",
    "+infinity": "inf",
    "-inf": "-inf",
    "-infinity": "-inf",
    "nan": "nan",
}
_NUMBER = re.compile(
    r"(?P<sign>[+-]?)(?P<currency>[$€£¥]?)"
    r"(?P<int>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]*)"
    r"(?:\.(?P<frac>[0-9]*))?"
    r"(?:[eE](?P<exp>[+-]?[0-9]+))?"
    r"(?P<percent>%?)"
)
_NUMBER_START = frozenset("+-$€£¥.0123456789")
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)

Key = tuple[Any, ...]
# An answer number: (NUMBER, negative, digits, exponent, places as written).
Cell = tuple[Any, ...]


def number_key(text: str) -> Cell | None:
    """The exact number a string spells, with its written decimals, or None.

    The result is ``(NUMBER, negative, digits, exponent, places)``; its first
    four items are the key of the value, ``places`` counts the decimals as
    written (``1e3`` has -3).

    >>> number_key("19.630")
    ('number', False, '1963', -2, 3)
    >>> number_key("$19,500.00"), number_key("-45%")
    (('number', False, '195', 2, 2), ('number', True, '45', 0, 0))
    >>> number_key("1,20") is None, number_key("1.5e3")
    (True, ('number', False, '15', 2, -2))
    """
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    sign, currency, whole, frac, exp, percent = match.groups()
    if not (whole or frac):
        return None
    grouped = "," in whole
    if grouped and whole[0] == "0":
        return None
    if currency and percent or exp is not None and (grouped or currency or percent):
        return None
    places = len(frac) if frac else 0
    if exp is not None:
        if len(exp.lstrip("+-")) > MAX_EXPONENT_DIGITS:
            return None
        places -= int(exp)
    digits = (whole.replace(",", "") + frac if frac else whole.replace(",", "")).lstrip(
        "0"
    )
    stripped = digits.rstrip("0")
    exponent = len(digits) - len(stripped) - places
    if not stripped:
        return (NUMBER, False, "", 0, places)
    return (NUMBER, sign == "-", stripped, exponent, places)


def read_text(text: str) -> Cell:
    """The cell a string stands for: NULL, a number, or trimmed casefolded text.

    >>> read_text(" Paris "), read_text("None"), read_text("042")
    (('text', 'paris'), ('null',), ('number', False, '42', 0, 0))
    """
    stripped = text.strip()
    if stripped and stripped[0] in _NUMBER_START:
        number = number_key(stripped)
        if number is not None:
            return number
    folded = stripped.casefold()
    if folded in NULL_TOKENS:
        return NULL_KEY
    return (TEXT, _NON_FINITE.get(folded, folded))


def read_value(value: Any) -> Cell:
    """The cell of a Python value from SQLite or JSON, as an answer cell.

    Floats are read from their shortest repr, so a QUERY result of
    ``ROUND(x, 2)`` keeps its two decimals.

    >>> read_value(3.5), read_value(True), read_value(None)
    (('number', False, '35', -1, 1), ('number', False, '1', 0, 0), ('null',))
    """
    if value is None:
        return NULL_KEY
    if isinstance(value, str):
        return read_text(value)
    if isinstance(value, bool):
        return read_text(str(int(value)))
    if isinstance(value, float):
        return read_text(repr(value))
    if isinstance(value, int):
        try:
            return read_text(str(value))
        except ValueError:  # past Python's 4,300-digit conversion limit
            return OTHER_KEY
    if isinstance(value, bytes):
        return read_text(value.decode("utf-8", errors="replace"))
    if isinstance(value, list | tuple | dict):
        return OTHER_KEY
    try:
        return read_text(str(value))
    except Exception:  # an arbitrary object's __str__ may fail
        return OTHER_KEY


def gold_key(value: Any) -> Key:
    """The key of a gold cell: answer cells are compared with it.

    A REAL is kept as its value to 15 significant digits (tag ``FLOAT``), so
    that answers follow their own written precision against it; integers and
    numeric text are exact (tag ``NUMBER``).

    >>> gold_key(19.625300000000003), gold_key(2), gold_key(" x ")
    (('float', False, '196253', -4), ('number', False, '2', 0), ('text', 'x'))
    """
    if isinstance(value, float) and math.isfinite(value):
        return float_key(value)
    cell = read_value(value)
    if cell == OTHER_KEY:  # a list, an object, an endless integer: nothing matches
        return ("unmatchable value",)
    return cell[:4] if cell[0] == NUMBER else cell


def float_key(value: float) -> Key:
    """A finite double at 15 significant digits, rounded from its repr.

    The repr is the text a QUERY result or a JSON answer shows for the double,
    so a double and its written form always get the same key.

    >>> float_key(0.1 + 0.2), float_key(-0.0)
    (('float', False, '3', -1), ('float', False, '', 0))
    >>> float_key(811.6287085078785)  # a tie at the 16th digit: half-even
    ('float', False, '811628708507878', -12)
    """
    cell = number_key(repr(value))
    assert cell is not None  # the repr of a finite float is always a number
    return significant(cell, FLOAT_DIGITS)


def significant(cell: Cell, digits: int) -> Key:
    """A number rounded half-even to ``digits`` significant digits (tag ``FLOAT``).

    >>> significant(number_key("19.625299999999996"), 15)
    ('float', False, '196253', -4)
    >>> significant(number_key("-9.99999"), 3)
    ('float', True, '1', 1)
    """
    negative, kept, exponent = cell[1], cell[2], cell[3]
    extra = len(kept) - digits
    if extra > 0:
        rest = kept[digits:]
        kept = kept[:digits]
        exponent += extra
        if (
            rest[0] > "5"
            or rest[0] == "5"
            and (rest[1:].strip("0") or kept[-1] in "13579")
        ):
            kept = str(int(kept) + 1)  # 999 carries into a new digit: 1000
    stripped = kept.rstrip("0")
    exponent += len(kept) - len(stripped)
    kept = stripped
    if not kept:
        return (FLOAT, False, "", 0)
    return (FLOAT, negative, kept, exponent)


def approximate(key: Key) -> float | None:
    """The double nearest a number key, or None when out of a double's range.

    >>> approximate(("number", True, "15", -1))
    -1.5
    >>> approximate(("number", False, "1", 999)) is None
    True
    """
    _, negative, digits, exponent = key[:4]
    if not digits:
        return 0.0
    magnitude = exponent + len(digits)
    if len(digits) > 40 or not -330 < magnitude < 310:
        return None
    return float(f"{'-' if negative else ''}{digits}e{exponent}")


# ----------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class AnswerReading:
    """The tables an ANSWER text may mean, and a sentence saying how it was read."""

    tables: tuple[tuple[tuple[Cell, ...], ...], ...]
    description: str


def read_answer(text: str) -> AnswerReading:
    """Every table an ANSWER argument may mean, and how it was read.

    JSON is parsed when it is JSON (a scalar, a list, a list of rows, objects);
    otherwise the text is one value, or one value per line. A flat list has
    two readings: one column, or one row.

    >>> read_answer("42").description
    'read as one value'
    >>> reading = read_answer('["a", "b"]')
    >>> reading.description, [len(t) for t in reading.tables]
    ('read as a list of 2 values', [2, 1])
    >>> read_answer('[["Ann", 35.5], ["Bob", 12]]').description
    'read as 2 rows x 2 columns'
    """
    if len(text) > MAX_ANSWER_CHARS:
        return AnswerReading(
            (), f"not read: longer than {MAX_ANSWER_CHARS:,} characters"
        )
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    parsed = _json(text)
    if parsed is _NOT_JSON:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) <= 1:
            return AnswerReading((((read_text(text),),),), "read as one value")
        items = [_line_value(line) for line in lines]
        return _readings(items, " (one per line)")
    return _readings(parsed, "")


_NOT_JSON = object()
_LINE_JSON_START = frozenset('[{"')


# Numbers stay their literal text: no float rounding, no int digit limit.
_DECODER = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=str)


def _json(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _line_value(line: str) -> Any:
    if line[0] in _LINE_JSON_START or line in ("true", "false"):
        value = _json(line)
        if value is not _NOT_JSON:
            return value
    return line


class _CellReader:
    """Reads JSON items into cells, once per distinct string of one answer."""

    def __init__(self) -> None:
        self.seen: dict[str, Cell] = {}

    def cell(self, item: Any) -> Cell:
        if isinstance(item, str):
            found = self.seen.get(item)
            if found is None:
                found = self.seen[item] = read_text(item)
            return found
        if item is None:
            return NULL_KEY
        if isinstance(item, bool):
            return read_text(str(int(item)))
        return OTHER_KEY

    def row(self, item: Any) -> tuple[Cell, ...]:
        if isinstance(item, list):
            return tuple(map(self.cell, item))
        if isinstance(item, dict):
            return tuple(map(self.cell, item.values()))
        return (self.cell(item),)


def _readings(parsed: Any, suffix: str) -> AnswerReading:
    reader = _CellReader()
    if isinstance(parsed, dict):
        rows = parsed.get("rows")
        parsed = rows if isinstance(rows, list) else [parsed]
        if not parsed:
            return AnswerReading(((),), "read as an empty list")
        return _rows_reading(parsed, suffix, reader)
    if not isinstance(parsed, list):
        return AnswerReading((((reader.cell(parsed),),),), "read as one value")
    if not parsed:
        return AnswerReading(((),), "read as an empty list")
    if any(isinstance(item, list | dict) for item in parsed):
        return _rows_reading(parsed, suffix, reader)
    cells = tuple(map(reader.cell, parsed))
    column = tuple((c,) for c in cells)
    count = _count(len(cells), "value")
    return AnswerReading((column, (cells,)), f"read as a list of {count}{suffix}")


def _rows_reading(
    items: Sequence[Any], suffix: str, reader: _CellReader
) -> AnswerReading:
    rows = tuple(map(reader.row, items))
    widths = sorted({len(r) for r in rows})
    if len(widths) == 1:
        shape = f"{_count(len(rows), 'row')} x {_count(widths[0], 'column')}"
    else:
        shape = f"{_count(len(rows), 'row')} of {widths[0]} to {widths[-1]} values"
    return AnswerReading((rows,), f"read as {shape}{suffix}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n:,} {noun}s"
