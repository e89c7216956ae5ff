"""The daemon's transcript follower (agentd/follow.py): live transcripts -> the rows an import gives.

In-process: a real Store on a real SQLite file and a real Follower fed the way service.py feeds it
(observe() after each Claude hook event). The transcripts are the real ones in tests/payloads,
written out as Claude Code writes them: line by line, sometimes half a line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from agentd.config import Config
from agentd.db.store import Store
from agentd.follow import TURN_END, Follower, Refused, open_transcript, transcript_problem
from agentd.importers import run_import
from agentd.importers.state import FOLLOW_FILE, ImportState
from conftest import PAYLOADS, query_db

MAIN = "bbce9559-ac03-43d5-abf7-5a5bf173473b"
SUB_SESSION = "6087c44d-4f26-44de-a67d-49deaec348a0"
SUB_AGENT = "abb204bb3a040e500"
TYPED = ("sessions", "messages", "tools", "file_operations", "session_errors", "compaction_events")


@pytest.fixture(autouse=True)
def _inline_prepare(monkeypatch):
    monkeypatch.setenv("AGENTD_IMPORT_WORKERS", "0")
    # One read per end of turn: the files here are complete when the event comes.
    from agentd import follow

    monkeypatch.setattr(follow, "SETTLE_S", (0.0,))


def lines(name: str) -> list[bytes]:
    return (PAYLOADS / name).read_bytes().splitlines(keepends=True)


def hook(kind: str, path: Path | str, session: str = MAIN) -> bytes:
    return json.dumps(
        {"session_id": session, "transcript_path": str(path), "hook_event_name": kind}
    ).encode()


def snapshot(db: Path) -> dict[str, list[dict[str, Any]]]:
    return {t: query_db(db, f"SELECT * FROM {t} ORDER BY id") for t in (*TYPED, "events")}


class Live:
    """A store and its follower, as the daemon runs them."""

    def __init__(self, config: Config, step_bytes: int = 8 << 20) -> None:
        self.config = config
        self.store = Store(config.db_path)
        self.follower = Follower(
            config.state_dir, self.store.prepare, self.store.submit, step_bytes=step_bytes
        )

    async def __aenter__(self) -> Live:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        await self.store.open()
        await self.follower.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.follower.close()
        await self.store.close()

    async def event(self, kind: str, path: Path | str, session: str = MAIN) -> None:
        await self.send(kind, hook(kind, path, session))

    async def send(self, kind: str, payload: bytes) -> None:
        """Store a hook event and show it to the follower, as service.py does."""
        # As the hook does: the time it saw the event (two identical Stops are two events).
        self.received_at = max(getattr(self, "received_at", 0) + 1, int(time.time() * 1000))
        event = self.store.prepare("claude", payload, self.received_at)
        await self.store.submit(event)
        self.follower.observe(event.kind, event.session_id, event.transcript_path)
        if kind in TURN_END:  # a busy session is polled until its turn ends
            assert await self.follower.settled(timeout=30)


@pytest.fixture
def project(tmp_path) -> Path:
    directory = tmp_path / ".claude" / "projects" / "-home-dev-runs-claude-main-proj"
    directory.mkdir(parents=True)
    return directory


# -- the path a peer names ------------------------------------------------------------------------


def test_the_transcript_path_followed_is_the_payloads_own():
    """The top-level key as sent, escapes decoded; never one nested deeper in the payload, even
    when it comes first (a crafted tool input, say)."""
    store = Store(Path("/nonexistent/agentd.db"))  # prepare() opens nothing
    prepared = store.prepare("claude", hook("Stop", "/a/projects/p/s.jsonl"), 1)
    assert prepared.transcript_path == "/a/projects/p/s.jsonl"
    escaped = json.dumps({"session_id": "s", "transcript_path": '/a/projects/p/"q".jsonl'})
    assert store.prepare("claude", escaped.encode(), 1).transcript_path == '/a/projects/p/"q".jsonl'
    nested = {"session_id": "s", "tool_input": {"transcript_path": "/x/projects/p/evil.jsonl"},
              "transcript_path": "/a/projects/p/s.jsonl"}  # fmt: skip
    assert store.prepare("claude", json.dumps(nested).encode(), 1).transcript_path == (
        "/a/projects/p/s.jsonl"
    )
    assert store.prepare("claude", b'{"session_id": "s"}', 1).transcript_path is None
    assert store.prepare("claude", b'{"transcript_path": 3}', 1).transcript_path == 3


async def test_a_path_nested_in_the_payload_is_not_followed(config, project):
    transcript = project / f"{MAIN}.jsonl"
    transcript.write_bytes(b"".join(lines("claude_transcript_trimmed.jsonl")))
    decoy = project / "decoy.jsonl"
    decoy.write_bytes(b"".join(lines("claude_subagent_transcript_trimmed.jsonl")))
    payload = {"session_id": MAIN, "tool_input": {"transcript_path": str(decoy)},
               "transcript_path": str(transcript), "hook_event_name": "Stop"}  # fmt: skip
    async with Live(config) as live:
        await live.send("Stop", json.dumps(payload).encode())
        assert await live.follower.settled(timeout=30)
    sessions = query_db(config.db_path, "SELECT DISTINCT session_id FROM messages")
    assert sessions == [{"session_id": MAIN}]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/h/.claude/projects/p/s.jsonl", None),
        ("/h/.claude/projects/p/s/subagents/agent-a.jsonl", None),
        ("relative/projects/p/s.jsonl", "not an absolute, normalized path"),
        ("/h/.claude/projects/p/../../../etc/s.jsonl", "not an absolute, normalized path"),
        ("/h/.claude/projects/p/s.json", "not a .jsonl file"),
        ("/etc/passwd.jsonl", "not inside a Claude projects/<project>/ directory"),
        ("/h/.claude/projects/s.jsonl", "not inside a Claude projects/<project>/ directory"),
        ("/h/.claude/projects/p/deeper/s.jsonl", "not inside a Claude projects/<project>/ directory"),
        ("/h/.claude/projects/p/\ud800.jsonl", "not a file name"),  # a lone surrogate
    ],
)  # fmt: skip
def test_transcript_problem(path, problem):
    assert transcript_problem(path) == problem


def test_open_transcript_refuses_symlinks_fifos_and_other_owners(project):
    real = project / "real.jsonl"
    real.write_text("{}\n")
    fd, st = open_transcript(str(real), os.getuid())
    os.close(fd)
    assert st.st_size == 3
    link = project / "link.jsonl"
    link.symlink_to(real)
    with pytest.raises(Refused, match="symlink"):
        open_transcript(str(link), os.getuid())
    fifo = project / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(Refused, match="not a regular file"):
        open_transcript(str(fifo), os.getuid())  # returns at once: opened non-blocking
    with pytest.raises(Refused, match="owned by uid"):
        open_transcript(str(real), os.getuid() + 1)
    with pytest.raises(FileNotFoundError):
        open_transcript(str(project / "gone.jsonl"), os.getuid())


# -- live == import -------------------------------------------------------------------------------


async def test_turn_end_reads_the_transcript_and_a_later_import_changes_nothing(
    config, project, tmp_path
):
    transcript = project / f"{MAIN}.jsonl"
    records = lines("claude_transcript_trimmed.jsonl")
    half = len(records) // 2
    transcript.write_bytes(b"".join(records[:half]))
    async with Live(config) as live:
        await live.event("PreToolUse", transcript)  # busy: polled until the Stop
        await live.event("Stop", transcript)
        first = query_db(config.db_path, "SELECT count(*) AS n FROM messages")[0]["n"]
        assert first > 0
        transcript.write_bytes(b"".join(records))  # the rest of the session
        await live.event("Stop", transcript)
        await live.event("SessionEnd", transcript)
    live_rows = snapshot(config.db_path)
    (s,) = [r for r in live_rows["sessions"] if r["id"] == MAIN]
    # What only the transcript has, without an import: tokens, cost, model, compaction tokens.
    assert s["prompt_tokens"] > 0 and s["completion_tokens"] > 0 and s["cost"] > 0
    assert s["model"] == "claude-opus-5-5"
    assert [(c["tokens_before"], c["tokens_after"]) for c in live_rows["compaction_events"]] == [
        (120, 2699)
    ]
    followed = ImportState.load(config.state_dir, FOLLOW_FILE).entries("claude")
    assert followed[str(transcript)]["offset"] == transcript.stat().st_size

    summary = await asyncio.to_thread(run_import, config, "claude", [project.parent])
    assert (summary.files_unchanged, summary.events_sent) == (1, 0)
    assert snapshot(config.db_path) == live_rows

    # An import into a fresh database of the same transcript: the same typed rows (hook-only
    # columns aside), so live following and import are one reader.
    alone = Config.load({"AGENTD_HOME": str(tmp_path / "alone")})  # a home of its own
    await asyncio.to_thread(run_import, alone, "claude", [project.parent])
    imported = snapshot(alone.db_path)
    for table in ("messages", "tools", "file_operations", "session_errors", "compaction_events"):
        # messages.created_at: a read mid-response sees the response's first block (min wins).
        drop = {"created_at"} if table == "messages" else set()
        assert [{k: v for k, v in r.items() if k not in drop} for r in imported[table]] == [
            {k: v for k, v in r.items() if k not in drop} for r in live_rows[table]
        ], table
    (i,) = imported["sessions"]
    assert (i["cost"], i["prompt_tokens"], i["model"]) == (
        s["cost"],
        s["prompt_tokens"],
        s["model"],
    )


async def test_subagent_transcripts_are_followed_with_their_session(config, tmp_path):
    projects = tmp_path / ".claude" / "projects" / "-home-dev-runs-claude-subagent-proj"
    sub = projects / SUB_SESSION / "subagents"
    sub.mkdir(parents=True)
    main = projects / f"{SUB_SESSION}.jsonl"
    main.write_text("")
    shutil.copy(
        PAYLOADS / "claude_subagent_transcript_trimmed.jsonl", sub / f"agent-{SUB_AGENT}.jsonl"
    )
    async with Live(config) as live:
        await live.event("SubagentStop", main, SUB_SESSION)
    agents = query_db(config.db_path, "SELECT DISTINCT agent_id FROM messages")
    assert agents == [{"agent_id": SUB_AGENT}]
    assert query_db(config.db_path, "SELECT id FROM sessions") == [{"id": SUB_SESSION}]


async def test_big_transcripts_are_read_in_steps_with_the_same_result(config, tmp_path, project):
    transcript = project / f"{MAIN}.jsonl"
    shutil.copy(PAYLOADS / "claude_transcript_trimmed.jsonl", transcript)
    async with Live(config, step_bytes=4096) as live:
        await live.event("Stop", transcript)
        assert live.follower.files_read > 3  # many steps
    stepped = snapshot(config.db_path)
    whole = Config.load({"AGENTD_HOME": str(tmp_path / "whole")})
    async with Live(whole) as live:
        await live.event("Stop", transcript)
    one_go = snapshot(whole.db_path)
    for table in ("messages", "tools", "file_operations", "session_errors", "compaction_events"):
        # messages.created_at: a step ending mid-response sees its first block (min wins);
        # idle_ms is measured from it.
        drop = {"created_at", "idle_ms"} if table == "messages" else set()
        assert [{k: v for k, v in r.items() if k not in drop} for r in stepped[table]] == [
            {k: v for k, v in r.items() if k not in drop} for r in one_go[table]
        ], table
    (a,), (b,) = stepped["sessions"], one_go["sessions"]
    assert (a["cost"], a["prompt_tokens"], a["model"]) == (
        b["cost"],
        b["prompt_tokens"],
        b["model"],
    )


async def test_sessions_take_turns_so_a_long_backlog_does_not_hold_up_the_others(config, project):
    """A session with much to read (here: a transcript of ~25 steps) reads one step per round:
    another session's turn end, seen meanwhile, is read before the backlog is done, not after."""
    big = project / f"{MAIN}.jsonl"
    shutil.copy(PAYLOADS / "claude_transcript_trimmed.jsonl", big)
    other = "0a0a0a0a-1111-4222-8333-444444444444"
    small = project / f"{other}.jsonl"
    small.write_bytes(b"".join(lines("claude_transcript_trimmed.jsonl")[:8]).replace(
        MAIN.encode(), other.encode()))  # fmt: skip
    async with Live(config, step_bytes=4096) as live:
        stops = [(MAIN, big), (other, small)]
        for n, (session, path) in enumerate(stops):
            await live.store.ingest("claude", hook("Stop", path, session), 1_800_000_000_000 + n)
        for session, path in stops:  # both turns end before the follower runs
            live.follower.observe("Stop", session, str(path))
        assert await live.follower.settled(timeout=30)
        assert live.follower.files_read > 10
    last = {r["session_id"]: r["last"] for r in query_db(config.db_path,
        "SELECT session_id, max(rowid) AS last FROM events WHERE source = 'claude-transcript'"
        " GROUP BY session_id")}  # fmt: skip
    assert last.keys() == {MAIN, other}
    assert last[other] < last[MAIN]  # the small one was read while the backlog was still read


