"""SQLEnv: an OpenEnv environment for answering questions about real databases.

The exports are resolved on first use (PEP 562): ``import sql_env`` and the pure
core (``sql_env.server.verifier``, ``sql_env.server.rewards``) must not pay for
``openenv.core``, which imports FastAPI, Gradio and an MCP stack.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sql_env.client import SQLEnvClient
    from sql_env.models import SQLAction, SQLObservation, SQLState

_EXPORTS = {
    "SQLAction": "sql_env.models",
    "SQLObservation": "sql_env.models",
    "SQLState": "sql_env.models",
    "SQLEnvClient": "sql_env.client",
}

__all__ = ["SQLAction", "SQLEnvClient", "SQLObservation", "SQLState"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sql_env' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
