"""A scripted episode for end-to-end checks.

Servers are started by ``sql_env.benchmarks.server_process``.
"""
