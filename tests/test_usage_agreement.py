"""Agreement with the peers on transcripts the real Claude Code (2.1.329) wrote: per-session
token totals equal ccusage's (20.0.24, `--offline`), and the cost agentd computes from tokens is
within 1 % of Claude's own `cost-state`, cache reads and 5-minute / 1-hour writes included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from realclients.agents import Scratch, parse_claude_json, run_claude
from realclients.fake_model import FakeModelServer, text, tool

from conftest import query_db

pytestmark = pytest.mark.realclient

CCUSAGE = "ccusage@20.0.24"


@pytest.fixture(scope="module")
def ccusage(tmp_path_factory) -> Path:
    """ccusage from the npm registry into a private prefix (about 2 s, two packages)."""
    npm = shutil.which("npm")
    assert npm, "npm is needed (./scripts/test installs node and npm)"
    prefix = tmp_path_factory.mktemp("ccusage")
    subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", CCUSAGE],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return prefix / "node_modules" / ".bin" / "ccusage"


def _script(proj: Path) -> list[dict]:
    # Anthropic usage as the API reports it: uncached input, output, cache reads, and cache
    # writes by lifetime; Claude Code writes it to the transcript and prices it in cost-state.
    return [
        tool("Bash", {"command": "echo one", "description": "One"}, usage={
            "input_tokens": 1500, "output_tokens": 120, "cache_read_input_tokens": 30000,
            "ephemeral_5m_input_tokens": 4000}),
        tool("Write", {"file_path": str(proj / "a.txt"), "content": "x\n"}, usage={
            "input_tokens": 40, "output_tokens": 300, "cache_read_input_tokens": 34000,
            "ephemeral_1h_input_tokens": 2500}),
        text("Done.", usage={
            "input_tokens": 300, "output_tokens": 80, "cache_read_input_tokens": 36500,
            "ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 500}),
    ]  # fmt: skip


def test_tokens_match_ccusage_and_cost_matches_claudes_own(ccusage, agentd_env, agentd_home):
    with Scratch.create(prefix="ag-") as scratch:
        with FakeModelServer(_script(scratch.proj)) as server:
            result = run_claude(scratch, server, "do the steps")
        assert result.returncode == 0, result.stderr
        session = parse_claude_json(result)["session_id"]
        claude_dir = scratch.home / ".claude"
        imported = subprocess.run(
            [sys.executable, "-m", "agentd", "import", "claude", "--path", str(claude_dir / "projects")],
            env=agentd_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        peer = subprocess.run(
            [str(ccusage), "session", "--json", "--offline"],
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch.home),
                 "CLAUDE_CONFIG_DIR": str(claude_dir)},
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    (theirs,) = [s for s in json.loads(peer.stdout)["session"] if s["period"] == session]
    (ours,) = query_db(agentd_home / "agentd.db", "SELECT * FROM sessions WHERE id = ?", (session,))
    assert {
        "inputTokens": ours["prompt_tokens"],
        "outputTokens": ours["completion_tokens"],
        "cacheReadTokens": ours["cache_read_tokens"],
        "cacheCreationTokens": ours["cache_write_tokens"],
    } == {
        k: theirs[k]
        for k in ("inputTokens", "outputTokens", "cacheReadTokens", "cacheCreationTokens")
    }
    assert ours["cache_write_tokens"] == 4000 + 2500 + 600
    # Claude's own figure (the transcript's cost-state) against agentd's, computed per message.
    assert ours["cost"] > 0 and ours["unpriced_messages"] is None
    assert ours["computed_cost"] == pytest.approx(ours["cost"], rel=0.01)
