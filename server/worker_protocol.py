"""What the server and a SQL worker say to each other: jobs, replies, frames.

A frame is an 8-byte length and a pickled payload. Messages travel as plain
tuples (a tag, then their fields), not as pickled dataclasses: pickling a
frozen dataclass costs several times more than the job itself for the small
results most QUERY steps return. Agent errors (``SQLEnvError``) travel as their
class name and message. Both sides are SQLEnv, so a payload is never foreign.
"""

import dataclasses
import pickle
import socket
import struct
import typing
from dataclasses import dataclass
from typing import Any

from sql_env.server import errors
from sql_env.server.formatting import TableView
from sql_env.server.verifier import Verdict

_HEADER = struct.Struct("!Q")
HEADER_SIZE = _HEADER.size
_ERROR_TAG = -1


@dataclass(frozen=True, slots=True)
class GoldRef:
    """Where a question's gold result is: a bank file and the question's id."""

    bank: str
    question_id: str


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Run one statement in the sandbox of a database.

    Attributes:
        db_path: The database file.
        sql: The statement (agent input, or SAMPLE's generated statement).
        timeout_s: SQLite's deadline for it, execution and fetch together.
        row_count: The table's size when the statement is SAMPLE's prefix.
        score: In shaped mode, the gold result the rows are compared with.
    """

    db_path: str
    sql: str
    timeout_s: float
    row_count: int | None = None
    score: GoldRef | None = None


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """What the server needs of a statement's result: never more than is shown.

    ``potential`` is the result's closeness to the gold (shaped mode), None
    when not asked for or when the statement read no table.
    """

    view: TableView
    reads_table: bool
    potential: float | None = None


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    """Score an ANSWER text against a question's gold result."""

    gold: GoldRef
    text: str


@dataclass(frozen=True, slots=True)
class CheckSQL:
    """Run an ANSWER's SELECT and score its rows by a dataset's official rule.

    Attributes:
        db_path: The database file.
        sql: The agent's final statement.
        timeout_s: SQLite's deadline for it.
        gold: The question's gold result.
        rule: ``"spider"`` (test-suite ``result_eq``) or ``"bird"`` (row sets).
    """

    db_path: str
    sql: str
    timeout_s: float
    gold: GoldRef
    rule: str


@dataclass(frozen=True, slots=True)
class Ready:
    """The first frame a worker writes: it has started and set its limits."""

    pid: int


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    """A job raised something that is not an agent error: a bug, with its trace."""

    trace: str


Job = RunQuery | CheckAnswer | CheckSQL
# Every message type, by wire tag (its index); a new one goes at the end.
MESSAGES: tuple[type, ...] = (
    GoldRef,
    RunQuery,
    QueryOutcome,
    CheckAnswer,
    CheckSQL,
    Ready,
    WorkerFailure,
    TableView,
    Verdict,
)
_TAGS = {cls: tag for tag, cls in enumerate(MESSAGES)}
_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in MESSAGES}


def to_wire(message: Any) -> Any:
    """A message as nested tuples of plain values.

    >>> to_wire(GoldRef("bank.sqlite", "spider/dev/0"))
    (0, 'bank.sqlite', 'spider/dev/0')
    """
    tag = _TAGS.get(type(message))
    if tag is not None:
        return (tag, *(_field(getattr(message, n)) for n in _FIELDS[type(message)]))
    if isinstance(message, errors.SQLEnvError):
        return (_ERROR_TAG, type(message).__name__, str(message))
    raise TypeError(f"not a worker message: {type(message).__name__}")


def _field(value: Any) -> Any:
    return to_wire(value) if type(value) in _TAGS else value


def from_wire(data: Any) -> Any:
    """The message ``to_wire`` made.

    >>> from_wire(to_wire(RunQuery("db.sqlite", "SELECT 1", 5.0))).sql
    'SELECT 1'
    """
    tag, *values = data
    if tag == _ERROR_TAG:
        name, message = values
        error = getattr(errors, name, None)
        if not (isinstance(error, type) and issubclass(error, errors.SQLEnvError)):
            error = errors.SQLEnvError
        return error(message)
    cls = MESSAGES[tag]
    nested = _NESTED[cls]
    return cls(
        *(
            from_wire(v) if i in nested and v is not None else v
            for i, v in enumerate(values)
        )
    )


def _message_fields(cls: type) -> frozenset[int]:
    """Positions of a message's fields that hold messages (decoded in turn)."""
    hints = typing.get_type_hints(cls)
    return frozenset(
        i
        for i, f in enumerate(dataclasses.fields(cls))
        if any(arg in _TAGS for arg in (hints[f.name], *typing.get_args(hints[f.name])))
    )


_NESTED = {cls: _message_fields(cls) for cls in MESSAGES}


def encode(message: Any) -> bytes:
    """One frame: an 8-byte length, then the pickled tuple of the message."""
    payload = pickle.dumps(to_wire(message), protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def decode(payload: bytes | bytearray | memoryview) -> Any:
    """The message in a frame's payload."""
    return from_wire(pickle.loads(payload))


def frame_length(header: bytes | bytearray) -> int:
    return _HEADER.unpack(header)[0]


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the other side closed the connection")
        got += n
    return bytes(buffer)


def read_frame(sock: socket.socket) -> Any:
    """Read one message from a blocking socket."""
    size = frame_length(_read_exactly(sock, HEADER_SIZE))
    return decode(_read_exactly(sock, size))