async def test_a_later_event_naming_another_transcript_is_followed(config, project):
    """The first event of a session named a file that is not its transcript (or a path since
    moved): a later event naming the right one is followed, not ignored."""
    transcript = project / f"{MAIN}.jsonl"
    shutil.copy(PAYLOADS / "claude_transcript_trimmed.jsonl", transcript)
    async with Live(config) as live:
        await live.event("SessionStart", project / f"wrong-{MAIN}.jsonl")
        await live.event("Stop", transcript)
    assert query_db(config.db_path, "SELECT count(*) AS n FROM messages")[0]["n"] > 0


# -- bad input ------------------------------------------------------------------------------------


async def test_half_written_line_waits_and_shrink_or_replace_rereads_without_duplicates(
    config, project, caplog
):
    caplog.set_level(logging.INFO, logger="agentd.follow")
    transcript = project / f"{MAIN}.jsonl"
    records = lines("claude_transcript_trimmed.jsonl")
    data = b"".join(records)
    torn = len(b"".join(records[:20])) + 40  # 40 bytes into a record
    transcript.write_bytes(data[:torn])
    async with Live(config) as live:
        await live.event("Stop", transcript)
        entry = live.follower.state.entries("claude")[str(transcript)]
        assert entry["offset"] == len(b"".join(records[:20]))  # not past the torn line
        transcript.write_bytes(data)
        await live.event("Stop", transcript)
        once = snapshot(config.db_path)
        # Replaced: a new inode with the same records. Read again, nothing new.
        replacement = project / "new.tmp"
        replacement.write_bytes(data)
        os.replace(replacement, transcript)
        await live.event("Stop", transcript)
        # Shrunk to its first half, then grown back.
        transcript.write_bytes(data[: len(data) // 2])
        await live.event("Stop", transcript)
        transcript.write_bytes(data)
        await live.event("Stop", transcript)
    after = snapshot(config.db_path)
    for table in TYPED:
        assert [r["id"] for r in after[table]] == [r["id"] for r in once[table]], table
    assert len(after["events"]) == len(once["events"]) + 3  # the three Stop hook events only
    assert "reading it again from the start" in caplog.text


async def test_a_transcript_rewritten_in_place_and_grown_is_read_again(config, project, caplog):
    """Same inode, truncated and written again with other records, ending up larger than what
    was read: read from the start, not on from the old offset (which would lose the new lines)."""
    caplog.set_level(logging.INFO, logger="agentd.follow")
    transcript = project / f"{MAIN}.jsonl"
    transcript.write_bytes(b"".join(lines("claude_transcript_trimmed.jsonl")[:8]))
    subagent = b"".join(lines("claude_subagent_transcript_trimmed.jsonl"))
    async with Live(config) as live:
        await live.event("Stop", transcript)
        assert len(subagent) > transcript.stat().st_size
        with transcript.open("r+b") as f:
            f.truncate(0)
            f.write(subagent)
        await live.event("Stop", transcript)
    sub_tools = query_db(config.db_path, "SELECT agent_id FROM tools WHERE session_id = ?",
                         (SUB_SESSION,))  # fmt: skip
    assert sub_tools == [{"agent_id": SUB_AGENT}]
    assert "was rewritten: reading it again from the start" in caplog.text


async def test_a_follower_whose_state_dir_is_no_longer_its_own_saves_no_offsets(config, project):
    """The daemon's state dir deleted or replaced while it runs: the offsets count what went into
    its (deleted) database, so they must not land in the new dir, where the next daemon would
    skip those lines."""
    transcript = project / f"{MAIN}.jsonl"
    transcript.write_bytes(b"".join(lines("claude_transcript_trimmed.jsonl")))
    ours = [True]
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.db_path)
    await store.open()
    follower = Follower(config.state_dir, store.prepare, store.submit, may_save=lambda: ours[0])
    await follower.start()
    try:
        assert await follower.follow_file(str(transcript)) > 0
        assert follower.state.dirty
        ours[0] = False
    finally:
        await follower.close()
        await store.close()
    assert not (config.state_dir / FOLLOW_FILE).exists()


async def test_refused_paths_are_logged_once_and_never_read(config, tmp_path, project, caplog):
    caplog.set_level(logging.WARNING, logger="agentd.follow")
    outside = tmp_path / "elsewhere" / "secret.jsonl"
    outside.parent.mkdir()
    shutil.copy(PAYLOADS / "claude_transcript_trimmed.jsonl", outside)
    link = project / f"{MAIN}.jsonl"
    link.symlink_to(outside)
    fifo = project / "fifo.jsonl"
    os.mkfifo(fifo)
    async with Live(config) as live:
        await live.event("Stop", outside, "s-outside")
        await live.event("Stop", outside, "s-outside")
        await live.event("Stop", link)
        await live.event("Stop", fifo, "s-fifo")  # would block a blocking open: it must not
    assert query_db(config.db_path, "SELECT count(*) AS n FROM messages")[0]["n"] == 0
    assert caplog.text.count(str(outside)) == 1
    assert "a symlink" in caplog.text and "not a regular file" in caplog.text


async def test_paths_it_cannot_even_read_are_said_too(config, tmp_path, project, caplog):
    """A transcript_path over 4096 characters, and a session's subagents directory that is a
    symlink: not followed, and one log line says so (they were silent)."""
    caplog.set_level(logging.WARNING, logger="agentd.follow")
    transcript = project / f"{MAIN}.jsonl"
    shutil.copy(PAYLOADS / "claude_transcript_trimmed.jsonl", transcript)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(PAYLOADS / "claude_subagent_transcript_trimmed.jsonl", elsewhere / "agent-x.jsonl")
    (project / MAIN).mkdir()
    (project / MAIN / "subagents").symlink_to(elsewhere)
    async with Live(config) as live:
        await live.event("Stop", project / ("x" * 5000 + ".jsonl"), "s-long")
        await live.event("Stop", transcript)
    assert "transcript_path is not a JSON string of 1 to 4096 characters" in caplog.text
    assert "the subagents directory is a symbolic link" in caplog.text
    assert (
        query_db(config.db_path, "SELECT count(*) AS n FROM messages WHERE agent_id IS NOT NULL")[
            0
        ]["n"]
        == 0
    )


async def test_busy_sessions_are_polled_without_an_end_of_turn(config, project, monkeypatch):
    from agentd import follow

    monkeypatch.setattr(follow, "BUSY_POLL_S", 0.05)
    transcript = project / f"{MAIN}.jsonl"
    transcript.write_bytes(b"".join(lines("claude_transcript_trimmed.jsonl")))
    async with Live(config) as live:
        live.follower.observe("PreToolUse", MAIN, str(transcript))
        deadline = time.monotonic() + 60  # bounds only a failing test
        while time.monotonic() < deadline:
            if query_db(config.db_path, "SELECT count(*) AS n FROM messages")[0]["n"]:
                break
            await asyncio.sleep(0.02)
        assert query_db(config.db_path, "SELECT count(*) AS n FROM messages")[0]["n"] > 0


async def test_a_flood_of_refused_paths_stays_bounded(config, monkeypatch, caplog):
    """Each refused path is remembered to be logged once: a peer naming new bad paths without
    end must not grow the daemon's memory or its log without end."""
    from agentd import follow

    monkeypatch.setattr(follow, "MAX_REFUSED", 3)
    caplog.set_level(logging.WARNING, logger="agentd.follow")
    async with Live(config) as live:
        for n in range(10):
            live.follower.observe("Stop", f"s-{n}", f"/tmp/elsewhere/{n}.jsonl")
        assert len(live.follower._refused) == 4
    assert caplog.text.count("not following transcript") == 3
    assert caplog.text.count("no more are logged") == 1


async def test_a_flood_of_new_sessions_evicts_the_oldest(config, project, monkeypatch):
    """Sessions followed at once are bounded: a new one beyond the bound makes the one heard of
    longest ago go (its next event brings it back)."""
    from agentd import follow

    monkeypatch.setattr(follow, "MAX_SESSIONS", 3)
    async with Live(config) as live:
        for n in range(5):
            live.follower.observe("UserPromptSubmit", f"s-{n}", str(project / f"s-{n}.jsonl"))
            await asyncio.sleep(0)  # a later `seen` for each
        assert sorted(live.follower._sessions) == ["s-2", "s-3", "s-4"]
