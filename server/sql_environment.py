"""The episode state machine of SQLEnv: reset, four actions, and the reward."""

import asyncio
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import EnvironmentMetadata
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from sql_env.models import (
    AnswerMode,
    RewardMode,
    SchemaMode,
    SQLAction,
    SQLObservation,
    SQLState,
)
from sql_env.server import episode_text, formatting, rewards
from sql_env.server.errors import (
    AnswerFormatError,
    QueryTimeoutError,
    SQLEnvError,
    UnknownTableError,
)
from sql_env.server.question_bank import (
    DEFAULT_DATA_DIR,
    DEFAULT_DATASET,
    Question,
    QuestionBank,
    Table,
    list_datasets,
    load_bank,
)
from sql_env.server.sandbox import QUERY_TIMEOUT_S, is_utf8
from sql_env.server.verifier import Verdict
from sql_env.server.worker_pool import WorkerError, WorkerPool, shared_pool
from sql_env.server.worker_protocol import (
    CheckAnswer,
    CheckSQL,
    GoldRef,
    Job,
    QueryOutcome,
    RunQuery,
)

logger = logging.getLogger(__name__)

MAX_STEPS = 15
SAMPLE_ROWS = 5
HISTORY_ARG_CHARS = 160
# A 10,000-row answer written as JSON fits; a 14 MB one never reaches a worker.
MAX_ANSWER_CHARS = 1_000_000
MAX_EPISODE_ID_CHARS = 200
# A session whose frames arrive back to back (pipelined) keeps the event loop
# for at most this long before it yields to other sessions and to /health;
# yielding on every frame instead made each cost several times more.
FAIR_SLICE_S = 0.002
# The official execution-accuracy rule of each dataset for answers by SQL; any
# other dataset (a custom one) is scored by Spider's.
EXECUTION_RULES = {"bird": "bird"}
try:
    VERSION = version("openenv-sql-env")
except PackageNotFoundError:  # a source tree that was never installed
    VERSION = "0.0.0"


