"""The episode state machine of SQLEnv: reset, four actions, and the reward."""

import asyncio
import logging
import random
import threading
import time
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import EnvironmentMetadata

from sql_env.models import (
    MAX_STEPS,
    SQLAction,
    SQLObservation,
    SQLState,
)
from sql_env.server import actions, episode_text, formatting
from sql_env.server.episode_choice import (
    choose_bank,
    choose_question,
    execution_rule,
    reset_options,
)
from sql_env.server.episode_record import EpisodeRecord
from sql_env.server.errors import SQLEnvError, WorkerError
from sql_env.server.question_bank import (
    DEFAULT_DATA_DIR,
    DEFAULT_DATASET,
    Question,
    QuestionBank,
    Table,
    list_datasets,
    load_bank,
)
from sql_env.server.sandbox import QUERY_TIMEOUT_S
from sql_env.server.task_api import playable_splits, task_spec, tasks_of
from sql_env.server.verifier import Verdict
from sql_env.server.worker_pool import WorkerPool, shared_pool
from sql_env.server.worker_protocol import (
    QueryOutcome,
)

logger = logging.getLogger(__name__)

# A session whose frames arrive back to back (pipelined) keeps the event loop
# for at most this long before it yields to other sessions and to /health;
# yielding on every frame instead made each cost several times more.
FAIR_SLICE_S = 0.002
try:
    VERSION = version("openenv-sql-env")
except PackageNotFoundError:  # a source tree that was never installed
    VERSION = "0.0.0"


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
        self._record = EpisodeRecord(max_steps)
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
        options = reset_options(arguments)
        if options.seed is not None:
            self._rng = random.Random(options.seed)
        bank = choose_bank(
            self._data_dir, self._datasets, self._default_dataset, options
        )
        question = choose_question(bank, options, self._rng)
        schema = bank.schema(question.db_id)
        self._bank = bank
        self._last_view = None
        self._record = record = EpisodeRecord(
            self.max_steps,
            question=question,
            episode_id=options.episode_id or str(uuid.uuid4()),
            dataset=bank.dataset,
            reward_mode=options.reward_mode,
            schema_mode=options.schema_mode,
            answer_mode=options.answer_mode,
            evidence=question.evidence if options.evidence else "",
            tables=schema.table_names,
        )
        return record.observation(
            action_type="RESET",
            result=f"Database {question.db_id} has tables: {', '.join(record.tables)}.",
            db_schema=(
                episode_text.render_ddl(schema.tables)
                if options.schema_mode == "given"
                else ""
            ),
            instructions=episode_text.instructions(
                schema_mode=options.schema_mode,
                answer_mode=options.answer_mode,
                rule=execution_rule(bank.dataset),
                max_steps=self.max_steps,
                evidence=bool(record.evidence),
            ),
        )

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
            return self._record.finish(step)

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
                return self._record.finish(step)
            finally:
                self._lock.release()

    def _begin(self, action: SQLAction) -> actions.Step | None:
        """Count the step and do what needs no worker; None after the end."""
        record = self._record
        question = record.question
        if question is None or record.done or self._closed:
            return None
        record.step_count += 1
        step = actions.start(
            action,
            actions.Setting(
                self._bank,
                question,
                record.reward_mode,
                record.answer_mode,
                self.query_timeout_s,
            ),
        )
        self._last_view = step.table
        return step

    def _settle(
        self,
        step: actions.Step,
        reply: QueryOutcome | Verdict | SQLEnvError | WorkerError,
    ) -> None:
        actions.settle(step, reply, self._record.answer_mode)
        if step.view is not None:
            self._last_view = step.view

    def _after_end(self, action: SQLAction) -> SQLObservation:
        if self._closed:
            message = "This environment is closed; open a new session."
        elif self._record.question is None:
            message = "No episode yet; call reset() first."
        else:
            message = "The episode is over; call reset() to start a new one."
        return self._record.observation(
            action_type=action.action_type, error=message, reward=0.0, done=True
        )

    # ------------------------------------------------------- state and tasks

    @property
    def state(self) -> SQLState:
        return self._record.state()

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
        """Task API: the splits with playable questions, as ``dataset/split``."""
        return playable_splits(self._data_dir, self._datasets)

    def num_tasks(self, split: str) -> int:
        """Task API: number of playable questions (``index`` in reset)."""
        return len(self._tasks(split))

    def get_task(self, split: str, index: int) -> dict[str, Any]:
        """Task API: the public face of one question; never its gold data."""
        pool = self._tasks(split)
        if not 0 <= index < len(pool):
            raise IndexError(f"index {index} out of range for split {split!r}")
        return task_spec(pool[index], index)

    def list_tasks(self, split: str) -> list[dict[str, Any]]:
        return [task_spec(q, i) for i, q in enumerate(self._tasks(split))]

    def get_task_range(
        self, split: str, start: int | None = None, stop: int | None = None
    ) -> list[dict[str, Any]]:
        pool = self._tasks(split)
        return [task_spec(pool[i], i) for i in range(len(pool))[slice(start, stop)]]

    def _tasks(self, split: str) -> list[Question]:
        return tasks_of(self._data_dir, self._datasets, self._default_dataset, split)

    # ------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """End this environment; safe twice, from any thread.

        It holds no database connection and no worker between operations, so
        closing only refuses further resets and steps; an operation still
        running finishes by its deadline.
        """
        self._closed = True
