"""The statusline in a real, interactive Claude Code (the pinned CLI, 2.1.332) against the
scripted fake model.

Claude Code draws the statusLine only in its TUI, so the CLI runs in a pty (seeded as
shared/reference/real-clients.md says: onboarding done, the fake key approved, the project
trusted; the driver answers the terminal's cursor-position query). What it draws is read off a
terminal emulator (pyte) of the pty's size: the TUI redraws only the cells that changed, so the
raw stream holds a line in pieces, with cursor moves for the cells kept. The statusLine is
installed the way a user installs it (`agentd install claude --statusline`), and the daemon is
real.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pyte
import pytest
from realclients.agents import FAKE_ANTHROPIC_KEY, Scratch, claude_bin, claude_env
from realclients.fake_model import FakeModelServer, text, tool

from conftest import query_db

pytestmark = pytest.mark.realclient

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-Za-z]")


def _seed(scratch: Scratch) -> None:
    (scratch.home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "theme": "dark", "bypassPermissionsModeAccepted": True,
        "customApiKeyResponses": {"approved": [FAKE_ANTHROPIC_KEY[-20:]], "rejected": []},
        "projects": {str(scratch.proj): {"hasTrustDialogAccepted": True}},
    }))  # fmt: skip
    (scratch.home / ".claude").mkdir(exist_ok=True)
    (scratch.home / ".claude" / "settings.json").write_text(
        json.dumps({"skipDangerousModePermissionPrompt": True})
    )


class Terminal:
    """`claude` on a pty: what it drew so far (ANSI stripped), and keys to type."""

    COLUMNS, LINES = 160, 40

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become claude
            os.chdir(cwd)
            os.execve(argv[0], argv, env)
        # The size Claude draws for and the emulator's: the same.
        size = struct.pack("HHHH", self.LINES, self.COLUMNS, 0, 0)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, size)
        self.screen = b""
        self.emulator = pyte.Screen(self.COLUMNS, self.LINES)
        self.stream = pyte.ByteStream(self.emulator)

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            if b"\x1b[6n" in chunk:  # where is the cursor? (Claude waits for the answer)
                os.write(self.fd, b"\x1b[1;1R")
            self.screen += chunk
            self.stream.feed(chunk)

    def text(self) -> str:
        """Everything drawn so far, escapes stripped (for waiting on a word, and for errors)."""
        return _ANSI.sub(b"", self.screen).decode("utf-8", "replace")

    def shown(self) -> str:
        """The screen as it looks now, one line per row."""
        return "\n".join(line.rstrip() for line in self.emulator.display)

    def type(self, keys: str) -> None:
        for ch in keys:
            os.write(self.fd, ch.encode())
            time.sleep(0.02)

    def wait_for(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.pump(0.3)
            if predicate():
                return True
        return False

    def close(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                    os.close(self.fd)
                    return
                time.sleep(0.05)
        os.close(self.fd)


def test_the_statusline_is_drawn_and_its_samples_kept(daemon, agentd_env, agentd_home):
    with Scratch.create(prefix="sl-") as scratch:
        _seed(scratch)
        install = subprocess.run(
            [sys.executable, "-m", "agentd", "install", "claude", "--scope", "project",
             "--project-dir", str(scratch.proj), "--statusline"],
            env=dict(agentd_env, HOME=str(scratch.home)), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert install.returncode == 0, install.stderr
        script = [
            tool("Bash", {"command": "exit 4", "description": "Fail on purpose"}),
            text("Done.", usage={"input_tokens": 1200, "output_tokens": 30}),
        ]
        with FakeModelServer(script) as server:
            env = claude_env(
                scratch,
                server,
                {"AGENTD_HOME": agentd_env["AGENTD_HOME"], "TERM": "xterm-256color"},
            )
            term = Terminal(
                [str(claude_bin()), "--dangerously-skip-permissions"], env, str(scratch.proj)
            )
            try:
                # The TUI is up: its input box (footer) or a dialog shows; not a fixed wait.
                ready = ("bypass permissions on", "SettingsWarning")
                up = lambda: any(r in term.text() for r in ready)  # noqa: E731
                assert term.wait_for(up, 60), term.text()[-3000:]
                if "SettingsWarning" in term.text():
                    # A CLI older than the installed hook list warns about the events it does
                    # not know (e.g. PreSkillShellCommand on 2.1.329) in a dialog: go on.
                    term.type("\r")
                    term.pump(2)
                term.type("run the failing command\r")
                db = agentd_home / "agentd.db"

                # The whole line: model, Claude's session cost, today's cost (the response,
                # priced from the transcript the daemon follows) and the failed call.
                line = re.compile(
                    r"Opus [\d.]+ \| (ctx \d+% \| )?\$0\.\d\d session \| \$0\.\d\d today"
                    r" \| 1 failed tool call"
                )

                def drawn_after_the_turn() -> bool:
                    # Today's cost comes once the daemon's follower priced the transcript.
                    return bool(
                        line.search(term.shown())
                        and query_db(db, "SELECT 1 FROM statusline_samples LIMIT 1")
                    )

                assert term.wait_for(drawn_after_the_turn, 60), term.shown()
                term.type("/exit\r")
                term.pump(2)
            finally:
                term.close()
    samples = query_db(db, "SELECT * FROM statusline_samples ORDER BY received_at")
    (session,) = query_db(db, "SELECT id FROM sessions")
    assert {s["session_id"] for s in samples} == {session["id"]}
    last = samples[-1]
    assert last["context_window_size"] and last["total_cost_usd"] is not None
    # An API-key plan: Claude sends no rate limits, and the columns stay empty (not 0).
    assert last["five_hour_used_pct"] is None
