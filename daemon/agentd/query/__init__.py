"""`agentd query`: canned reports (reports.py) and the read-only engine that runs them (engine.py)."""