class ResetOptions(BaseModel):
    """The arguments of ``reset``, type-checked: a wrong type is a clear error."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    seed: int | None = None
    episode_id: str | None = Field(default=None, max_length=MAX_EPISODE_ID_CHARS)
    question_id: str | None = Field(default=None, max_length=200)
    dataset: str | None = Field(default=None, max_length=100)
    split: str = Field(default="train", max_length=50)
    db_id: str | None = Field(default=None, max_length=200)
    reward_mode: RewardMode = "binary"
    difficulty: str | None = Field(
        default=None,
        max_length=50,
        validation_alias=AliasChoices("difficulty", "hardness"),
    )
    index: int | None = None
    schema_mode: SchemaMode = Field(
        default="hidden", validation_alias=AliasChoices("schema", "schema_mode")
    )
    answer_mode: AnswerMode = Field(
        default="value", validation_alias=AliasChoices("answer", "answer_mode")
    )
    evidence: bool = True


def _reset_options(arguments: dict[str, Any]) -> ResetOptions:
    try:
        return ResetOptions.model_validate(arguments)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "arguments"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown reset argument {name!r}")
            else:
                problems.append(f"{name}: {error['msg']}")
        raise ValueError(
            f"Bad reset arguments: {'; '.join(problems)}. Valid: seed (int), "
            "episode_id, question_id, dataset, split, db_id, difficulty (strings), "
            "reward_mode ('binary' or 'shaped'), schema ('hidden' or 'given'), "
            "answer ('value' or 'sql'), evidence (bool), index (int)."
        ) from None


@dataclass(slots=True)
class _Episode:
    """Bookkeeping of the running episode, as plain attributes.

    Kept out of pydantic on purpose: validating the growing reward list on every
    assignment cost more than the SQL of a typical step. ``state`` builds the
    public ``SQLState`` from it when asked.
    """

    episode_id: str = ""
    question_id: str = ""
    dataset: str = ""
    db_id: str = ""
    split: str = ""
    reward_mode: str = "binary"
    schema_mode: str = "hidden"
    answer_mode: str = "value"
    evidence: str = ""
    step_count: int = 0
    done: bool = False
    truncated: bool = False
    answer_correct: bool | None = None
    rewards: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Step:
    """One step between its start (bookkeeping) and its end (the worker's reply)."""

    action: SQLAction
    job: Job | None = None
    result: str = ""
    error: str = ""
    view: formatting.TableView | None = None
    answered: bool = False
    correct: bool = False
    reading: str = ""
    potential: float | None = None


class SQLEnvironment(Environment[SQLAction, SQLObservation, SQLState]):
    """Answer a question about a real SQLite database by exploring it.

    ## Description
    Each episode is one Spider question. The agent sees the question and the
    table names only, explores the database with read-only actions, and ends
    the episode with an answer that is checked against the gold query's result
    (rules in ``sql_env.server.verifier`` and docs/reward.md).

    ## Actions
    ``SQLAction(action_type, argument)``:
    - ``DESCRIBE`` table: columns with types, primary key, foreign keys, rows.
    - ``SAMPLE`` table: its first 5 rows.
    - ``QUERY`` sql: one read-only statement; at most 20 rows are shown, with
      "showing 20 of N rows", cells and output size capped.
    - ``ANSWER`` value: JSON (scalar, list, list of rows) or text, one value per
      line, at most ``MAX_ANSWER_CHARS``; ends the episode and scores it.

    ## Observation
    ``SQLObservation``: ``question``, ``evidence`` (BIRD's hint, when shown),
    ``question_id``, ``db_id``, ``tables``, ``action_type``, ``result`` (text),
    ``error`` (text, empty on success), ``step_count``, ``budget_remaining``,
    ``history`` (one line per action), ``done``, ``truncated``,
    ``answer_correct``, ``reward``; at reset only, ``instructions`` (the tools
    and answer format of the episode's settings) and ``db_schema`` (CREATE
    TABLE statements, when the schema is given).

    ## Rewards
    ``binary`` (default): 1.0 for a correct ANSWER, else 0.0 on every step.
    ``shaped``: adds ``0.2 * (phi' - phi)`` progress (phi: closeness of the
    latest QUERY result that read a table to the gold result, in [0, 1]) and
    ``-0.01`` per step; a correct episode returns >= 0.85, any other <= 0.19.
    See ``sql_env.server.rewards``.

    ## Starting state
    A question drawn from a dataset's split (seeded by ``seed``) or named by
    ``question_id``; the observation holds the question (with its evidence
    unless ``evidence=False``), the database id, its table names, the step
    budget, the instructions, and the schema if ``schema="given"``.

    ## Episode end
    - *terminated*: the agent sent ANSWER (``done=True``, ``truncated=False``).
    - *truncated*: the step budget ran out without an answer (``done=True``,
      ``truncated=True``, outcome reward 0).
    Errors (bad SQL, writes, timeouts, unknown tables) cost a step but never end
    the episode. Any action after the end returns an error saying to reset.

    ## Arguments
    ``SQLEnvironment(data_dir, max_steps=15, query_timeout_s=5.0, pool=None)``;
    ``reset(seed, episode_id, question_id, dataset="spider", split="train",
    db_id, difficulty, index, reward_mode="binary", schema="hidden",
    answer="value", evidence=True)``, each type-checked (a wrong type is a
    ``ValueError``, which the server answers with a 4xx or an error frame).
    ``answer="sql"``: ANSWER carries one SELECT, which runs in the sandbox and
    is scored by the dataset's official execution rule (BIRD's for ``bird``,
    Spider's test-suite rule otherwise); a statement that fails scores 0.

    ## Isolation
    Every statement built from agent input, and every answer check, runs in a
    SQL worker process (``sql_env.server.worker_pool``) that is killed if it
    overruns its deadline; the environment itself runs no SQL and holds no gold
    result. One environment runs one operation at a time: a step, a reset or a
    close that arrives while another runs waits for it (``step_async`` and
    ``reset_async``, from one event loop) or for its lock (``step``, ``reset``,
    from threads); mixing both on one environment at once is refused.

    ## Version history
    - 0.2.0: SQL and answer checks in killable worker processes; one operation
      at a time per environment; ANSWER size cap; shaped progress only for
      queries that read a table; typed reset arguments; datasets, schema given
      or hidden, answers by value or by SQL, instructions at reset.
    - 0.1.0: first release (Spider train/dev, binary and shaped rewards).
    """

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        max_steps: int = MAX_STEPS,
        query_timeout_s: float = QUERY_TIMEOUT_S,
        pool: WorkerPool | None = None,
    ) -> None:
        super().__init__()
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self._data_dir = Path(data_dir or DEFAULT_DATA_DIR)
        self._datasets = list_datasets(self._data_dir)
        if not self._datasets:
            load_bank(self._data_dir)  # raises, saying to run `make data`
        self._default_dataset = (
            DEFAULT_DATASET if DEFAULT_DATASET in self._datasets else self._datasets[0]
        )
        self._bank: QuestionBank = load_bank(self._data_dir, self._default_dataset)
        self.max_steps = max_steps
        self.query_timeout_s = query_timeout_s
        self._pool = pool
        self._rng = random.Random()
        self._question: Question | None = None
        self._episode = _Episode()
        self._tables: list[str] = []
        self._history: list[str] = []
        self._potential = 0.0
        self._last_view: formatting.TableView | Table | None = None
        # One operation at a time: threads wait on the lock; coroutines of one
        # event loop queue on the asyncio lock, then hold the thread lock too.
        self._lock = threading.Lock()
        self._async_lock = asyncio.Lock()
        self._turn_started = 0.0
        # Who the SQL workers serve: the pool serves the lightest user first.
        self._tenant = object()
        self._closed = False

    @property
    def pool(self) -> WorkerPool:
        """The SQL workers this environment's jobs run on."""
        if self._pool is None:
            self._pool = shared_pool()
        return self._pool

    @property
    def last_view(self) -> formatting.TableView | Table | None:
        """The structure behind the latest result text: a table view or a schema.

        For the web page, which shows tables instead of the text an agent reads.
        """
        return self._last_view

    # ----------------------------------------------------------------- reset

    def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        **options: Any,
    ) -> SQLObservation:
        """Start an episode on a named or sampled question.

        Raises:
            ValueError: An unknown or mistyped argument, question id, split,
                database, difficulty, reward mode, or an index out of range.
        """
        with self._lock:
            return self._reset(seed=seed, episode_id=episode_id, **options)

    async def reset_async(self, **options: Any) -> SQLObservation:
        """``reset`` for the OpenEnv server, on its event loop: it runs no SQL."""
        async with self._async_lock:
            await self._take_turn()
            if not self._lock.acquire(blocking=False):
                raise RuntimeError("the environment is busy in another thread")
            try:
                return self._reset(**options)
            finally:
                self._lock.release()

    async def _take_turn(self) -> None:
        """Yield the event loop if this session has held it for a whole slice.

        OpenEnv reads a socket's next frame without waiting when one is
        buffered, so a client that pipelines frames would otherwise keep the
        loop from every other session until it stops.
        """
        if time.monotonic() - self._turn_started >= FAIR_SLICE_S:
            await asyncio.sleep(0)
            self._turn_started = time.monotonic()

    def _reset(self, **arguments: Any) -> SQLObservation:
        if self._closed:
            raise ValueError("This environment is closed; open a new session.")
        options = _reset_options(arguments)
        if options.seed is not None:
            self._rng = random.Random(options.seed)
        bank = self._bank_of(options)
        question = self._pick(bank, options)
        self._bank = bank
        self._question = question
        self._history = []
        self._potential = 0.0
        self._last_view = None
        self._episode = _Episode(
            episode_id=options.episode_id or str(uuid.uuid4()),
            question_id=question.id,
            dataset=bank.dataset,
            db_id=question.db_id,
            split=question.split,
            reward_mode=options.reward_mode,
            schema_mode=options.schema_mode,
            answer_mode=options.answer_mode,
            evidence=question.evidence if options.evidence else "",
        )
        schema = bank.schema(question.db_id)
        self._tables = schema.table_names
        return self._observation(
            action_type="RESET",
            result=f"Database {question.db_id} has tables: {', '.join(self._tables)}.",
            db_schema=(
                episode_text.render_ddl(schema.tables)
                if options.schema_mode == "given"
                else ""
            ),
            instructions=episode_text.instructions(
                schema_mode=options.schema_mode,
                answer_mode=options.answer_mode,
                rule=self._rule(bank.dataset),
                max_steps=self.max_steps,
                evidence=bool(self._episode.evidence),
            ),
        )

    def _bank_of(self, options: ResetOptions) -> QuestionBank:
        """The bank of the requested dataset (named, or the question id's)."""
        dataset = options.dataset
        if options.question_id is not None:
            named = options.question_id.split("/", 1)[0]
            if dataset is not None and dataset != named:
                raise ValueError(
                    f"question_id {options.question_id!r} is not in dataset "
                    f"{dataset!r}."
                )
            dataset = named if named in self._datasets else dataset
        dataset = dataset or self._default_dataset
        if dataset not in self._datasets:
            raise ValueError(
                f"Unknown dataset {dataset[:60]!r}; built here: "
                f"{', '.join(self._datasets)} (run `make data DATASET=...`)."
            )
        return load_bank(self._data_dir, dataset)

    @staticmethod
    def _rule(dataset: str) -> str:
        return EXECUTION_RULES.get(dataset, "spider")

    def _pick(self, bank: QuestionBank, options: ResetOptions) -> Question:
        if options.question_id is not None:
            try:
                question = bank.get(options.question_id)
            except KeyError:
                raise ValueError(
                    f"Unknown question_id {options.question_id!r}; ids look like "
                    "'spider/dev/0' or 'spider/train/12'."
                ) from None
            if question.excluded is not None:
                raise ValueError(
                    f"Question {question.id} is excluded from play "
                    f"({question.excluded.split(':')[0]}); see the build report."
                )
            return question
        split, db_id, difficulty = options.split, options.db_id, options.difficulty
        if split not in bank.splits:  # a copy of a short tuple
            raise ValueError(
                f"Unknown split {split[:60]!r} of {bank.dataset}; use one of "
                f"{', '.join(bank.splits)}."
            )
        if difficulty is not None and difficulty not in bank.levels:
            raise ValueError(
                f"Unknown difficulty {difficulty[:60]!r} of {bank.dataset}; use one "
                f"of {', '.join(bank.levels)}."
            )
        if db_id is not None:
            homes = bank.splits_of(db_id)
            if not homes:
                raise ValueError(
                    f"Unknown db_id {db_id[:60]!r}; split {split!r} has: "
                    f"{', '.join(bank.db_ids(split))}."
                )
            if split not in homes:
                raise ValueError(
                    f"Database {db_id!r} belongs to split(s) {', '.join(homes)}, "
                    f"not {split!r}; pass split={homes[0]!r}."
                )
        pool = bank.eligible(split, db_id=db_id, difficulty=difficulty)
        if not pool:
            raise ValueError(
                f"No playable questions for split={split!r}, "
                f"db_id={db_id!r}, difficulty={difficulty!r}."
            )
        if options.index is not None:
            if not 0 <= options.index < len(pool):
                raise ValueError(
                    f"index {options.index} out of range 0..{len(pool) - 1}."
                )
            return pool[options.index]
        return pool[self._rng.randrange(len(pool))]

    # ------------------------------------------------------------------ step

    def step(
        self, action: SQLAction, timeout_s: float | None = None, **kwargs: Any
    ) -> SQLObservation:
        """Apply one action; agent mistakes come back in ``error``.

        Blocks this thread while a SQL worker runs the action's job.
        """
        with self._lock:
            step = self._begin(action)
            if step is None:
                return self._after_end(action)
            if step.job is not None:
                try:
                    reply = self.pool.run(
                        step.job, self.query_timeout_s, tenant=self._tenant
                    )
                    self._settle(step, reply)
                except (SQLEnvError, WorkerError) as exc:
                    self._settle(step, exc)
            return self._finish(step)

    async def step_async(
        self, action: SQLAction, timeout_s: float | None = None, **kwargs: Any
    ) -> SQLObservation:
        """``step`` for the OpenEnv server: the event loop never waits on a job.

        DESCRIBE (schema facts) and the bookkeeping of every step run on the
        event loop and cost microseconds; SQL and answer checks are jobs for a
        SQL worker, awaited without a thread.
        """
        async with self._async_lock:
            await self._take_turn()
            if not self._lock.acquire(blocking=False):
                raise RuntimeError("the environment is busy in another thread")
            try:
                step = self._begin(action)
                if step is None:
                    return self._after_end(action)
                if step.job is not None:
                    try:
                        reply = await self.pool.run_async(
                            step.job, self.query_timeout_s, tenant=self._tenant
                        )
                    except (SQLEnvError, WorkerError) as exc:
                        reply = exc
                    self._turn_started = time.monotonic()  # it waited: a new turn
                    self._settle(step, reply)
                return self._finish(step)
            finally:
                self._lock.release()

    def _begin(self, action: SQLAction) -> _Step | None:
        """Count the step and do what needs no worker; None after the end."""
        question = self._question
        if question is None or self._episode.done or self._closed:
            return None
        self._episode.step_count += 1
        self._last_view = None
        step = _Step(action)
        if not is_utf8(action.argument):
            # A lone surrogate can neither reach SQLite nor go back out as JSON
            # in the history: keep a printable copy and answer an error.
            step.action = action.model_copy(
                update={"argument": action.argument.encode("utf-8", "replace").decode()}
            )
            step.error = "The argument is not valid Unicode text; send plain UTF-8."
            return step
        try:
            match action.action_type:
                case "DESCRIBE":
                    table = self._table(action.argument)
                    step.result = formatting.render_schema(table)
                    self._last_view = table
                case "SAMPLE":
                    table = self._table(action.argument)
                    quoted = '"' + table.name.replace('"', '""') + '"'
                    step.job = RunQuery(
                        str(self._bank.db_path(question.db_id)),
                        f"SELECT * FROM {quoted} LIMIT {SAMPLE_ROWS}",
                        self.query_timeout_s,
                        row_count=table.row_count,
                    )
                case "QUERY":
                    shaped = self._episode.reward_mode == "shaped"
                    step.job = RunQuery(
                        str(self._bank.db_path(question.db_id)),
                        action.argument,
                        self.query_timeout_s,
                        score=self._gold_ref() if shaped else None,
                    )
                case "ANSWER":
                    if len(action.argument) > MAX_ANSWER_CHARS:
                        raise AnswerFormatError(
                            f"The answer is longer than {MAX_ANSWER_CHARS:,} "
                            "characters; answer with the result rows only."
                        )
                    if self._episode.answer_mode == "sql":
                        step.job = CheckSQL(
                            str(self._bank.db_path(question.db_id)),
                            action.argument,
                            self.query_timeout_s,
                            self._gold_ref(),
                            self._rule(self._episode.dataset),
                        )
                    else:
                        step.job = CheckAnswer(self._gold_ref(), action.argument)
        except SQLEnvError as exc:
            step.error = str(exc)
        return step

    def _gold_ref(self) -> GoldRef:
        assert self._question is not None
        return GoldRef(str(self._bank.path), self._question.id)

    def _settle(
        self, step: _Step, reply: QueryOutcome | Verdict | SQLEnvError | WorkerError
    ) -> None:
        """Take a worker's reply into the step."""
        match reply:
            case QueryOutcome():
                step.view = reply.view
                step.result = formatting.render_table(reply.view)
                self._last_view = reply.view
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
                step.action.action_type == "ANSWER"
                and self._episode.answer_mode == "sql"
            ):
                # A final statement that fails (here: killed at its deadline)
                # scores 0 and ends the episode, as the official evaluators do.
                self._settle(step, Verdict(False, f"the SQL failed: {reply}"))
            case QueryTimeoutError() if step.action.action_type == "ANSWER":
                step.error = (
                    "Checking the answer took too long; send the result rows only."
                )
            case SQLEnvError():
                step.error = str(reply)
            case WorkerError():
                logger.error("episode %s: %s", self._episode.episode_id, reply)
                step.error = "Internal error while running this action; it was logged."

    def _finish(self, step: _Step) -> SQLObservation:
        """Reward, history and episode end of a step whose outcome is known."""
        episode = self._episode
        potential = self._potential if step.potential is None else step.potential
        reward = rewards.step_reward(
            episode.reward_mode,
            answered=step.answered,
            correct=step.correct,
            potential_before=self._potential,
            potential_after=potential,
        )
        self._potential = potential
        self._history.append(self._history_line(step))
        result = step.result
        truncated = not step.answered and episode.step_count >= self.max_steps
        if truncated:
            result = (result + "\n" if result else "") + (
                "Step budget exhausted: the episode is over."
            )
        episode.rewards.append(reward)
        if step.answered or truncated:
            episode.done = True
            episode.truncated = truncated
            episode.answer_correct = step.correct if step.answered else None
            logger.debug("episode %s ended: %s", episode.episode_id, self._history[-1])
        return self._observation(
            action_type=step.action.action_type,
            result=result,
            error=step.error,
            reward=reward,
            done=episode.done,
        )

    def _after_end(self, action: SQLAction) -> SQLObservation:
        if self._closed:
            message = "This environment is closed; open a new session."
        elif self._question is None:
            message = "No episode yet; call reset() first."
        else:
            message = "The episode is over; call reset() to start a new one."
        return self._observation(
            action_type=action.action_type, error=message, reward=0.0, done=True
        )

    def _table(self, name: str) -> Table:
        schema = self._bank.schema(self._episode.db_id)
        table = schema.find(name)
        if table is None:
            shown = name.strip()[:60]
            raise UnknownTableError(
                f"Unknown table {shown!r}. Tables: {', '.join(schema.table_names)}."
            )
        return table

    @staticmethod
    def _history_line(step: _Step) -> str:
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

    def _observation(
        self,
        *,
        action_type: str,
        result: str = "",
        error: str = "",
        reward: float | None = 0.0,
        done: bool = False,
        db_schema: str = "",
        instructions: str = "",
    ) -> SQLObservation:
        question = self._question
        episode = self._episode
        # Every field is built here with its declared type, so pydantic's
        # validation (which re-checks the whole history each step) is skipped.
        return SQLObservation.model_construct(
            question=question.question if question else "",
            evidence=episode.evidence,
            question_id=question.id if question else "",
            db_id=question.db_id if question else "",
            tables=list(self._tables),
            db_schema=db_schema,
            instructions=instructions,
            action_type=action_type,
            result=result,
            error=error,
            step_count=episode.step_count,
            budget_remaining=max(0, self.max_steps - episode.step_count),
            history=list(self._history),
            truncated=episode.truncated,
            answer_correct=episode.answer_correct,
            done=done,
            reward=reward,
            metadata={},  # explicit: pydantic inspects a default_factory per call
        )

    # ------------------------------------------------------- state and tasks

    @property
    def state(self) -> SQLState:
        episode = self._episode
        return SQLState(
            episode_id=episode.episode_id or None,
            step_count=episode.step_count,
            question_id=episode.question_id,
            dataset=episode.dataset,
            db_id=episode.db_id,
            split=episode.split,
            reward_mode=episode.reward_mode,
            schema_mode=episode.schema_mode,
            answer_mode=episode.answer_mode,
            max_steps=self.max_steps if episode.question_id else 0,
            done=episode.done,
            truncated=episode.truncated,
            answer_correct=episode.answer_correct,
            rewards=list(episode.rewards),
            total_reward=sum(episode.rewards),
        )

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(
            name="sql_env",
            description=(
                "Text-to-SQL by exploration on Spider: DESCRIBE, SAMPLE and QUERY a "
                "read-only SQLite database, then ANSWER; the answer is checked "
                "against the gold query's result."
            ),
            version=VERSION,
            author="SQLEnv",
        )

    def list_splits(self) -> list[str]:
        """Task API: the splits with playable questions, as ``dataset/split``.

        The default dataset's splits are also reachable by their bare names
        (``dev``, ``train``).
        """
        return [
            f"{dataset}/{split}"
            for dataset in self._datasets
            for split in load_bank(self._data_dir, dataset).splits
            if load_bank(self._data_dir, dataset).eligible(split)
        ]

    def num_tasks(self, split: str) -> int:
        """Task API: number of playable questions (``index`` in reset)."""
        return len(self._tasks(split))

    def get_task(self, split: str, index: int) -> dict[str, Any]:
        """Task API: the public face of one question; never its gold data."""
        pool = self._tasks(split)
        if not 0 <= index < len(pool):
            raise IndexError(f"index {index} out of range for split {split!r}")
        return _task_spec(pool[index], index)

    def list_tasks(self, split: str) -> list[dict[str, Any]]:
        return [_task_spec(q, i) for i, q in enumerate(self._tasks(split))]

    def get_task_range(
        self, split: str, start: int | None = None, stop: int | None = None
    ) -> list[dict[str, Any]]:
        pool = self._tasks(split)
        indices = range(len(pool))[slice(start, stop)]
        return [_task_spec(pool[i], i) for i in indices]

    def _tasks(self, split: str) -> list[Question]:
        """Playable questions of ``dataset/split`` or of the default dataset's split."""
        dataset, _, name = split.rpartition("/")
        dataset = dataset or self._default_dataset
        if dataset not in self._datasets:
            raise ValueError(
                f"Unknown dataset {dataset[:60]!r}; splits: {self.list_splits()}."
            )
        bank = load_bank(self._data_dir, dataset)
        if name not in bank.splits:
            raise ValueError(
                f"Unknown split {split[:60]!r}; splits: {self.list_splits()}."
            )
        return bank.eligible(name)

    # ------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """End this environment; safe twice, from any thread.

        It holds no database connection and no worker between operations, so
        closing only refuses further resets and steps; an operation still
        running finishes by its deadline.
        """
        self._closed = True


def _task_spec(question: Question, index: int) -> dict[str, Any]:
    return {
        "id": question.id,
        "index": index,
        "dataset": question.dataset,
        "split": question.split,
        "db_id": question.db_id,
        "question": question.question,
        "evidence": question.evidence,
        "difficulty": question.difficulty,
    }
