"""`agentd push`: copy what this machine captured into a team's PostgreSQL (docs/team.md).

Modules: runner (push_once, watch, init_server: the API the CLI calls), engine (one push
cycle), local (the SQLite side: change log, rows), server (connect, migrations), reports_sql
(the team reports), identity (machine id, user), state (push-state.json, read by `agentd
status`), errors. Only runner, engine and server import psycopg; `agentd status` imports state
alone, so it works without the optional `push` extra.
"""
