"""Drivers for the real `claude -p` and `opencode run`, offline, in scratch directories.

Each run gets an `env -i` style environment (nothing inherited from the test process), HOME/TMPDIR
inside a scratch directory, the model pointed at a `FakeModelServer`, and every
auto-update/telemetry switch off. Each run has a timeout; on timeout the whole process group of
the CLI is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fake_model import FakeModelServer

REPO = Path(__file__).resolve().parents[2]
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"
CLAUDE_VERSION = "2.1.332"
OPENCODE_VERSION = "1.18.33"
# The old OpenCode that still keeps sessions as JSON files (storage/), in its own directory.
LEGACY_OPENCODE_VERSION = "1.1.65"
FAKE_ANTHROPIC_KEY = "sk-ant-fake-key"
FAKE_OPENAI_KEY = "sk-fake"

# Claude Code hook events that are safe to register in tests (pitfall 11: never WorktreeCreate,
# such a hook *replaces* git-worktree creation; WorktreeRemove goes with it).
CLAUDE_HOOK_EVENTS = (
    "PreToolUse",
    "PostToolUse",
    "PostToolUseFailure",
    "PostToolBatch",
    "Notification",
    "UserPromptSubmit",
    "UserPromptExpansion",
    "SessionStart",
    "SessionEnd",
    "Stop",
    "StopFailure",
    "SubagentStart",
    "SubagentStop",
    "PreCompact",
    "PostCompact",
    "PreModelSwitch",
    "PostModelSwitch",
    "PermissionRequest",
    "PermissionDenied",
    "Setup",
    "TeammateIdle",
    "TaskCreated",
    "TaskCompleted",
    "Elicitation",
    "ElicitationResult",
    "ConfigChange",
    "InstructionsLoaded",
    "CwdChanged",
    "FileChanged",
    "DirectoryAdded",
    "MessageDisplay",
)


class AgentsNotInstalled(RuntimeError):
    """The pinned agent CLIs are not installed."""


class AgentTimeout(RuntimeError):
    """A CLI run exceeded its timeout; its process group was killed."""

    def __init__(self, argv: Sequence[str], timeout: float, stdout: str, stderr: str) -> None:
        super().__init__(
            f"{Path(argv[0]).name} did not finish within {timeout} s (process group killed)\n"
            f"--- stdout (tail) ---\n{stdout[-2000:]}\n--- stderr (tail) ---\n{stderr[-2000:]}"
        )
        self.argv = list(argv)
        self.timeout = timeout
        self.stdout = stdout
        self.stderr = stderr


# --------------------------------------------------------------------------- binaries


def agents_dir() -> Path:
    """The install dir of scripts/install-agents: $AGENTD_AGENTS_DIR or <repo>/.agents."""
    override = os.environ.get("AGENTD_AGENTS_DIR")
    return Path(override) if override else REPO / ".agents"


def _bin(name: str) -> Path:
    path = agents_dir() / "node_modules" / ".bin" / name
    if not (path.exists() and os.access(path, os.X_OK)):
        raise AgentsNotInstalled(
            f"{path} is missing: run scripts/install-agents first (it installs the pinned "
            f"Claude Code {CLAUDE_VERSION} and OpenCode {OPENCODE_VERSION} into "
            f"{agents_dir()}; set AGENTD_AGENTS_DIR to use another directory)"
        )
    return path


def claude_bin() -> Path:
    return _bin("claude")


def legacy_agents_dir() -> Path:
    """The old OpenCode's install dir: $AGENTD_LEGACY_AGENTS_DIR or <repo>/.agents-legacy."""
    override = os.environ.get("AGENTD_LEGACY_AGENTS_DIR")
    return Path(override) if override else REPO / ".agents-legacy"


def opencode_legacy_bin() -> Path:
    path = legacy_agents_dir() / "node_modules" / ".bin" / "opencode"
    if not (path.exists() and os.access(path, os.X_OK)):
        raise AgentsNotInstalled(
            f"{path} is missing: run scripts/install-agents first (it installs OpenCode "
            f"{LEGACY_OPENCODE_VERSION}, the last kind that keeps JSON storage, into "
            f"{legacy_agents_dir()})"
        )
    return path


def opencode_bin() -> Path:
    return _bin("opencode")


# --------------------------------------------------------------------------- scratch dirs


