"""Typed WebSocket client for SQLEnv."""

from sql_env.client.sql_env_client import SQLEnvClient

__all__ = ["SQLEnvClient"]
