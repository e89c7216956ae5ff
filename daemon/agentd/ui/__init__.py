"""`agentd ui`: a live local dashboard over the agentd database, read-only.

server.py    run(): bind and token checks, uvicorn, --open
app.py       the ASGI app: routes (page / JSON / CSV per view), the live event stream
security.py  Host header check, token, CSP and other response headers
db.py        the read-only connection and the change watcher (PRAGMA data_version)
filters.py   the query-string filters every view shares
views.py     overview, sessions, tools, files: data as dicts
session.py   one session: calls in lanes, files, errors, compactions, usage, live tail
charts.py    SVG charts drawn on the server
format.py    how values read on the pages
templates/ static/   Jinja templates, CSS and JS (shipped in the wheel)
"""
