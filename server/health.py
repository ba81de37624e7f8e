"""Readiness behind ``GET /health``: the question bank and its databases are loaded.

OpenEnv's own ``/health`` answers "healthy" as soon as the process runs. A Space or a
load balancer must not send episodes to a server without data, so
``install_health_route`` swaps that route for one that answers 503 "unhealthy" (with
the reason) until ``load_bank`` succeeds and every database of the bank is on disk.
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, status
from fastapi.responses import JSONResponse
from openenv.core.env_server.types import HealthResponse, HealthStatus

from sql_env.server.question_bank import BankFormatError, list_datasets, load_bank

logger = logging.getLogger(__name__)

HEALTH_PATH = "/health"
RECHECK_S = 60.0  # a healthy verdict is trusted this long


def data_problem(data_dir: Path) -> str | None:
    """Why the server cannot serve episodes from ``data_dir``, or None when it can.

    Loads every built dataset's bank (cached per process, so the first call also
    warms it for the first ``reset``) and checks that the database of every
    playable question is a file (questions excluded at build time, e.g. for a
    missing database, are not played).
    """
    datasets = list_datasets(data_dir)
    if not datasets:
        return (
            f"question bank not loaded: no dataset built in {data_dir}; run `make data`"
        )
    for dataset in datasets:
        try:
            bank = load_bank(data_dir, dataset)
        except (OSError, ValueError, KeyError, BankFormatError) as exc:
            return f"question bank {dataset!r} not loaded: {exc}"
        needed = {q.db_id for split in bank.splits for q in bank.eligible(split)}
        if not needed:
            return f"question bank {dataset!r} has no playable questions"
        missing = sorted(db for db in needed if not bank.db_path(db).is_file())
        if missing:
            return f"{dataset}: {len(missing)} database(s) missing, e.g. {missing[0]!r}"
    return None


def remembered(
    problem: Callable[[], str | None], recheck_s: float = RECHECK_S
) -> Callable[[], str | None]:
    """``problem`` with a healthy verdict kept for ``recheck_s``.

    The full check reads every bank and stats every database file: fine once,
    wasteful on every probe of a load balancer. An unhealthy verdict is never
    kept, so the server turns healthy as soon as the data is there.
    """
    healthy_until = 0.0

    def check() -> str | None:
        nonlocal healthy_until
        if time.monotonic() < healthy_until:
            return None
        reason = problem()
        if reason is None:
            healthy_until = time.monotonic() + recheck_s
        return reason

    return check


def install_health_route(app: FastAPI, problem: Callable[[], str | None]) -> None:
    """Replace OpenEnv's ``/health`` with one that reports ``problem()``.

    Args:
        app: The app ``create_app`` built.
        problem: Returns why the server is not ready, or None when it is.
    """
    app.router.routes[:] = [
        route
        for route in app.router.routes
        if getattr(route, "path", None) != HEALTH_PATH
    ]

    @app.get(
        HEALTH_PATH,
        response_model=HealthResponse,
        tags=["Health"],
        summary="Health check",
        description="Healthy once the question bank and its databases are loaded.",
        responses={503: {"description": "Data not loaded; `detail` says why."}},
    )
    def health() -> HealthResponse | JSONResponse:
        reason = problem()
        if reason is None:
            return HealthResponse(status=HealthStatus.HEALTHY)
        logger.warning("health check failed: %s", reason)
        return JSONResponse(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            content={"status": HealthStatus.UNHEALTHY.value, "detail": reason},
        )
