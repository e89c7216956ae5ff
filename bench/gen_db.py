"""Build a large, realistic agentd database for benchmarks (deterministic for a given seed).

The rows look like what the normalizers store: Claude and OpenCode sessions over 90 days, tool
calls with their input, a truncated output, an outcome and a duration, file operations linked
to their tools, session errors and compactions. Row counts are exact; everything else follows
skewed distributions (a few busy sessions, a few hot files, Bash failing most).

    .venv/bin/python bench/gen_db.py /tmp/bench.db --tools 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agentd.db.migrations import MIGRATIONS, migrate
from agentd.db.store import connect_sync

DAY_MS = 86_400_000
_FIRST_ROLLUP = 10  # 0010_tool_rollup: the first migration whose triggers keep aggregates

# name, share of calls, failure rate, median duration (ms), touches a file
CLAUDE_TOOLS = [
    ("Bash", 0.30, 0.11, 900, False),
    ("Read", 0.25, 0.02, 25, True),
    ("Edit", 0.14, 0.07, 35, True),
    ("Grep", 0.08, 0.01, 120, False),
    ("Glob", 0.05, 0.005, 60, False),
    ("Write", 0.04, 0.02, 30, True),
    ("TodoWrite", 0.04, 0.0, 5, False),
    ("Task", 0.02, 0.04, 45_000, False),
    ("WebFetch", 0.02, 0.09, 2_500, False),
    ("WebSearch", 0.01, 0.03, 4_000, False),
    ("MultiEdit", 0.02, 0.08, 40, True),
    ("NotebookEdit", 0.002, 0.05, 50, True),
    ("mcp__github__create_issue", 0.004, 0.06, 1_200, False),
    ("mcp__github__list_pull_requests", 0.004, 0.02, 900, False),
]
OPENCODE_TOOLS = [
    ("bash", 0.31, 0.12, 800, False),
    ("read", 0.26, 0.02, 20, True),
    ("edit", 0.16, 0.08, 30, True),
    ("grep", 0.07, 0.01, 100, False),
    ("glob", 0.05, 0.005, 50, False),
    ("write", 0.04, 0.02, 25, True),
    ("list", 0.03, 0.01, 15, False),
    ("todowrite", 0.04, 0.0, 5, False),
    ("task", 0.02, 0.05, 50_000, False),
    ("webfetch", 0.02, 0.08, 2_000, False),
]
ERRORS = {
    "bash": [
        "Exit code 1\nnpm ERR! Test failed.  See above for more details.",
        "Exit code 1\nFAILED tests/test_api.py::test_login - AssertionError",
        "Exit code 2\nerror: unrecognized arguments: --fast",
        "Exit code 127\nbash: line 1: pnpm: command not found",
        "Exit code 1\nerror[E0308]: mismatched types",
        "Command timed out after 2m 0.0s",
        "Exit code 128\nfatal: not a git repository (or any of the parent directories): .git",
    ],
    "edit": [
        "String to replace not found in file.\nString: {detail}",
        "Found 2 matches of the string to replace, but replace_all is false.",
        "File has not been read yet. Read it first before writing to it.",
        "File has been modified since read, either by the user or by a linter.",
    ],
    "read": [
        "File does not exist. Current working directory: {project}",
        "File content (31245 tokens) exceeds maximum allowed tokens (25000).",
    ],
    "web": [
        "Request failed with status code 404",
        "Request failed with status code 403",
        "getaddrinfo ENOTFOUND docs.example.invalid",
    ],
    "other": [
        "The user doesn't want to proceed with this tool use.",
        "Tool execution was interrupted",
        "MCP error -32603: Internal error",
    ],
}
SESSION_ERRORS = [
    ("api_error", 529, "Overloaded"),
    ("rate_limit", 429, "Rate limited: please try again in 30s"),
    ("api_error", 500, "Internal server error"),
    ("authentication_error", 401, "Invalid API key"),
    ("api_error", None, "Request timed out"),
    ("context_overflow", 400, "prompt is too long: 201334 tokens > 200000 maximum"),
]
WORDS = [
    "the",
    "agent",
    "reads",
    "config",
    "files",
    "then",
    "runs",
    "tests",
    "and",
    "edits",
    "modules",
    "until",
    "the",
    "build",
    "passes",
    "while",
    "the",
    "user",
    "reviews",
    "diffs",
    "and",
    "asks",
    "for",
    "refactors",
    "of",
    "handlers",
    "queries",
    "and",
    "migrations",
]


@dataclass
class Session:
    id: str
    source: str
    project: str
    created_at: int
    ended_at: int | None
    updated_at: int
    weight: float
    files: list[str]


def _error_kind(tool: str) -> str:
    name = tool.lower()
    if name == "bash":
        return "bash"
    if name in ("edit", "multiedit", "write", "notebookedit"):
        return "edit"
    if name == "read":
        return "read"
    if name.startswith("web"):
        return "web"
    return "other"


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _sessions(rng: random.Random, count: int, now: int, days: int) -> list[Session]:
    projects = [f"/home/dev/src/{name}" for name in _project_names(rng, 40)]
    project_weights = [1 / (i + 1) for i in range(len(projects))]
    sessions = []
    for _ in range(count):
        source = "claude" if rng.random() < 0.7 else "opencode"
        sid = (
            f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-a{rng.getrandbits(12):03x}-{rng.getrandbits(48):012x}"
            if source == "claude"
            else "ses_"
            + "".join(rng.choice("0123456789abcdefghijkmnopqrstuvwxyz") for _ in range(26))
        )
        project = rng.choices(projects, project_weights)[0]
        created = now - int(rng.random() * days * DAY_MS)
        length = int(rng.lognormvariate(math.log(40 * 60_000), 1.0))
        end = min(created + length, now)
        ended = end if (rng.random() < 0.85 and end < now) else None
        files = [f"{project}/{_file_name(rng)}" for _ in range(rng.randint(5, 60))]
        weight = rng.paretovariate(1.3)
        sessions.append(Session(sid, source, project, created, ended, end, weight, files))
    sessions.sort(key=lambda s: s.created_at)
    return sessions


def _project_names(rng: random.Random, n: int) -> list[str]:
    stems = ["api", "web", "cli", "infra", "billing", "search", "mobile", "docs", "ml", "auth"]
    return [f"{rng.choice(stems)}-{rng.choice(stems)}-{i}" for i in range(n)]


def _file_name(rng: random.Random) -> str:
    folder = rng.choice(["src", "src/core", "src/api", "tests", "lib", "scripts", "docs"])
    stem = rng.choice(["main", "config", "handlers", "models", "utils", "db", "routes", "auth"])
    ext = rng.choice([".py", ".ts", ".tsx", ".rs", ".go", ".md", ".json"])
    return f"{folder}/{stem}_{rng.randint(1, 30)}{ext}"


def _split(rng: random.Random, total: int, weights: list[float]) -> list[int]:
    """Integer shares of `total` proportional to `weights` (each at least 1), summing to total."""
    scale = (total - len(weights)) / sum(weights)
    counts = [1 + int(w * scale) for w in weights]
    for i in rng.choices(range(len(weights)), weights, k=total - sum(counts)):
        counts[i] += 1
    return counts


def build(
    path: Path,
    *,
    sessions: int = 5_000,
    tools: int = 1_000_000,
    file_operations: int = 200_000,
    session_errors: int = 10_000,
    compactions: int = 8_000,
    days: int = 90,
    seed: int = 7,
    now: int | None = None,
    log: bool = True,
    raw: bool = False,
) -> None:
    """Create the database at `path` (which must not exist) through the real migrations.

    raw: apply only the migrations before the first rollup (0010), insert the rows, and leave
    the rest to the next connect_sync: the rollups' own backfill then fills them from the rows,
    which is much faster than their triggers row by row (10 million rows: minutes, not hours).
    """
    if path.exists():
        raise FileExistsError(path)
    rng = random.Random(seed)
    now = int(time.time() * 1000) if now is None else now
    started = time.monotonic()

    def say(message: str) -> None:
        if log:
            print(f"  [{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr)

    if raw:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        migrate(conn, tuple(m for m in MIGRATIONS if m.version < _FIRST_ROLLUP))
    else:
        conn = connect_sync(path)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    all_sessions = _sessions(rng, sessions, now, days)
    per_session = _split(rng, tools, [s.weight for s in all_sessions])
    say(f"{len(all_sessions)} sessions planned")

    outputs = [_text(rng, rng.randint(10, 300)) for _ in range(500)]
    tool_rows: list[tuple[object, ...]] = []
    file_tools: list[tuple[str, Session, str, str, int, int | None]] = []
    stats: dict[str, list[int]] = {}
    for session, count in zip(all_sessions, per_session, strict=True):
        catalog = CLAUDE_TOOLS if session.source == "claude" else OPENCODE_TOOLS
        names = [t[0] for t in catalog]
        shares = [t[1] for t in catalog]
        span = max(session.updated_at - session.created_at, 1)
        failed_count = 0
        for n in range(count):
            name, _, fail_rate, median, touches = catalog[
                names.index(rng.choices(names, shares)[0])
            ]
            created = session.created_at + int(span * (n + rng.random()) / count)
            roll = rng.random()
            success = None if roll < 0.005 else (0 if roll < 0.005 + fail_rate else 1)
            duration = (
                None if rng.random() < 0.03 else int(rng.lognormvariate(math.log(median), 1.1))
            )
            file_path = rng.choice(session.files) if touches else None
            error = exit_code = None
            if success == 0:
                failed_count += 1
                error = rng.choice(ERRORS[_error_kind(name)]).format(
                    detail=_text(rng, 6), project=session.project
                )
                if name.lower() == "bash" and error.startswith("Exit code"):
                    exit_code = int(error.split()[2])
            tool_id = f"toolu_{rng.getrandbits(96):024x}"
            tool_input = json.dumps(
                {"command": _text(rng, 8)} if file_path is None else {"file_path": file_path}
            )
            tool_rows.append(
                (
                    tool_id,
                    session.id,
                    session.source,
                    f"msg_{rng.getrandbits(64):016x}",
                    name,
                    tool_input,
                    rng.choice(outputs),
                    file_path,
                    success,
                    error,
                    exit_code,
                    duration,
                    created,
                    created + (duration or 0),
                    created,
                )
            )
            if file_path is not None and success != 0:
                file_tools.append((tool_id, session, name, file_path, created, success))
        stats[session.id] = [count, failed_count]
    tool_rows.sort(key=lambda r: r[-1])  # the daemon stores them as they happen
    say(f"{len(tool_rows)} tool calls generated")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tools (id, session_id, source, message_id, tool_name, tool_input, "
        "tool_output, file_path, success, error_message, exit_code, duration_ms, started_at, "
        "ended_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tool_rows,
    )
    conn.execute("COMMIT")
    del tool_rows
    say("tools inserted")

    chosen = rng.sample(file_tools, min(file_operations, len(file_tools)))
    while len(chosen) < file_operations:  # more operations than file tools: some touch twice
        chosen.append(rng.choice(file_tools))
    ops = []
    for n, (tool_id, session, name, file_path, created, _) in enumerate(chosen):
        kind = name.lower()
        if kind == "read":
            op, added, removed = "read", None, None
        elif kind == "write":
            op = "created" if rng.random() < 0.4 else "edited"
            added, removed = rng.randint(5, 400), rng.randint(0, 50)
        else:
            op = "deleted" if rng.random() < 0.01 else "edited"
            added, removed = rng.randint(0, 40), rng.randint(0, 30)
        ops.append(
            (
                f"{tool_id}:{n}",
                session.id,
                session.source,
                tool_id,
                file_path,
                op,
                added,
                removed,
                created,
            )
        )
    ops.sort(key=lambda r: r[-1])
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO file_operations (id, session_id, source, tool_id, file_path, "
        "operation_type, lines_added, lines_removed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ops,
    )
    conn.execute("COMMIT")
    say(f"{len(ops)} file operations inserted")

    weights = [s.weight for s in all_sessions]
    errors = []
    for n, session in enumerate(rng.choices(all_sessions, weights, k=session_errors)):
        kind, status, message = rng.choice(SESSION_ERRORS)
        at = session.created_at + int(
            rng.random() * max(session.updated_at - session.created_at, 1)
        )
        errors.append((f"err_{n}", session.id, session.source, kind, status, message, at))
    compaction_rows = []
    for n, session in enumerate(rng.choices(all_sessions, weights, k=compactions)):
        at = session.created_at + int(
            rng.random() * max(session.updated_at - session.created_at, 1)
        )
        before = rng.randint(120_000, 195_000)
        compaction_rows.append(
            (
                f"cmp_{n}",
                session.id,
                session.source,
                "auto" if rng.random() < 0.85 else "manual",
                before,
                rng.randint(15_000, 45_000),
                rng.randint(80, 900),
                rng.randint(2, 12),
                at,
            )
        )
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO session_errors (id, session_id, source, error_type, status_code, "
        "error_message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        errors,
    )
    conn.executemany(
        "INSERT INTO compaction_events (id, session_id, source, trigger, tokens_before, "
        "tokens_after, messages_before, messages_after, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        compaction_rows,
    )
    session_rows = []
    for s in all_sessions:
        calls, _ = stats[s.id]
        prompt = calls * rng.randint(20, 200)
        completion = calls * rng.randint(50, 400)
        cache_read = calls * rng.randint(5_000, 40_000)
        cache_write = calls * rng.randint(200, 3_000)
        cost = round(
            (prompt * 3 + completion * 15 + cache_read * 0.3 + cache_write * 3.75) / 1e6, 6
        )
        session_rows.append(
            (
                s.id,
                s.source,
                _text(rng, 5),
                s.project,
                s.project.rsplit("/", 1)[-1],
                "claude-sonnet-4-5" if s.source == "claude" else "anthropic/claude-sonnet-4-5",
                "anthropic",
                "ended" if s.ended_at else rng.choice(["idle", "busy", "waiting"]),
                prompt,
                completion,
                cache_read,
                cache_write,
                0,
                cost,
                calls * 2,
                max(calls // 12, 1),
                calls,
                s.created_at,
                s.updated_at,
                s.ended_at,
            )
        )
    conn.executemany(
        "INSERT INTO sessions (id, source, title, project_path, project_name, model, provider, "
        "status, prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, "
        "reasoning_tokens, cost, message_count, prompt_count, tool_call_count, created_at, "
        "updated_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        session_rows,
    )
    conn.execute("COMMIT")
    say(f"{len(errors)} session errors, {len(compaction_rows)} compactions, sessions inserted")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    say(f"done: {path} ({path.stat().st_size / 2**20:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--sessions", type=int, default=5_000)
    parser.add_argument("--tools", type=int, default=1_000_000)
    parser.add_argument("--file-operations", type=int, default=200_000)
    parser.add_argument("--session-errors", type=int, default=10_000)
    parser.add_argument("--compactions", type=int, default=8_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--raw", action="store_true", help="rows first, rollups' backfill later")
    args = parser.parse_args()
    build(
        args.path,
        sessions=args.sessions,
        tools=args.tools,
        file_operations=args.file_operations,
        session_errors=args.session_errors,
        compactions=args.compactions,
        seed=args.seed,
        raw=args.raw,
    )


if __name__ == "__main__":
    main()
