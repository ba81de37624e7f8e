"""The one exception tree of SQLEnv.

Every agent mistake becomes one of these inside the engine; ``step()`` catches
``SQLEnvError`` (and nothing wider) and turns it into an observation's ``error``.
Messages are written for the agent: short, naming the valid options, and never
containing file paths, gold SQL or gold answers.
"""


class SQLEnvError(Exception):
    """An error the agent caused and can read; the episode goes on."""


class UnsafeQueryError(SQLEnvError):
    """The statement would write, attach, change settings, or is not one statement."""


class QueryError(SQLEnvError):
    """SQLite rejected the statement (syntax error, unknown column, ...)."""


class QueryTimeoutError(SQLEnvError):
    """The statement ran past its deadline and was interrupted."""


class ResourceLimitError(SQLEnvError):
    """The statement built a value or a result larger than the sandbox allows."""


class UnknownTableError(SQLEnvError):
    """DESCRIBE or SAMPLE named a table the database does not have."""


class AnswerFormatError(SQLEnvError):
    """ANSWER's argument cannot be checked as sent (too long, unreadable)."""


class WorkerError(RuntimeError):
    """A SQL worker failed on a job for a reason that is not the agent's (a bug)."""