@dataclass(frozen=True)
class Scratch:
    """A run's private directories under a short path (Claude's socket path must be ≤ 103 bytes).

    ``home`` is HOME, ``proj`` the cwd of the CLI, ``tmp`` TMPDIR / CLAUDE_CODE_TMPDIR.
    """

    root: Path
    home: Path
    proj: Path
    tmp: Path

    @classmethod
    def create(cls, prefix: str = "rc-", base: str | Path = "/tmp") -> Scratch:
        root = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        scratch = cls(root=root, home=root / "home", proj=root / "proj", tmp=root / "tmp")
        for d in (scratch.home, scratch.proj, scratch.tmp):
            d.mkdir()
        return scratch

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def claude_transcript(self, session_id: str) -> Path:
        """``$HOME/.claude/projects/<cwd with / and _ replaced by ->/<session_id>.jsonl``."""
        mangled = re.sub(r"[^A-Za-z0-9]", "-", str(self.proj))
        return self.home / ".claude" / "projects" / mangled / f"{session_id}.jsonl"

    @property
    def opencode_db(self) -> Path:
        return self.home / ".local" / "share" / "opencode" / "opencode.db"


# --------------------------------------------------------------------------- config helpers


def jsonl_logger_command(
    log_path: str | Path, python: str = "python3", *, ignore_sigterm: bool = True
) -> str:
    """A hook command appending its stdin (one JSON document) as one line to ``log_path``.

    Fast on purpose (``-I -S``, no imports beyond os/sys, one O_APPEND write, so concurrent hooks
    never interleave). Claude Code fires StopFailure without waiting for it and SIGTERMs the
    still-running hook a few milliseconds later as the ``-p`` session shuts down; with
    ``ignore_sigterm`` the command starts with ``trap '' TERM`` (inherited through exec) so the
    logger survives that.
    """
    code = (
        "import os,sys; d=sys.stdin.buffer.read().strip().replace(b'\\n', b' '); "
        "fd=os.open(sys.argv[1], os.O_WRONLY|os.O_APPEND|os.O_CREAT, 0o644); "
        "os.write(fd, d+b'\\n'); os.close(fd)"
    )
    cmd = f"exec {python} -I -S -c {shlex.quote(code)} {shlex.quote(str(log_path))}"
    return f"trap '' TERM; {cmd}" if ignore_sigterm else cmd


def claude_hook_settings(
    command: str,
    events: Iterable[str] = CLAUDE_HOOK_EVENTS,
    *,
    matcher: str = "*",
    timeout: int = 30,
) -> dict[str, Any]:
    """Claude settings registering the same command hook for every event in ``events``."""
    entry = {
        "matcher": matcher,
        "hooks": [{"type": "command", "command": command, "timeout": timeout}],
    }
    return {"hooks": {event: [entry] for event in events}}


def write_claude_settings(scratch: Scratch, settings: Mapping[str, Any]) -> Path:
    """Writes the project settings ``proj/.claude/settings.json``."""
    path = scratch.proj / ".claude" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1))
    return path


