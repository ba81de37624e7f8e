"""OpenEnv's echo environment: the floor a wire benchmark compares SQLEnv with.

A copy of ``envs/echo_env`` in OpenEnv, as ``openenv init`` generates it: it
echoes each message back and does nothing else, so its server's cost per step is
the framework's (uvicorn, Starlette, OpenEnv's WebSocket loop, pydantic). Served
by the same uvicorn command as SQLEnv (``ServerProcess``), with the session
limit and idle timeout read from the same variables.
"""

import os
from typing import Any
from uuid import uuid4

from fastapi import FastAPI
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, ConcurrencyConfig, Observation, State
from pydantic import Field

from sql_env.benchmarks.server_process import (
    DEFAULT_MAX_ENVS,
    MAX_ENVS_ENV,
    SESSION_TIMEOUT_ENV,
)


class EchoAction(Action):
    """Message to echo back."""

    message: str = Field(..., description="Message to echo back")


class EchoObservation(Observation):
    """The echoed message."""

    echoed_message: str = Field(default="", description="The echoed message")
    message_length: int = Field(default=0, description="Length of the message")


class EchoEnvironment(Environment):
    """OpenEnv's echo environment: echoes each message back."""

    SUPPORTS_CONCURRENT_SESSIONS: bool = True

    def __init__(self) -> None:
        self._state = State(episode_id=str(uuid4()), step_count=0)

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any
    ) -> EchoObservation:
        self._state = State(episode_id=episode_id or str(uuid4()), step_count=0)
        return EchoObservation(
            echoed_message="Echo environment ready!", done=False, reward=0.0
        )

    def step(self, action: EchoAction) -> EchoObservation:  # type: ignore[override]
        self._state.step_count += 1
        message = action.message
        return EchoObservation(
            echoed_message=message,
            message_length=len(message),
            done=False,
            reward=min(len(message) * 0.1, 1.0),
            metadata={"original_message": message, "step": self._state.step_count},
        )

    @property
    def state(self) -> State:
        return self._state


def echo_app() -> FastAPI:
    """App factory for ``uvicorn --factory`` (``ECHO_APP``)."""
    timeout = os.environ.get(SESSION_TIMEOUT_ENV)
    return create_app(
        EchoEnvironment,
        EchoAction,
        EchoObservation,
        env_name="echo_env",
        concurrency_config=ConcurrencyConfig(
            max_concurrent_envs=int(os.environ.get(MAX_ENVS_ENV, DEFAULT_MAX_ENVS)),
            session_timeout=float(timeout) if timeout else None,
        ),
    )
