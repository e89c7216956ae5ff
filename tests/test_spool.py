"""The spool format and the daemon's draining of it, with a real daemon."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from agentd import spool
from conftest import query_db, wait_for


def line(source, payload, received_at=1):
    return (
        json.dumps({"source": source, "payload": payload, "received_at": received_at}).encode()
        + b"\n"
    )


def test_write_file_is_atomic_and_private(tmp_path):
    path = Path(spool.write_file(tmp_path / "spool", "claude", [line("claude", {"a": 1})]))
    assert path.name.startswith(f"claude-{os.getpid()}-") and path.name.endswith(".ndjson")
    assert (path.stat().st_mode & 0o777) == 0o600
    assert spool.ready_files(tmp_path / "spool") == [str(path)]
    assert spool.read_lines(path) == ([line("claude", {"a": 1}).rstrip(b"\n")], 0)


def test_open_file_of_a_live_writer_is_left_alone(tmp_path):
    d = tmp_path / "spool"
    d.mkdir()
    mine = d / f"opencode-{os.getpid()}-1.ndjson.open"
    mine.write_bytes(line("opencode", {"a": 1}))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = d / f"opencode-{dead.stdout.strip()}-1.ndjson.open"
    orphan.write_bytes(line("opencode", {"b": 1}))
    assert spool.ready_files(d) == [str(orphan)]
    assert spool.backlog(d)[0] == 2


def test_torn_last_line_is_reported_not_read(tmp_path):
    p = tmp_path / "x.ndjson"
    p.write_bytes(line("claude", {"a": 1}) + b'{"source": "cla')
    lines, torn = spool.read_lines(p)
    assert len(lines) == 1 and torn == len(b'{"source": "cla')


def test_daemon_drains_spool_at_start_without_duplicates(make_daemon, config):
    payloads = [{"session_id": "sp", "hook_event_name": "PreToolUse", "n": i} for i in range(50)]
    spool.write_file(
        config.spool_dir, "claude", [line("claude", p, 1000 + i) for i, p in enumerate(payloads)]
    )
    # The same events once more, as a hook that timed out after the daemon committed would leave them.
    spool.write_file(
        config.spool_dir,
        "claude",
        [line("claude", p, 1000 + i) for i, p in enumerate(payloads[:10])],
    )
    daemon = make_daemon().start()
    assert wait_for(lambda: not list(config.spool_dir.glob("*.ndjson")))
    rows = query_db(config.db_path, "SELECT count(*) AS n, min(received_at) AS first FROM events")
    assert rows == [{"n": 50, "first": 1000}]
    assert daemon.call("status")["spool_events_drained"] == 60


def test_daemon_drains_spool_while_running(daemon, config):
    spool.write_file(
        config.spool_dir, "opencode", [line("opencode", {"kind": "event", "event": {"type": "x"}})]
    )
    assert wait_for(
        lambda: query_db(config.db_path, "SELECT count(*) AS n FROM events") == [{"n": 1}]
    )
    assert wait_for(lambda: not list(config.spool_dir.glob("*.ndjson")))


def test_unreadable_lines_are_kept_aside_not_lost(daemon, config):
    good = line("claude", {"session_id": "g", "hook_event_name": "Stop"})
    spool.write_file(
        config.spool_dir, "claude", [good, b"not json at all\n", line("claude", [1, 2])]
    )
    assert wait_for(lambda: not list(config.spool_dir.glob("*.ndjson")))
    rejected = list((config.spool_dir / "rejected").iterdir())
    assert len(rejected) == 1
    assert rejected[0].read_bytes() == b"not json at all\n" + line("claude", [1, 2])
    assert query_db(config.db_path, "SELECT session_id FROM events") == [{"session_id": "g"}]
    assert daemon.call("status")["spool_lines_rejected"] == 2


def test_a_hook_spool_line_whose_payload_is_not_json_is_kept_as_text(daemon, config):
    # The hook embeds stdin as it came (checking it would slow the hook); the daemon salvages it.
    broken = b'{"source":"claude","received_at":1234,"payload":{"session_id": "b", "oops"}\n'
    spool.write_file(config.spool_dir, "claude", [broken])
    assert wait_for(
        lambda: query_db(config.db_path, "SELECT count(*) AS n FROM events") == [{"n": 1}]
    )
    (row,) = query_db(config.db_path, "SELECT payload, received_at FROM events")
    assert json.loads(row["payload"]) == {"agentd_unparsed_stdin": '{"session_id": "b", "oops"'}
    assert row["received_at"] == 1234
    assert not (config.spool_dir / "rejected").exists()


def test_encode_line_is_the_hooks_exact_format():
    # docs/protocol.md "Spool": one `ingest` params object per line, the payload as it came.
    payload = b'{"session_id": "s",\r\n "n": 1}'
    assert spool.encode_line("claude", 1234, payload) == (
        b'{"source":"claude","received_at":1234,"payload":{"session_id": "s",   "n": 1}}'
    )


def test_decode_line_reads_what_encode_line_and_other_writers_write():
    encoded = spool.encode_line("claude", 1234, b'{"session_id": "s"}')
    assert spool.decode_line(encoded) == ("claude", b'{"session_id": "s"}', 1234)
    other = line("opencode", {"type": "x"}, 5).rstrip(b"\n")  # key order and spacing of its own
    assert spool.decode_line(other) == ("opencode", b'{"type": "x"}', 5)
    assert spool.decode_line(b'{"source":"opencode","payload":{}}') == ("opencode", b"{}", None)


def test_decode_line_keeps_a_hook_payload_that_is_not_a_json_object_as_text():
    for payload, text in [
        (b'{"session_id": "b", "oops"', '{"session_id": "b", "oops"'),
        (b'{"a": "\xff"}', '{"a": "\ufffd"}'),  # not UTF-8
        (
            b'{"a": 1e999}',
            '{"a": 1e999}',
        ),  # skipped by the envelope's decoder, refused by any other
    ]:
        source, kept, received_at = spool.decode_line(spool.encode_line("claude", 7, payload))
        assert (source, json.loads(kept), received_at) == (
            "claude",
            {"agentd_unparsed_stdin": text},
            7,
        )


def test_decode_line_refuses_a_line_that_holds_no_event():
    for bad in [b"not json at all", line("claude", [1, 2]).rstrip(b"\n"), b'{"source":"claude"}']:
        try:
            spool.decode_line(bad)
        except ValueError:
            continue
        raise AssertionError(f"decoded {bad!r}")


def test_process_exists():
    assert spool.process_exists(os.getpid())
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert not spool.process_exists(int(gone.stdout))
    assert spool.process_exists(1)  # another user's process (init) exists all the same


def test_junk_in_the_spool_is_logged_once_and_never_holds_up_the_rest(make_daemon, config):
    """A directory, a FIFO and symlinks named like spool files, all older than the real files:
    none is read (the FIFO used to block a worker thread for ever, so the daemon could not stop;
    the directory raised at every pass and stalled every file after it; a link was read through),
    each is logged once, the real files drain, and the daemon stops at once."""
    d = config.spool_dir
    d.mkdir(parents=True, mode=0o700)
    secret = config.state_dir / "secret.txt"
    secret.write_text('{"source":"claude","payload":{"session_id":"via-link"}}\n')
    (d / "claude-1-dir.ndjson").mkdir()
    os.mkfifo(d / "claude-1-fifo.ndjson")
    (d / "claude-1-link.ndjson").symlink_to(secret)
    (d / "claude-1-zero.ndjson").symlink_to("/dev/zero")
    junk = [
        "claude-1-dir.ndjson",
        "claude-1-fifo.ndjson",
        "claude-1-link.ndjson",
        "claude-1-zero.ndjson",
    ]
    for name in junk:
        os.utime(d / name, (946684800, 946684800), follow_symlinks=False)  # oldest: first in line
    for i in range(3):
        spool.write_file(d, "claude", [line("claude", {"session_id": f"ok{i}"}, 10 + i)])
    daemon = make_daemon().start()
    assert wait_for(
        lambda: query_db(config.db_path, "SELECT count(*) AS n FROM events") == [{"n": 3}]
    )
    assert wait_for(lambda: sorted(p.name for p in d.glob("*.ndjson")) == sorted(junk))
    time.sleep(2.5)  # more passes: still one line each
    assert daemon.call("status")["spool_files"] == 0  # what will never drain is no backlog
    started = time.monotonic()
    assert daemon.stop(timeout=30) == 0
    assert time.monotonic() - started < 15
    log = (config.state_dir / "agentd.log").read_text()
    for name in junk:
        assert log.count(f"spool entry {d / name} ") == 1, (name, log)
    assert "Traceback" not in log
    assert not (d / "rejected").exists()  # nothing was read through a link
    names = query_db(config.db_path, "SELECT session_id FROM events ORDER BY session_id")
    assert names == [{"session_id": "ok0"}, {"session_id": "ok1"}, {"session_id": "ok2"}]
    assert (d / "claude-1-dir.ndjson").is_dir() and (d / "claude-1-link.ndjson").is_symlink()


def test_read_pieces_reads_a_file_in_pieces_and_only_hashes_a_line_too_long(tmp_path):
    import hashlib

    p = tmp_path / "x.ndjson"
    long_line = b"y" * 50
    p.write_bytes(b"a\nbb\n" + long_line + b"\nccc\n\ntorn")
    fd = spool.open_regular(p)
    try:
        pieces = list(spool.read_pieces(fd, piece_bytes=16))
    finally:
        os.close(fd)
    lines = [line for piece in pieces for line in piece[0]]
    too_long = [t for piece in pieces for t in piece[1]]
    assert lines == [b"a", b"bb", b"ccc"]
    assert too_long == [(50, hashlib.blake2b(long_line, digest_size=16).hexdigest())]
    assert pieces[-1][2] == b"torn" and all(piece[2] == b"" for piece in pieces[:-1])
    assert max(len(b"".join(piece[0])) for piece in pieces) <= 16


def test_open_regular_refuses_what_is_not_a_regular_file(tmp_path):
    (tmp_path / "f").write_bytes(b"x\n")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for name in ("link", "dir", "fifo"):
        try:
            os.close(spool.open_regular(tmp_path / name))
        except spool.NotRegular:
            continue
        raise AssertionError(f"opened {name}")
    os.close(spool.open_regular(tmp_path / "f"))


def test_encode_line_keeps_a_payload_with_a_raw_newline_in_a_string_exactly():
    # A raw CR LF inside a string makes the payload invalid JSON; made spaces, it became a valid
    # event saying "a  b". It is kept as the exact text instead.
    payload = b'{"session_id":"so","hook_event_name":"Stop","x":"a\r\nb"}'
    encoded = spool.encode_line("claude", 7, payload)
    assert b"\n" not in encoded and b"\r" not in encoded
    source, kept, received_at = spool.decode_line(encoded)
    assert (source, received_at) == ("claude", 7)
    assert json.loads(kept) == {"agentd_unparsed_stdin": payload.decode()}
    # Raw newlines as whitespace of valid JSON: the same event, on one line.
    pretty = b'{\n  "session_id": "s",\r\n  "x": "a b"\n}'
    assert json.loads(spool.decode_line(spool.encode_line("claude", 7, pretty))[1]) == {
        "session_id": "s",
        "x": "a b",
    }
    # Old spool lines (newlines made spaces by an older hook) read as before.
    old = b'{"source":"claude","received_at":7,"payload":{"session_id": "s",   "n": 1}}'
    assert spool.decode_line(old) == ("claude", b'{"session_id": "s",   "n": 1}', 7)
    # Nested past Python's recursion limit, with a raw newline: still one line, kept (the hook
    # failed with RecursionError and kept nothing); the daemon judges its depth when drained.
    deep = b'{"session_id":"s","x":' + b"[" * 5000 + b"\n" + b"]" * 5000 + b"}"
    encoded = spool.encode_line("claude", 7, deep)
    assert b"\n" not in encoded and b"[" * 5000 in encoded