def write_opencode_plugin(scratch: Scratch, filename: str, source: str) -> Path:
    """Writes ``proj/.opencode/plugins/<filename>`` (a .js or .ts plugin)."""
    path = scratch.proj / ".opencode" / "plugins" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def opencode_config(server: FakeModelServer | str) -> dict[str, Any]:
    """An opencode.json whose custom OpenAI-compatible provider ``fake`` points at the server.

    Custom providers: https://opencode.ai/docs/providers
    """
    return {
        "$schema": "https://opencode.ai/config.json",
        "model": "fake/model",
        "small_model": "fake/model",
        "autoupdate": False,
        "share": "disabled",
        "permission": {
            "edit": "allow",
            "bash": "allow",
            "webfetch": "allow",
            "external_directory": "allow",
        },
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake LLM",
                "options": {"baseURL": _base_url(server) + "/v1", "apiKey": FAKE_OPENAI_KEY},
                "models": {
                    "model": {
                        "name": "Fake Model",
                        "tool_call": True,
                        "attachment": False,
                        "reasoning": False,
                        "temperature": True,
                        "limit": {"context": 200000, "output": 8192},
                    }
                },
            }
        },
    }


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file ([] when it does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def parse_claude_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The result object of ``--output-format json`` (the last JSON line of stdout)."""
    for line in reversed(proc.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON result on claude's stdout:\n{proc.stdout}\n{proc.stderr}")


def parse_json_lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """Every JSON line of stdout (``--output-format stream-json``, ``opencode --format json``)."""
    out = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


# --------------------------------------------------------------------------- environments


def _base_url(server: FakeModelServer | str) -> str:
    return server if isinstance(server, str) else server.base_url


def _merge_env(env: dict[str, str], extra_env: Mapping[str, str | None] | None) -> dict[str, str]:
    for key, value in (extra_env or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def claude_env(
    scratch: Scratch,
    server: FakeModelServer | str,
    extra_env: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """The complete environment of a ``claude`` run (``extra_env`` adds/overrides; None removes)."""
    env = {
        "PATH": MINIMAL_PATH,
        "HOME": str(scratch.home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "TMPDIR": str(scratch.tmp),
        "CLAUDE_CODE_TMPDIR": str(scratch.tmp),
        "IS_SANDBOX": "1",
        "ANTHROPIC_BASE_URL": _base_url(server),
        "ANTHROPIC_API_KEY": FAKE_ANTHROPIC_KEY,
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_RETRIES": "2",
    }
    return _merge_env(env, extra_env)


def opencode_env(
    scratch: Scratch, extra_env: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """The complete environment of an ``opencode`` run (``extra_env`` adds/overrides)."""
    env = {
        "PATH": MINIMAL_PATH,
        "HOME": str(scratch.home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "TMPDIR": str(scratch.tmp),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_CLAUDE_CODE": "1",
        "npm_config_offline": "true",  # else the plugin npm install retries ~70 s (pitfall 6)
    }
    return _merge_env(env, extra_env)


# --------------------------------------------------------------------------- running


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    reap: bool = True,
    reap_grace: float = 15.0,
) -> subprocess.CompletedProcess[str]:
    """Runs ``argv`` in a new session (own process group), stdin=/dev/null, capturing text.

    On timeout the whole group is killed and `AgentTimeout` raised. With ``reap`` (default),
    processes left in the group after a normal exit (a hook still finishing, a stray tool child)
    get ``reap_grace`` seconds to end, then are killed (generous: a hook killed mid-delivery on a
    loaded machine has neither its ack nor its spool file, and its event is lost). Processes that started their own session
    (e.g. a daemon spawned by a hook with ``start_new_session``) are not touched.
    """
    proc = subprocess.Popen(
        list(argv),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    pgid = proc.pid
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(pgid)
        try:
            stdout, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a process outside the group holds the pipes
            proc.kill()
            proc.wait()
            stdout, stderr = "", ""
        raise AgentTimeout(argv, timeout, stdout or "", stderr or "") from None
    except BaseException:  # KeyboardInterrupt etc.: never leave the CLI running
        _kill_group(pgid)
        proc.wait()
        raise
    if reap:
        deadline = time.monotonic() + reap_grace
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)
        _kill_group(pgid)
    return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)


def run_claude(
    scratch: Scratch,
    server: FakeModelServer | str,
    prompt: str,
    *,
    resume: str | None = None,
    extra_env: Mapping[str, str | None] | None = None,
    timeout: float = 60.0,
    settings: str | Path | Mapping[str, Any] | None = None,
    plugin_dirs: Iterable[str | Path] = (),
    output_format: str = "json",
    extra_args: Sequence[str] = (),
    reap: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``claude -p PROMPT --output-format json --dangerously-skip-permissions`` in scratch.proj.

    ``settings``: a file path or a dict, passed as ``--settings`` (project settings in
    ``proj/.claude/settings.json`` load anyway, see `write_claude_settings`). ``plugin_dirs``:
    ``--plugin-dir`` each. ``resume``: a session id (``--resume``). ``output_format``
    ``"stream-json"`` adds ``--verbose``. Hooks inherit the environment, so put AGENTD_HOME etc.
    in ``extra_env``.
    """
    argv = [str(claude_bin()), "-p", prompt, "--output-format", output_format]
    if output_format == "stream-json":
        argv.append("--verbose")
    argv.append("--dangerously-skip-permissions")
    if resume is not None:
        argv += ["--resume", resume]
    if settings is not None:
        value = json.dumps(settings) if isinstance(settings, Mapping) else str(settings)
        argv += ["--settings", value]
    for d in plugin_dirs:
        argv += ["--plugin-dir", str(d)]
    argv += list(extra_args)
    return run_process(
        argv,
        env=claude_env(scratch, server, extra_env),
        cwd=scratch.proj,
        timeout=timeout,
        reap=reap,
    )


def run_opencode(
    scratch: Scratch,
    server: FakeModelServer | str,
    prompt: str,
    *,
    extra_env: Mapping[str, str | None] | None = None,
    timeout: float = 120.0,
    json_format: bool = True,
    config: Mapping[str, Any] | None = None,
    session: str | None = None,
    extra_args: Sequence[str] = (),
    reap: bool = True,
    binary: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``opencode run PROMPT [--format json]`` in scratch.proj with stdin=/dev/null.

    Writes ``proj/opencode.json`` (`opencode_config`, top-level keys updated from ``config``).
    ``session``: continue that session id (``--session``). ``binary``: another opencode (the
    legacy one, `opencode_legacy_bin`).
    """
    cfg = opencode_config(server)
    cfg.update(config or {})
    (scratch.proj / "opencode.json").write_text(json.dumps(cfg, indent=1))
    argv = [str(binary or opencode_bin()), "run"]
    if json_format:
        argv += ["--format", "json"]
    if session is not None:
        argv += ["--session", session]
    argv += list(extra_args)
    argv += ["--", prompt] if prompt.startswith("-") else [prompt]
    return run_process(
        argv,
        env=opencode_env(scratch, extra_env),
        cwd=scratch.proj,
        timeout=timeout,
        reap=reap,
    )
