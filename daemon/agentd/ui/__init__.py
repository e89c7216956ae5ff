"""`agentd ui`: a live local dashboard over the agentd database, read-only.

server.py    run(): the token, bind checks, the printed links, uvicorn, --open
app.py       the ASGI app: routes (page / JSON / CSV per view), the live event stream
security.py  token, Host header check (loopback binds), CSP and other response headers
tokenfile.py the token kept in the state dir (ui-token) when none is given
db.py        the read-only connection and the change watcher (PRAGMA data_version)
filters.py   the query-string filters every view shares
views.py     overview, sessions, tools, files: data as dicts
session.py   one session: calls in lanes, files, errors, compactions, usage, live tail
charts.py    SVG charts drawn on the server
format.py    how values read on the pages
templates/ static/   Jinja templates, CSS and JS (shipped in the wheel)
"""
