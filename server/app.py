"""The SQLEnv server: OpenEnv's FastAPI app around ``SQLEnvironment``.

Wiring only. Settings are read from the environment once, here, and passed down.

Environment variables:
    HOST: Interface ``main()`` binds. Default ``0.0.0.0``.
    PORT: Port ``main()`` serves on. Default ``8000``.
    MAX_CONCURRENT_ENVS: Episodes in play at once, WebSocket sessions and web
        page visitors together; one more is refused with ``CAPACITY_REACHED``.
        Default ``64``.
    SESSION_TIMEOUT_S: Seconds a session may stay idle (nothing received, no
        reply owed) before the server closes its socket (code 4000, with the
        reason) and frees its slot; half-open sockets included. Default ``300``.
    SQLENV_DATA_DIR: The built data (``<dataset>/bank.sqlite`` and databases).
        Default: the package's ``data/`` directory, where ``make data`` writes.
    SQLENV_MAX_STEPS: Step budget of an episode. Default: ``sql_env.models.MAX_STEPS``.
    SQLENV_QUERY_TIMEOUT_S: Deadline of one SQL statement, in seconds; its worker
        is killed shortly after. Default ``5``.
    SQLENV_QUERY_WORKERS: SQL worker processes kept running. Default: the
        available cores.
    SQLENV_MAX_QUERY_WORKERS: Workers allowed at once while slow statements hold
        some. Default: as many as fit in half the memory.
    SQLENV_WORKER_MEMORY_MB: Address-space cap of each worker. Default ``512``.
    ENABLE_WEB_INTERFACE: ``true`` mounts the playable page at ``/web`` (read by
        OpenEnv's ``create_app``; the image sets it). Default ``false``.
    OPENENV_MODE: ``simulation`` (default) or ``production`` (no HTTP
        ``/reset``, ``/step``, ``/state``); read by OpenEnv.

Routes (OpenEnv's): ``WS /ws`` (episodes), ``GET /health`` (healthy once the data is
loaded), ``GET /metadata``, ``GET /schema``, the task API under ``/sql_env/``, and
``/web`` when enabled. ``server/session_guard.py`` stands in front of them.

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
from sql_env.server.actions import MAX_ANSWER_CHARS
from sql_env.server.health import data_problem, install_health_route, remembered
from sql_env.server.question_bank import DEFAULT_DATA_DIR
from sql_env.server.sandbox import QUERY_TIMEOUT_S as DEFAULT_QUERY_TIMEOUT_S
from sql_env.server.session_guard import SessionGuard, SessionSlots
from sql_env.server.sql_environment import MAX_STEPS as DEFAULT_MAX_STEPS
from sql_env.server.sql_environment import SQLEnvironment
from sql_env.server.web_ui import build_web_ui, remove_shared_web_routes
from sql_env.server.worker_pool import WorkerPool
from sql_env.server.worker_settings import (
    DEFAULT_MEMORY_MB,
    SERVER_WORKER_NICE,
    PoolSettings,
    available_cores,
)

ENV_NAME = "sql_env"
# Room for the largest ANSWER, JSON-escaped, plus the frame around it. Larger
# frames get an error frame from the guard (uvicorn closes at 16 MB).
MAX_FRAME_CHARS = 2 * MAX_ANSWER_CHARS + 64_000


def _optional_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


HOST = os.environ.get("HOST", "0.0.0.0")
PORT = int(os.environ.get("PORT", "8000"))
MAX_CONCURRENT_ENVS = int(os.environ.get("MAX_CONCURRENT_ENVS", "64"))
SESSION_TIMEOUT_S = float(os.environ.get("SESSION_TIMEOUT_S", "300"))
DATA_DIR = Path(os.environ.get("SQLENV_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
MAX_STEPS = int(os.environ.get("SQLENV_MAX_STEPS", str(DEFAULT_MAX_STEPS)))
QUERY_TIMEOUT_S = float(
    os.environ.get("SQLENV_QUERY_TIMEOUT_S", str(DEFAULT_QUERY_TIMEOUT_S))
)
POOL_SETTINGS = PoolSettings(
    workers=_optional_int("SQLENV_QUERY_WORKERS") or available_cores(),
    max_workers=_optional_int("SQLENV_MAX_QUERY_WORKERS"),
    memory_mb=_optional_int("SQLENV_WORKER_MEMORY_MB") or DEFAULT_MEMORY_MB,
    nice=SERVER_WORKER_NICE,
)


def build_app(
    data_dir: Path = DATA_DIR,
    *,
    max_concurrent_envs: int = MAX_CONCURRENT_ENVS,
    session_timeout_s: float | None = SESSION_TIMEOUT_S,
    max_steps: int = MAX_STEPS,
    query_timeout_s: float = QUERY_TIMEOUT_S,
    pool_settings: PoolSettings = POOL_SETTINGS,
) -> FastAPI:
    """OpenEnv's app around ``SQLEnvironment``, behind ``SessionGuard``.

    The defaults are the settings read above; tests pass their own. The SQL
    workers start with the app and stop with it.
    """
    pool = WorkerPool(pool_settings, start=False)
    slots = SessionSlots(max_concurrent_envs)
    make_env = functools.partial(
        SQLEnvironment,
        data_dir,
        max_steps=max_steps,
        query_timeout_s=query_timeout_s,
        pool=pool,
    )
    app = create_app(
        make_env,
        SQLAction,
        SQLObservation,
        env_name=ENV_NAME,
        state_cls=SQLState,
        # OpenEnv's reaper would free a slot and leave its socket open: the
        # guard closes idle sockets instead, which ends their sessions.
        concurrency_config=ConcurrencyConfig(
            max_concurrent_envs=max_concurrent_envs, session_timeout=None
        ),
        gradio_builder=functools.partial(
            build_web_ui,
            env_factory=make_env,
            slots=slots,
            idle_timeout_s=session_timeout_s,
        ),
        show_default_tab=False,
        title_override="SQLEnv: answer questions by exploring a database",
    )
    remove_shared_web_routes(app)
    install_health_route(app, remembered(functools.partial(data_problem, data_dir)))
    app.add_exception_handler(ValueError, _bad_argument)
    app.add_middleware(
        SessionGuard,
        slots=slots,
        idle_timeout_s=session_timeout_s,
        max_frame_chars=MAX_FRAME_CHARS,
    )
    app.router.on_startup.append(pool.start)
    app.router.on_shutdown.append(pool.close)
    return app


async def _bad_argument(request: Request, exc: Exception) -> JSONResponse:
    """``POST /reset`` or a task API call with a bad argument: a 400, not a 500.

    (Over ``/ws`` OpenEnv already answers such a reset with an error frame.)
    """
    path = request.url.path
    if path != "/reset" and not path.startswith(f"/{ENV_NAME}/"):
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
