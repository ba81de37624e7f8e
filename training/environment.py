"""SQLEnv as a TRL ``environment_factory``: one episode per rollout, four tools.

``GRPOTrainer(..., environment_factory=make_env_factory(...))`` builds a pool of
:class:`SQLToolEnv` instances, calls ``reset(**row)`` with every column of a dataset
row, exposes the public methods ``describe``, ``sample``, ``query`` and ``answer``
to the model as tools (their signatures and docstrings are the tool schema), and
scores each rollout with ``get_reward()``.

The environment runs in-process (:class:`sql_env.server.sql_environment.SQLEnvironment`)
by default, or on a SQLEnv server over WebSocket (:class:`sql_env.client.SQLEnvClient`)
when given a URL. Over WebSocket each pooled instance holds one server session, so
the server's session limit must cover the generation batch: see
:func:`check_session_capacity`.

The evaluation script drives the same class, so a policy is evaluated through the
exact tools and texts it was trained with.
"""

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

from sql_env.client import SQLEnvClient
from sql_env.models import MAX_STEPS as DEFAULT_MAX_STEPS
from sql_env.models import RewardMode, SQLAction, SQLObservation
from sql_env.training.prompts import question_text, tool_result_text

# Public methods of an environment that GRPOTrainer does not turn into tools.
NOT_TOOLS = ("reset", "get_reward")


class EpisodeOverError(RuntimeError):
    """A tool was called after the episode ended (TRL shows the model the message)."""


