"""Benchmarks and the server harness of SQLEnv (``scripts/benchmark.py`` runs them).

One module per concern:

- ``server_process``: start a server under test (any interpreter, any data),
  the raw-frame WebSocket client, file hashes; the tests use it too.
- ``echo_env``: OpenEnv's echo environment, the framework's floor.
- ``action_mix``: the seeded episodes every section replays.
- ``engine_timer`` / ``engine``: in-process steps against raw ``sqlite3``,
  timed under the interpreter of the code measured.
- ``wire``: steps/s over WebSocket, servers interleaved round by round.
- ``memory``: server memory per open idle session.
- ``isolation``: other sessions' cheap steps and ``/health`` under hostile load.
- ``pools``: one tiny job's round trip through SQLEnv's worker pool and others.
- ``stats``, ``machine``: percentiles, the machine and its load.
- ``targets``: the targets, as a table of data; ``report``: markdown and plots.
"""
