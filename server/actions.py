"""What each action does: from the agent's argument to a job, and a reply to an outcome.

``start`` checks an action against its episode and either settles it at once
(DESCRIBE reads the schema facts; a bad argument is an error) or gives it the
job a SQL worker runs (SAMPLE, QUERY, ANSWER). ``settle`` takes the worker's
reply (or its error) into the step, and ``history_line`` says it in one line.
No locks, no event loop, no reward: the episode engine does those.
"""

import logging
from dataclasses import dataclass

from sql_env.models import SQLAction
from sql_env.server import formatting
from sql_env.server.episode_choice import execution_rule
from sql_env.server.errors import (
    AnswerFormatError,
    QueryTimeoutError,
    SQLEnvError,
    UnknownTableError,
    WorkerError,
)
from sql_env.server.question_bank import Question, QuestionBank, Table
from sql_env.server.sandbox import is_utf8
from sql_env.server.verifier import Verdict
from sql_env.server.worker_protocol import (
    CheckAnswer,
    CheckSQL,
    GoldRef,
    Job,
    QueryOutcome,
    RunQuery,
)

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 5
HISTORY_ARG_CHARS = 160
# A 10,000-row answer written as JSON fits; a 14 MB one never reaches a worker.
MAX_ANSWER_CHARS = 1_000_000


@dataclass(frozen=True, slots=True)
class Setting:
    """What a step needs to know of its episode."""

    bank: QuestionBank
    question: Question
    reward_mode: str
    answer_mode: str
    timeout_s: float

    @property
    def db_path(self) -> str:
        return str(self.bank.db_path(self.question.db_id))

    @property
    def gold(self) -> GoldRef:
        return GoldRef(str(self.bank.path), self.question.id)


@dataclass(slots=True)
class Step:
    """One step between its start and its end (the worker's reply, if any)."""

    action: SQLAction
    job: Job | None = None
    result: str = ""
    error: str = ""
    view: formatting.TableView | None = None
    table: Table | None = None
    answered: bool = False
    correct: bool = False
    reading: str = ""
    potential: float | None = None


def start(action: SQLAction, setting: Setting) -> Step:
    """The step of ``action``: settled now, or waiting for ``step.job``."""
    step = Step(action)
    if not is_utf8(action.argument):
        # A lone surrogate can neither reach SQLite nor go back out as JSON in
        # the history: keep a printable copy and answer an error.
        step.action = action.model_copy(
            update={"argument": action.argument.encode("utf-8", "replace").decode()}
        )
        step.error = "The argument is not valid Unicode text; send plain UTF-8."
        return step
    try:
        match action.action_type:
            case "DESCRIBE":
                step.table = find_table(setting, action.argument)
                step.result = formatting.render_schema(step.table)
            case "SAMPLE":
                table = find_table(setting, action.argument)
                quoted = '"' + table.name.replace('"', '""') + '"'
                step.job = RunQuery(
                    setting.db_path,
                    f"SELECT * FROM {quoted} LIMIT {SAMPLE_ROWS}",
                    setting.timeout_s,
                    row_count=table.row_count,
                )
            case "QUERY":
                shaped = setting.reward_mode == "shaped"
                step.job = RunQuery(
                    setting.db_path,
                    action.argument,
                    setting.timeout_s,
                    score=setting.gold if shaped else None,
                )
            case "ANSWER":
                step.job = _answer_job(action.argument, setting)
    except SQLEnvError as exc:
        step.error = str(exc)
    return step


def _answer_job(argument: str, setting: Setting) -> Job:
    if len(argument) > MAX_ANSWER_CHARS:
        raise AnswerFormatError(
            f"The answer is longer than {MAX_ANSWER_CHARS:,} characters; answer "
            "with the result rows only."
        )
    if setting.answer_mode == "sql":
        return CheckSQL(
            setting.db_path,
            argument,
            setting.timeout_s,
            setting.gold,
            execution_rule(setting.bank.dataset),
        )
    return CheckAnswer(setting.gold, argument)


def find_table(setting: Setting, name: str) -> Table:
    """The episode's table named ``name`` (forgiving case and quotes)."""
    schema = setting.bank.schema(setting.question.db_id)
    table = schema.find(name)
    if table is None:
        shown = name.strip()[:60]
        raise UnknownTableError(
            f"Unknown table {shown!r}. Tables: {', '.join(schema.table_names)}."
        )
    return table


def settle(
    step: Step,
    reply: QueryOutcome | Verdict | SQLEnvError | WorkerError,
    answer_mode: str,
) -> None:
    """Take a worker's reply into the step."""
    match reply:
        case QueryOutcome():
            step.view = reply.view
            step.result = formatting.render_table(reply.view)
            if reply.potential is not None:
                step.potential = reply.potential
        case Verdict():
            step.answered = True
            step.correct = reply.correct
            step.reading = reply.reading
            verdict = "correct" if reply.correct else "incorrect"
            read = f" ({reply.reading})" if reply.reading else ""
            step.result = f"Answer submitted: {verdict}{read}."
        case SQLEnvError() if (
            step.action.action_type == "ANSWER" and answer_mode == "sql"
        ):
            # A final statement that fails (here: killed at its deadline)
            # scores 0 and ends the episode, as the official evaluators do.
            settle(step, Verdict(False, f"the SQL failed: {reply}"), answer_mode)
        case QueryTimeoutError() if step.action.action_type == "ANSWER":
            step.error = "Checking the answer took too long; send the result rows only."
        case SQLEnvError():
            step.error = str(reply)
        case WorkerError():
            logger.error("a SQL worker failed on a step: %s", reply)
            step.error = "Internal error while running this action; it was logged."


def history_line(step: Step) -> str:
    """``ACTION argument -> outcome``, from the step's structure, not its text."""
    argument = " ".join(step.action.argument[: HISTORY_ARG_CHARS * 4].split())
    if len(argument) > HISTORY_ARG_CHARS:
        argument = argument[: HISTORY_ARG_CHARS - 1] + "…"
    if step.error:
        outcome = "error: " + step.error[:80]
    elif step.view is not None:
        outcome = step.view.count_text()
    elif step.answered:
        outcome = "correct" if step.correct else "incorrect"
    else:
        outcome = step.result.split("\n", 1)[0] or "ok"
    return f"{step.action.action_type} {argument} -> {outcome}"