class SQLToolEnv:
    """One SQLEnv episode at a time, with the agent's actions as typed tool methods.

    Every public method except ``reset`` and ``get_reward`` is a tool TRL shows the
    model, so helpers here are private and read-only facts are properties.

    Args:
        data_dir: Data directory of the in-process environment (default: the
            package's ``data/``). Ignored with ``env_url``.
        env_url: Base URL of a SQLEnv server (``http://host:8000``); the episode
            then runs over one WebSocket session.
        split: Split used when ``reset`` gets no question id.
        reward_mode: ``"binary"`` or ``"shaped"`` (see the environment's docs).
        max_steps: Step budget per episode (in-process; a server applies its own
            ``SQLENV_MAX_STEPS``).
        query_timeout_s: Deadline of one SQL statement (in-process; None: the
            environment's default; a server applies ``SQLENV_QUERY_TIMEOUT_S``).
        reset_settings: Further arguments for every reset of the environment
            (``SQLEnvironment.reset``); a dataset column of the same name
            overrides them per question.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        env_url: str | None = None,
        *,
        split: str = "train",
        reward_mode: RewardMode = "binary",
        max_steps: int = DEFAULT_MAX_STEPS,
        reset_settings: Mapping[str, Any] | None = None,
        query_timeout_s: float | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._env_url = env_url
        self._split = split
        self._reward_mode = reward_mode
        self._max_steps = max_steps
        self._query_timeout_s = query_timeout_s
        self._reset_settings = dict(reset_settings or {})
        self._backend: Any = None
        self._observation: SQLObservation | None = None
        self._rewards: list[float] = []
        self._errors = 0
        self._answer: str | None = None

    # ----------------------------------------------------------------- episode

    def reset(
        self,
        question_id: str | None = None,
        split: str | None = None,
        seed: int | None = None,
        reset_settings: Mapping[str, Any] | None = None,
        **row: Any,
    ) -> str:
        """Start an episode on ``question_id`` (or a seeded random question).

        Args:
            question_id: Question to play, e.g. ``"spider/train/12"``.
            split: Split of that question (default: the constructor's).
            seed: Seed for picking a question when there is no id.
            reset_settings: Further reset arguments for this episode, over the
                constructor's.
            **row: Other dataset columns (``prompt``, ``db_id``, ...), ignored.

        Returns:
            The question text that starts the conversation.
        """
        kwargs: dict[str, Any] = {
            **self._reset_settings,
            **(reset_settings or {}),
            "split": split or self._split,
            "reward_mode": self._reward_mode,
        }
        if question_id is not None:
            kwargs["question_id"] = question_id
        if seed is not None:
            kwargs["seed"] = seed
        self._rewards = []
        self._errors = 0
        self._answer = None
        observation = self._reset_backend(**kwargs)
        self._record(observation)
        return question_text(observation)

    def describe(self, table_name: str) -> str:
        """Show a table's columns with their types, its keys and its row count.

        Args:
            table_name: Name of one of the database's tables.

        Returns:
            The table description, or an error naming the valid tables.
        """
        return self._act("DESCRIBE", table_name)

    def sample(self, table_name: str) -> str:
        """Show the first few rows of a table.

        Args:
            table_name: Name of one of the database's tables.

        Returns:
            The rows as text, or an error naming the valid tables.
        """
        return self._act("SAMPLE", table_name)

    def query(self, sql: str) -> str:
        """Run one read-only SQLite SELECT statement and show its result.

        Args:
            sql: One SQLite SELECT statement.

        Returns:
            The result rows as text (long results are cut), or the SQL error.
        """
        return self._act("QUERY", sql)

    def answer(self, value: str) -> str:
        """Submit the final answer, as the instructions ask; this ends the episode.

        Args:
            value: The result rows as JSON, e.g. [[3]] or [["Paris", 2]]; or,
                when the instructions ask for SQL, one SELECT statement whose
                result answers the question.

        Returns:
            Whether the answer was correct.
        """
        return self._act("ANSWER", value)

    def get_reward(self) -> float:
        """The episode's total reward so far (the sum of its step rewards)."""
        return float(sum(self._rewards))

    # ------------------------------------------------------------ read-only facts

    @property
    def observation(self) -> SQLObservation | None:
        """The latest observation, or None before the first reset."""
        return self._observation

    @property
    def done(self) -> bool:
        return self._observation is not None and self._observation.done

    @property
    def success(self) -> bool:
        """True when the episode ended with a correct ANSWER."""
        return bool(self._observation and self._observation.answer_correct)

    @property
    def submitted_answer(self) -> str | None:
        """The argument of the ANSWER that ended the episode, if one did."""
        return self._answer

    @property
    def error_count(self) -> int:
        """Steps of this episode whose observation carried an error."""
        return self._errors

    # ------------------------------------------------------------------ internals

    def _act(self, action_type: str, argument: Any) -> str:
        if self._observation is None:
            raise EpisodeOverError("No episode is running: reset first.")
        if self._observation.done:
            raise EpisodeOverError("The episode is over; no more tool calls.")
        # Models often pass JSON values, not strings, for the answer argument.
        text = argument if isinstance(argument, str) else json.dumps(argument)
        observation = self._step_backend(
            SQLAction(action_type=action_type, argument=text)
        )
        self._record(observation)
        if action_type == "ANSWER" and observation.answer_correct is not None:
            self._answer = text
        return tool_result_text(observation)

    def _record(self, observation: SQLObservation) -> None:
        self._observation = observation
        if observation.reward is not None:
            self._rewards.append(float(observation.reward))
        if observation.error:
            self._errors += 1

    def _reset_backend(self, **kwargs: Any) -> SQLObservation:
        if self._env_url is None:
            if self._backend is None:
                self._backend = _in_process_env(
                    self._data_dir, self._max_steps, self._query_timeout_s
                )
            return self._backend.reset(**kwargs)
        if self._backend is not None:
            try:
                return self._backend.reset(**kwargs).observation
            except (ConnectionClosed, OSError):
                # The server closes sessions idle longer than its SESSION_TIMEOUT_S
                # (a long optimizer step can do that): reconnect once.
                self._close()
        self._backend = SQLEnvClient(base_url=self._env_url).sync()
        self._backend.connect()
        return self._backend.reset(**kwargs).observation

    def _step_backend(self, action: SQLAction) -> SQLObservation:
        if self._env_url is None:
            return self._backend.step(action)
        return self._backend.step(action).observation

    def __enter__(self) -> "SQLToolEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _in_process_env(
    data_dir: Path | None, max_steps: int, query_timeout_s: float | None
) -> Any:
    # Imported here so that training over a URL needs no server code or data.
    from sql_env.server.sql_environment import SQLEnvironment

    if query_timeout_s is None:
        return SQLEnvironment(data_dir, max_steps=max_steps)
    return SQLEnvironment(
        data_dir, max_steps=max_steps, query_timeout_s=query_timeout_s
    )


