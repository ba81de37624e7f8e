"""The SQLEnv server: OpenEnv's FastAPI app around ``SQLEnvironment``.

Wiring only. Settings are read from the environment once, here, and passed down.

Environment variables:
    HOST: Interface ``main()`` binds. Default ``0.0.0.0``.
    PORT: Port ``main()`` serves on. Default ``8000``.
    MAX_CONCURRENT_ENVS: WebSocket sessions (episodes) held at once; one more is
        refused with ``CAPACITY_REACHED``. Default ``64``.
    SESSION_TIMEOUT_S: Seconds a session may stay idle before the server closes it
        and frees its slot (half-open sockets included). Default ``300``.
    SQLENV_DATA_DIR: The built data (``databases/``, ``questions/``). Default: the
        package's ``data/`` directory, where ``make data`` writes.
    SQLENV_MAX_STEPS: Step budget of an episode. Default ``15``.
    SQLENV_QUERY_TIMEOUT_S: Deadline of one SQL statement, in seconds. Default ``5``.
    ENABLE_WEB_INTERFACE: ``true`` mounts the playable page at ``/web`` (read by
        OpenEnv's ``create_app``; the image sets it). Default ``false``.
    OPENENV_MODE: ``simulation`` (default) or ``production`` (no HTTP
        ``/reset``, ``/step``, ``/state``); read by OpenEnv.

Routes (OpenEnv's): ``WS /ws`` (episodes), ``GET /health`` (healthy once the data is
loaded), ``GET /metadata``, ``GET /schema``, the task API under ``/sql_env/``, and
``/web`` when enabled.

Run:
    make serve                                   # builds the data, then `server`
    uvicorn sql_env.server.app:app --port 8000
"""

import functools
import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.types import ConcurrencyConfig

from sql_env.models import SQLAction, SQLObservation, SQLState
from sql_env.server.health import data_problem, install_health_route
from sql_env.server.question_bank import DEFAULT_DATA_DIR
from sql_env.server.sql_environment import SQLEnvironment
from sql_env.server.web_ui import build_web_ui

ENV_NAME = "sql_env"

HOST = os.environ.get("HOST", "0.0.0.0")
PORT = int(os.environ.get("PORT", "8000"))
MAX_CONCURRENT_ENVS = int(os.environ.get("MAX_CONCURRENT_ENVS", "64"))
SESSION_TIMEOUT_S = float(os.environ.get("SESSION_TIMEOUT_S", "300"))
DATA_DIR = Path(os.environ.get("SQLENV_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
MAX_STEPS = int(os.environ.get("SQLENV_MAX_STEPS", "15"))
QUERY_TIMEOUT_S = float(os.environ.get("SQLENV_QUERY_TIMEOUT_S", "5"))


def build_app(
    data_dir: Path = DATA_DIR,
    *,
    max_concurrent_envs: int = MAX_CONCURRENT_ENVS,
    session_timeout_s: float = SESSION_TIMEOUT_S,
    max_steps: int = MAX_STEPS,
    query_timeout_s: float = QUERY_TIMEOUT_S,
) -> FastAPI:
    """OpenEnv's app around ``SQLEnvironment``, with ``/health`` checking the data.

    The defaults are the settings read above; tests pass their own.
    """
    make_env = functools.partial(
        SQLEnvironment, data_dir, max_steps=max_steps, query_timeout_s=query_timeout_s
    )
    app = create_app(
        make_env,
        SQLAction,
        SQLObservation,
        env_name=ENV_NAME,
        state_cls=SQLState,
        concurrency_config=ConcurrencyConfig(
            max_concurrent_envs=max_concurrent_envs, session_timeout=session_timeout_s
        ),
        gradio_builder=functools.partial(build_web_ui, env_factory=make_env),
        custom_tab_name="Play",
        custom_tab_primary=True,
        title_override="SQLEnv: answer questions by exploring a database",
    )
    install_health_route(app, functools.partial(data_problem, data_dir))
    app.add_exception_handler(ValueError, _bad_reset_argument)
    return app


async def _bad_reset_argument(request: Request, exc: Exception) -> JSONResponse:
    """HTTP ``POST /reset`` with an unknown id, split or database: a 400, not a 500.

    (Over ``/ws`` OpenEnv already answers such a reset with an error frame.)
    """
    if request.url.path != "/reset":
        raise exc
    return JSONResponse(
        status_code=status.HTTP_400_BAD_REQUEST, content={"detail": str(exc)}
    )


app = build_app()


def main() -> None:
    """Serve the app on ``$HOST:$PORT`` (the ``server`` console script)."""
    uvicorn.run(app, host=HOST, port=PORT, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
