"""The episode state machine of SQLEnv: reset, four actions, and the reward."""

import asyncio
import functools
import logging
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import EnvironmentMetadata

from sql_env.models import SQLAction, SQLObservation, SQLState
from sql_env.server import formatting, rewards
from sql_env.server.errors import (
    EpisodeOverError,
    QueryError,
    SQLEnvError,
    UnknownTableError,
)
from sql_env.server.question_bank import (
    DEFAULT_DATA_DIR,
    HARDNESS_LEVELS,
    SPLITS,
    Question,
    QuestionBank,
    Table,
    load_bank,
)
from sql_env.server.sandbox import QUERY_TIMEOUT_S, Sandbox, is_utf8
from sql_env.server.verifier import check_answer

logger = logging.getLogger(__name__)

MAX_STEPS = 15
SAMPLE_ROWS = 5
HISTORY_ARG_CHARS = 160
VERSION = "0.1.0"
# Longer arguments (and every QUERY) leave the server's event loop; see step_async.
INLINE_MAX_CHARS = 10_000


@dataclass(slots=True)
class _Episode:
    """Bookkeeping of the running episode, as plain attributes.

    Kept out of pydantic on purpose: validating the growing reward list on every
    assignment cost more than the SQL of a typical step. ``state`` builds the
    public ``SQLState`` from it when asked.
    """

    episode_id: str = ""
    question_id: str = ""
    db_id: str = ""
    split: str = ""
    reward_mode: str = "binary"
    step_count: int = 0
    done: bool = False
    truncated: bool = False
    answer_correct: bool | None = None
    rewards: list[float] = field(default_factory=list)


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
      line; ends the episode and scores it.

    ## Observation
    ``SQLObservation``: ``question``, ``question_id``, ``db_id``, ``tables``,
    ``action_type``, ``result`` (text), ``error`` (text, empty on success),
    ``step_count``, ``budget_remaining``, ``history`` (one line per action),
    ``done``, ``truncated``, ``answer_correct``, ``reward``.

    ## Rewards
    ``binary`` (default): 1.0 for a correct ANSWER, else 0.0 on every step.
    ``shaped``: adds ``0.2 * (phi' - phi)`` progress (phi: closeness of the
    latest QUERY result to the gold result, in [0, 1]) and ``-0.01`` per step;
    a correct episode returns >= 0.85, any other <= 0.19. See
    ``sql_env.server.rewards``.

    ## Starting state
    A question drawn from the split (seeded by ``seed``) or named by
    ``question_id``; the observation holds the question, the database id, its
    table names and the step budget. Nothing else about the data is shown.

    ## Episode end
    - *terminated*: the agent sent ANSWER (``done=True``, ``truncated=False``).
    - *truncated*: the step budget ran out without an answer (``done=True``,
      ``truncated=True``, outcome reward 0).
    Errors (bad SQL, writes, timeouts, unknown tables) cost a step but never end
    the episode. Any action after the end returns an error saying to reset.

    ## Arguments
    ``SQLEnvironment(data_dir, max_steps=15, query_timeout_s=5.0)``;
    ``reset(seed, episode_id, question_id, split="train",
    db_id, reward_mode="binary", hardness, index)``.

    ## Version history
    - 0.1.0: first release (Spider train/dev, binary and shaped rewards).
    """

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        max_steps: int = MAX_STEPS,
        query_timeout_s: float = QUERY_TIMEOUT_S,
    ) -> None:
        super().__init__()
        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        self._bank: QuestionBank = load_bank(Path(data_dir or DEFAULT_DATA_DIR))
        self.max_steps = max_steps
        self.query_timeout_s = query_timeout_s
        self._rng = random.Random()
        self._question: Question | None = None
        self._sandbox: Sandbox | None = None
        self._episode = _Episode()
        self._tables: list[str] = []
        self._history: list[str] = []
        self._potential = 0.0
        self._query_executor: ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------- reset

    def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        question_id: str | None = None,
        split: str = "train",
        db_id: str | None = None,
        reward_mode: str = "binary",
        hardness: str | None = None,
        index: int | None = None,
        **unknown: Any,
    ) -> SQLObservation:
        """Start an episode on a named or sampled question.

        Raises:
            ValueError: An unknown argument, question id, split, database,
                hardness level, reward mode, or an index out of range.
        """
        if unknown:
            raise ValueError(
                f"Unknown reset argument(s): {', '.join(sorted(unknown))}. Valid: "
                "seed, episode_id, question_id, split, db_id, reward_mode, "
                "hardness, index."
            )
        if reward_mode not in rewards.REWARD_MODES:
            raise ValueError(
                f"Unknown reward_mode {reward_mode!r}; use one of "
                f"{', '.join(rewards.REWARD_MODES)}."
            )
        if seed is not None:
            self._rng = random.Random(seed)
        question = self._pick(question_id, split, db_id, hardness, index)
        if self._sandbox is None or self._sandbox.db_path != self._bank.db_path(
            question.db_id
        ):
            self._close_sandbox()
            self._sandbox = Sandbox(
                self._bank.db_path(question.db_id), timeout_s=self.query_timeout_s
            )
        self._question = question
        self._history = []
        self._potential = 0.0
        self._episode = _Episode(
            episode_id=episode_id or str(uuid.uuid4()),
            question_id=question.id,
            db_id=question.db_id,
            split=question.split,
            reward_mode=reward_mode,
        )
        self._tables = self._bank.schema(question.db_id).table_names
        return self._observation(
            action_type="RESET",
            result=f"Database {question.db_id} has tables: {', '.join(self._tables)}.",
        )

    def _pick(
        self,
        question_id: str | None,
        split: str,
        db_id: str | None,
        hardness: str | None,
        index: int | None,
    ) -> Question:
        if question_id is not None:
            try:
                question = self._bank.get(question_id)
            except KeyError:
                raise ValueError(
                    f"Unknown question_id {question_id!r}; ids look like "
                    "'spider/dev/0' or 'spider/train/12'."
                ) from None
            if question.excluded is not None:
                raise ValueError(
                    f"Question {question_id} is excluded from play "
                    f"({question.excluded.split(':')[0]}); see the build report."
                )
            return question
        if split not in SPLITS:
            raise ValueError(
                f"Unknown split {split!r}; use one of {', '.join(SPLITS)}."
            )
        if hardness is not None and hardness not in HARDNESS_LEVELS:
            raise ValueError(
                f"Unknown hardness {hardness!r}; use one of "
                f"{', '.join(HARDNESS_LEVELS)}."
            )
        if db_id is not None:
            home = self._bank.split_of(db_id)
            if home is None:
                raise ValueError(
                    f"Unknown db_id {db_id!r}; split {split!r} has: "
                    f"{', '.join(self._bank.db_ids(split))}."
                )
            if home != split:
                raise ValueError(
                    f"Database {db_id!r} belongs to split {home!r}, not {split!r}; "
                    f"pass split={home!r}."
                )
        pool = self._bank.eligible(split, db_id=db_id, hardness=hardness)
        if not pool:
            raise ValueError(
                f"No playable questions for split={split!r}, "
                f"db_id={db_id!r}, hardness={hardness!r}."
            )
        if index is not None:
            if not 0 <= index < len(pool):
                raise ValueError(f"index {index} out of range 0..{len(pool) - 1}.")
            return pool[index]
        return pool[self._rng.randrange(len(pool))]

    async def reset_async(self, **kwargs: Any) -> SQLObservation:
        """``reset`` for the OpenEnv server, on its event loop: it runs no SQL."""
        return self.reset(**kwargs)

    # ------------------------------------------------------------------ step

    async def step_async(
        self, action: SQLAction, timeout_s: float | None = None, **kwargs: Any
    ) -> SQLObservation:
        """``step`` for the OpenEnv server; both paths run the one ``step()``.

        DESCRIBE (schema facts), SAMPLE (5 rows) and a short ANSWER are bounded
        and cheaper than a thread hand-off, so they run on the event loop: that
        took wire throughput from 0.33 to 0.57 of OpenEnv's echo env at 16
        sessions (docs/benchmarks.md). QUERY runs arbitrary SQL up to its
        deadline, so it runs in this session's own thread and never holds up
        other sessions.
        """
        if action.action_type != "QUERY" and len(action.argument) <= INLINE_MAX_CHARS:
            return self.step(action, timeout_s, **kwargs)
        if self._query_executor is None:
            self._query_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sql-env-query"
            )
        return await asyncio.get_running_loop().run_in_executor(
            self._query_executor,
            functools.partial(self.step, action, timeout_s, **kwargs),
        )

    def step(
        self, action: SQLAction, timeout_s: float | None = None, **kwargs: Any
    ) -> SQLObservation:
        """Apply one action; agent mistakes come back in ``error``."""
        question = self._question
        if question is None or self._episode.done:
            message = (
                "The episode is over; call reset() to start a new one."
                if question is not None
                else "No episode yet; call reset() first."
            )
            return self._observation(
                action_type=action.action_type, error=message, reward=0.0, done=True
            )

        self._episode.step_count += 1
        if not is_utf8(action.argument):
            # A lone surrogate can neither reach SQLite nor go back out as JSON
            # in the history: keep a printable copy and answer an error.
            action = action.model_copy(
                update={"argument": action.argument.encode("utf-8", "replace").decode()}
            )
            action_error = "The argument is not valid Unicode text; send plain UTF-8."
        else:
            action_error = ""
        answered = correct = False
        potential = self._potential
        result = error = ""
        try:
            if action_error:
                raise QueryError(action_error)
            match action.action_type:
                case "DESCRIBE":
                    result = formatting.render_schema(self._table(action.argument))
                case "SAMPLE":
                    result = self._sample(action.argument)
                case "QUERY":
                    result, potential = self._query(action.argument, question)
                case "ANSWER":
                    answered = True
                    verdict = check_answer(action.argument, self._bank.gold(question))
                    correct = verdict.correct
                    result = (
                        f"Answer submitted: {'correct' if correct else 'incorrect'} "
                        f"({verdict.reading})."
                    )
        except SQLEnvError as exc:
            error = str(exc)

        reward = rewards.step_reward(
            self._episode.reward_mode,
            answered=answered,
            correct=correct,
            potential_before=self._potential,
            potential_after=potential,
        )
        self._potential = potential
        self._history.append(self._history_line(action, result, error))
        truncated = not answered and self._episode.step_count >= self.max_steps
        if truncated:
            result = (result + "\n" if result else "") + (
                "Step budget exhausted: the episode is over."
            )
        self._episode.rewards.append(reward)
        if answered or truncated:
            self._episode.done = True
            self._episode.truncated = truncated
            self._episode.answer_correct = correct if answered else None
            logger.debug(
                "episode %s ended: %s", self._episode.episode_id, self._history[-1]
            )
        return self._observation(
            action_type=action.action_type,
            result=result,
            error=error,
            reward=reward,
            done=self._episode.done,
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

    def _sample(self, name: str) -> str:
        table = self._table(name)
        quoted = '"' + table.name.replace('"', '""') + '"'
        rows = self._sandbox_or_fail().execute(
            f"SELECT * FROM {quoted} LIMIT {SAMPLE_ROWS}"
        )
        return formatting.render_table(rows.columns, rows.rows, total=table.row_count)

    def _query(self, sql: str, question: Question) -> tuple[str, float]:
        result = self._sandbox_or_fail().execute(sql)
        text = formatting.render_table(
            result.columns, result.rows, more_rows=result.more_rows
        )
        potential = self._potential
        if self._episode.reward_mode == "shaped":
            potential = rewards.closeness(result.rows, self._bank.gold(question))
        return text, potential

    def _sandbox_or_fail(self) -> Sandbox:
        if self._sandbox is None:
            raise EpisodeOverError("No episode yet; call reset() first.")
        return self._sandbox

    @staticmethod
    def _history_line(action: SQLAction, result: str, error: str) -> str:
        argument = " ".join(action.argument.split())
        if len(argument) > HISTORY_ARG_CHARS:
            argument = argument[: HISTORY_ARG_CHARS - 1] + "…"
        lines = result.splitlines()
        if error:
            outcome = "error: " + error[:80]
        elif not lines:
            outcome = "ok"
        elif action.action_type in ("QUERY", "SAMPLE"):
            outcome = lines[-1].strip("()")  # the row count
        else:
            outcome = lines[0]
        return f"{action.action_type} {argument} -> {outcome}"

    def _observation(
        self,
        *,
        action_type: str,
        result: str = "",
        error: str = "",
        reward: float | None = 0.0,
        done: bool = False,
    ) -> SQLObservation:
        question = self._question
        episode = self._episode
        # Every field is built here with its declared type, so pydantic's
        # validation (which re-checks the whole history each step) is skipped.
        return SQLObservation.model_construct(
            question=question.question if question else "",
            question_id=question.id if question else "",
            db_id=question.db_id if question else "",
            tables=list(self._tables),
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
            db_id=episode.db_id,
            split=episode.split,
            reward_mode=episode.reward_mode,
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
        """Task API: the splits that have playable questions."""
        return [s for s in SPLITS if self._bank.eligible(s)]

    def num_tasks(self, split: str) -> int:
        """Task API: number of playable questions (``index`` in reset)."""
        return len(self._bank.eligible(split))

    def get_task(self, split: str, index: int) -> dict[str, Any]:
        """Task API: the public face of one question; never its gold data."""
        pool = self._bank.eligible(split)
        if not 0 <= index < len(pool):
            raise IndexError(f"index {index} out of range for split {split!r}")
        return _task_spec(pool[index], index)

    def list_tasks(self, split: str) -> list[dict[str, Any]]:
        return [_task_spec(q, i) for i, q in enumerate(self._bank.eligible(split))]

    def get_task_range(
        self, split: str, start: int | None = None, stop: int | None = None
    ) -> list[dict[str, Any]]:
        pool = self._bank.eligible(split)
        indices = range(len(pool))[slice(start, stop)]
        return [_task_spec(pool[i], i) for i in indices]

    # ------------------------------------------------------------- lifecycle

    def _close_sandbox(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def close(self) -> None:
        """Release the database connection and the query thread; safe twice."""
        self._close_sandbox()
        if self._query_executor is not None:
            self._query_executor.shutdown(wait=False)
            self._query_executor = None


def _task_spec(question: Question, index: int) -> dict[str, Any]:
    return {
        "id": question.id,
        "index": index,
        "split": question.split,
        "db_id": question.db_id,
        "question": question.question,
        "hardness": question.hardness,
    }