def make_env_factory(
    data_dir: Path | None = None,
    env_url: str | None = None,
    *,
    split: str = "train",
    reward_mode: RewardMode = "binary",
    max_steps: int = DEFAULT_MAX_STEPS,
    reset_settings: Mapping[str, Any] | None = None,
) -> Callable[[], SQLToolEnv]:
    """A no-argument factory for ``GRPOTrainer(environment_factory=...)``.

    Args:
        data_dir: Data directory of the in-process environment.
        env_url: SQLEnv server URL; when set, episodes run over WebSocket.
        split: Split used when a row has no question id.
        reward_mode: ``"binary"`` or ``"shaped"``.
        max_steps: Step budget per episode.
        reset_settings: Further arguments for every reset (see ``SQLToolEnv``).

    Returns:
        A callable that builds one :class:`SQLToolEnv`.
    """
    return functools.partial(
        SQLToolEnv,
        data_dir,
        env_url,
        split=split,
        reward_mode=reward_mode,
        max_steps=max_steps,
        reset_settings=reset_settings,
    )


def tool_names(env_class: type = SQLToolEnv) -> tuple[str, ...]:
    """The tools of an ``environment_factory`` class, in the order TRL lists them.

    GRPOTrainer takes every public function of the class except ``reset`` and
    ``get_reward``, through ``inspect.getmembers``, which sorts by name: the
    prompt lists ``answer, describe, query, sample`` in that order.
    """
    return tuple(
        name
        for name, _ in inspect.getmembers(env_class, predicate=inspect.isfunction)
        if name not in NOT_TOOLS and not name.startswith("_")
    )


TOOL_NAMES = tool_names()


def tool_schemas() -> list[dict[str, Any]]:
    """JSON schemas of the tools, in GRPO's order, as the chat template renders them.

    ``apply_chat_template`` turns each tool function GRPOTrainer passes into this
    schema (``get_json_schema``), so SFT data, evaluation and GRPO prompts list
    the same tools in the same order.
    """
    from transformers.utils import get_json_schema

    return [get_json_schema(getattr(SQLToolEnv, name)) for name in TOOL_NAMES]


def check_session_capacity(env_url: str, sessions: int) -> None:
    """Open ``sessions`` WebSocket sessions at once, to fail before training does.

    TRL keeps one environment per rollout of a generation batch alive for the whole
    run; over WebSocket each holds a server session, and a server that refuses one
    (``CAPACITY_REACHED``) would break training mid-step.

    Args:
        env_url: Base URL of the SQLEnv server.
        sessions: Sessions needed (the generation batch size).

    Raises:
        RuntimeError: The server refused a session; the message says how many it
            accepted.
    """
    clients = []
    try:
        for opened in range(sessions):
            client = SQLEnvClient(base_url=env_url).sync()
            clients.append(client)
            try:
                client.connect()
                client.state()
            except Exception as exc:  # any refusal reads the same to the user
                raise RuntimeError(
                    f"The SQLEnv server at {env_url} accepted {opened} concurrent "
                    f"sessions but training needs {sessions} (one per rollout of a "
                    "generation batch). Start the server with a higher "
                    "MAX_CONCURRENT_ENVS, or lower per_device_train_batch_size x "
                    f"steps_per_generation. Server said: {exc}"
                ) from exc
    finally:
        for client in clients:
            client.close()
