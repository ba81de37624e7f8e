"""SQLEnv: an OpenEnv environment for answering questions about real databases."""

from sql_env.client import SQLEnvClient
from sql_env.models import SQLAction, SQLObservation, SQLState

__all__ = ["SQLAction", "SQLEnvClient", "SQLObservation", "SQLState"]
