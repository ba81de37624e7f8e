"""``SQLEnvClient``: the typed WebSocket client for a running SQLEnv server.

One client holds one server session (one episode at a time). It works the three ways
an OpenEnv client works, and the helpers ``describe``/``sample``/``query``/``answer``
work in all three, exactly like ``reset`` and ``step``:

    # synchronous, through OpenEnv's sync wrapper
    with SQLEnvClient(base_url="http://localhost:8000").sync() as env:
        obs = env.reset(split="dev", seed=0).observation
        env.describe(obs.tables[0])

    # asynchronous
    async with SQLEnvClient(base_url="http://localhost:8000") as env:
        obs = (await env.reset(question_id="spider/dev/0")).observation
        result = await env.query("SELECT count(*) FROM singer")

    # plain synchronous use of the async client (OpenEnv dispatches by context)
    with SQLEnvClient(base_url="http://localhost:8000") as env:
        env.reset(db_id="concert_singer")

OpenEnv's ``AutoEnv.from_env("sql_env", base_url=...)`` and
``AutoAction.from_env("sql_env")`` find this module as ``sql_env.client`` and the
classes in it by name: the client as ``SqlEnv`` (their naming convention), the action
and observation as ``openenv.yaml`` names them.
"""

from collections.abc import Awaitable
from typing import Any, TypeAlias

from openenv.core import EnvClient
from openenv.core.client_types import StepResult

from sql_env.models import ActionType, SQLAction, SQLObservation, SQLState

__all__ = ["SQLAction", "SQLEnvClient", "SQLObservation", "SQLState", "SqlEnv"]

SQLStepResult: TypeAlias = StepResult[SQLObservation]
# What a helper returns: the result itself in synchronous code, an awaitable in
# asynchronous code (``EnvClient.step`` decides by the caller's context).
MaybeAwaitable: TypeAlias = SQLStepResult | Awaitable[SQLStepResult]


class SQLEnvClient(EnvClient[SQLAction, SQLObservation, SQLState]):
    """One WebSocket session on a SQLEnv server, with typed observations.

    ``reset`` accepts the server's reset arguments: ``question_id``, ``split``
    (``"train"``/``"dev"``), ``db_id``, ``seed`` and ``reward_mode``
    (``"binary"``/``"shaped"``).

    Example (needs a running server, e.g. ``make serve``)::

        with SQLEnvClient(base_url="http://localhost:8000").sync() as env:
            obs = env.reset(split="dev", seed=0).observation
            print(env.describe(obs.tables[0]).observation.result)
            result = env.answer("42")
            print(result.reward, result.observation.answer_correct)
    """

    def _step_payload(self, action: SQLAction) -> dict[str, Any]:
        return action.model_dump(exclude={"metadata"})

    def _parse_result(self, payload: dict[str, Any]) -> SQLStepResult:
        observation = SQLObservation.model_validate(
            {
                **payload.get("observation", {}),
                "done": payload.get("done", False),
                "reward": payload.get("reward"),
            }
        )
        return StepResult(
            observation=observation,
            reward=observation.reward,
            done=observation.done,
            metadata=payload.get("metadata"),
        )

    def _parse_state(self, payload: dict[str, Any]) -> SQLState:
        return SQLState.model_validate(payload)

    def act(self, action_type: ActionType, argument: str = "") -> MaybeAwaitable:
        """Send one action built from its two fields.

        Args:
            action_type: ``"DESCRIBE"``, ``"SAMPLE"``, ``"QUERY"`` or ``"ANSWER"``.
            argument: The table name, SQL statement or answer.

        Returns:
            The step result (awaitable in asynchronous code).
        """
        return self.step(SQLAction(action_type=action_type, argument=argument))

    def describe(self, table: str) -> MaybeAwaitable:
        """Columns, keys and row count of ``table``."""
        return self.act("DESCRIBE", table)

    def sample(self, table: str) -> MaybeAwaitable:
        """The first rows of ``table``."""
        return self.act("SAMPLE", table)

    def query(self, sql: str) -> MaybeAwaitable:
        """Run one read-only SQL statement and see its result."""
        return self.act("QUERY", sql)

    def answer(self, value: str) -> MaybeAwaitable:
        """Submit the final answer (JSON or one value per line); ends the episode."""
        return self.act("ANSWER", value)


# The name ``AutoEnv`` looks for: the env name ``sql_env`` minus ``_env``,
# PascalCased, plus ``Env``.
SqlEnv = SQLEnvClient
