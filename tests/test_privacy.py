"""Redaction and content levels: what reaches the database, checked down to its bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentd.config import CONTENT_LEVELS
from agentd.privacy import LEVELS
from agentd.redact import RULES, Redactor
from conftest import load_jsonl, query_db

GITHUB = "ghp_" + "A1b2C3d4" * 5  # 40 chars after the prefix
AWS = "AKIAIOSFODNN7EXAMPLE"
ANTHROPIC = "sk-ant-api03-" + "Zx9" * 10
PASSWORD = "hunter2hunter2"
KEY_BLOCK = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
SECRETS = (GITHUB, AWS, ANTHROPIC, PASSWORD, "b3BlbnNzaC1rZXktdjEAAAAA", JWT)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token {AWS} here", "token [REDACTED:aws_access_key] here"),
        (f"export GITHUB_TOKEN={GITHUB}", "export GITHUB_TOKEN=[REDACTED:github_token]"),
        ("glpat-abcdefghij0123456789", "[REDACTED:gitlab_token]"),
        ("xoxb-1234567890-abcdefghij", "[REDACTED:slack_token]"),
        ("https://hooks.slack.com/services/T000/B000/XXXX", "[REDACTED:slack_webhook]"),
        (f"key {ANTHROPIC}", "key [REDACTED:anthropic_key]"),
        ("sk-proj-abcdefghijklmnopqrstuvwx", "[REDACTED:openai_key]"),
        (KEY_BLOCK.replace("\n", "\\n"), "[REDACTED:private_key]"),
        (f"Bearer {JWT}", "Bearer [REDACTED:jwt]"),
        ("postgres://app:s3cr3t@db:5432/x", "postgres://app:[REDACTED:url_password]@db:5432/x"),
        ("DB_PASSWORD=s3cr3t99\\nNEXT=1", "DB_PASSWORD=[REDACTED:secret_assignment]\\nNEXT=1"),
        ("client_secret: abc123xyz", "client_secret: [REDACTED:secret_assignment]"),
        ('{"apiKey": "k-123 456"}', '{"apiKey": "[REDACTED:secret_json_field]"}'),
        (
            '"{\\"password\\": \\"pw 1\\"}"',
            '"{\\"password\\": \\"[REDACTED:secret_json_field]\\"}"',
        ),
    ],
)
def test_each_rule_redacts_its_secret(text, expected):
    assert Redactor().redact(text) == (expected, 1)


@pytest.mark.parametrize(
    "text",
    [
        '"output_tokens": 20, "cache_read_input_tokens": 5, "tokens": {"input": 3}',
        "task-1234567890abcdefghijklmnop and ask-me",  # not sk-
        "https://github.com/anthropics/claude-code",  # a URL without credentials
        '"passwordless": true, "token_count": 12',
        "AKIAsmall and eyJ.not.a.jwt",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert Redactor().redact(text) == (text, 0)


def test_the_trigger_prefilter_finds_every_trigger_anywhere():
    """Redactor skips a text its one-regex prefilter finds no trigger in: that regex must match
    each trigger wherever it stands, those sharing a start too (sk- and sk-ant-), and nothing
    else."""
    import re

    from agentd.redact import _trie_pattern

    triggers = sorted({t for rule in RULES for t in rule.triggers})
    prefilter = re.compile(_trie_pattern(triggers))
    for trigger in triggers:
        for text in (trigger, f"a {trigger}", f"{trigger}z", f'{{"k": "x{trigger}y"}}'):
            assert prefilter.search(text), (trigger, text)
            assert Redactor().redact(text) == Redactor(extra={"never": "(?!)"}).redact(text)
    for text in ("", "plain words only", '{"tool_name": "Read", "file_path": "/src/main.py"}'):
        assert not any(t in text for t in triggers) and not prefilter.search(text)
    assert re.compile(_trie_pattern(["ab", "abc", "b"])).findall("xabcx b a") == ["abc", "b"]
    assert not re.compile(_trie_pattern([])).search("anything")


def test_one_scan_finds_every_trigger_and_the_shorter_ones_it_starts_with():
    # Where triggers overlap ("secret" and "token" share a t) each start is found.
    assert Redactor()._found("a secretoken") == [(2, "secret"), (7, "token")]
    # "sk-" occurs only as the start of "sk-ant-", and only the OpenAI rule matches (the
    # Anthropic one wants 20 characters after "sk-ant-"): it runs all the same.
    key = "sk-ant-" + "a" * 16
    assert Redactor().redact(f'{{"k": "{key}"}}') == ('{"k": "[REDACTED:openai_key]"}', 1)
    # A usage block's "..._tokens" keys wake the secret-name rules, which then find nothing;
    # a secret name elsewhere in the same text is still found.
    text = '{"usage": {"input_tokens": 3, "output_tokens": 5}, "env": "DB_PASSWORD=hunter2x"}'
    assert Redactor().redact(text) == (text.replace("hunter2x", "[REDACTED:secret_assignment]"), 1)


def test_every_real_sample_stays_valid_json_after_redaction():
    for name in ("claude_hooks_examples.jsonl", "opencode_plugin_events_examples.jsonl"):
        for record in load_jsonl(name):
            text, _ = Redactor().redact(json.dumps(record))
            json.loads(text)


def test_rules_are_all_documented_and_levels_agree():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "privacy.md").read_text()
    for rule in RULES:
        assert f"`{rule.name}`" in doc, rule.name
    assert LEVELS == CONTENT_LEVELS


def post_tool_use_with_secrets() -> dict:
    payload = next(
        r["stdin"]
        for r in load_jsonl("claude_hooks_examples.jsonl")
        if r["hook_event_name"] == "PostToolUse"
    )
    payload = json.loads(json.dumps(payload))
    payload["tool_name"] = "Bash"
    payload["tool_input"] = {
        "command": f"GITHUB_TOKEN={GITHUB} git push https://me:{PASSWORD}@example.com/r.git",
        "description": "push",
    }
    payload["tool_response"] = {
        "stdout": f"aws={AWS}\n{KEY_BLOCK}\nAuthorization: Bearer {JWT}\nkey {ANTHROPIC}",
        "stderr": "",
    }
    return payload


def database_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def test_secrets_never_reach_the_database(daemon):
    payload = post_tool_use_with_secrets()
    assert daemon.ingest("claude", payload) == {"stored": True}
    db = daemon.config.db_path
    (event,) = query_db(
        db, "SELECT payload, redactions, redaction_version, content_level FROM events"
    )
    # github_token, url_password in the input; aws, private_key, jwt, anthropic_key in the output
    assert (event["redactions"], event["redaction_version"], event["content_level"]) == (
        6,
        1,
        "full",
    )
    stored = json.loads(event["payload"])
    assert stored["tool_input"]["command"] == (
        "GITHUB_TOKEN=[REDACTED:github_token] git push https://me:[REDACTED:url_password]@example.com/r.git"
    )
    (tool,) = query_db(db, "SELECT tool_input, tool_output, redactions FROM tools")
    assert (
        "[REDACTED:private_key]" in tool["tool_output"] and "[REDACTED:jwt]" in tool["tool_output"]
    )
    assert tool["redactions"] == 6
    for secret in SECRETS:
        assert secret.encode() not in database_bytes(db), secret


def test_extra_patterns_from_the_config_file(make_daemon, agentd_home, config):
    (agentd_home / "config.toml").write_text(
        '[redaction]\npatterns = { ticket = "TCK-[0-9]{6}" }\n'
    )
    daemon = make_daemon().start()
    daemon.ingest(
        "claude",
        {"session_id": "x", "hook_event_name": "UserPromptSubmit", "prompt": "fix TCK-123456"},
    )
    (event,) = query_db(config.db_path, "SELECT payload, redactions FROM events")
    assert json.loads(event["payload"])["prompt"] == "fix [REDACTED:ticket]"
    assert event["redactions"] == 1


def test_redaction_can_be_turned_off(make_daemon, agentd_home, config):
    (agentd_home / "config.toml").write_text("[redaction]\nenabled = false\n")
    daemon = make_daemon().start()
    daemon.ingest(
        "claude", {"session_id": "x", "hook_event_name": "UserPromptSubmit", "prompt": AWS}
    )
    (event,) = query_db(config.db_path, "SELECT payload, redactions, redaction_version FROM events")
    assert (AWS in event["payload"], event["redactions"], event["redaction_version"]) == (
        True,
        0,
        None,
    )


def test_metadata_level_keeps_names_paths_and_outcomes_only(make_daemon, agentd_home, config):
    (agentd_home / "config.toml").write_text('content_level = "metadata"\n')
    daemon = make_daemon().start()
    payload = post_tool_use_with_secrets()
    payload["tool_input"]["command"] = "cat /etc/motd  # a body, not a secret"
    daemon.ingest("claude", payload)
    db = config.db_path
    (tool,) = query_db(
        db, "SELECT tool_name, tool_input, tool_output, success, duration_ms FROM tools"
    )
    assert tool == {"tool_name": "Bash", "tool_input": None, "tool_output": None, "success": 1,
                    "duration_ms": payload["duration_ms"]}  # fmt: skip
    (event,) = query_db(db, "SELECT payload, content_level FROM events")
    stored = json.loads(event["payload"])
    assert event["content_level"] == "metadata"
    assert (
        stored["tool_input"]["command"]
        == f"[omitted: {len(payload['tool_input']['command'])} chars]"
    )
    assert (stored["session_id"], stored["tool_use_id"], stored["cwd"]) == (
        payload["session_id"], payload["tool_use_id"], payload["cwd"],
    )  # fmt: skip
    assert b"/etc/motd" not in database_bytes(db)
    (session,) = query_db(db, "SELECT project_path FROM sessions")
    assert session["project_path"] is not None


def test_none_level_keeps_counts_and_timings_only(make_daemon, agentd_home, config):
    (agentd_home / "config.toml").write_text('content_level = "none"\n')
    daemon = make_daemon().start()
    payload = post_tool_use_with_secrets()
    daemon.ingest("claude", payload)
    db = config.db_path
    (tool,) = query_db(db, "SELECT tool_name, file_path, success, duration_ms FROM tools")
    assert (tool["tool_name"], tool["file_path"], tool["success"]) == ("Bash", None, 1)
    (session,) = query_db(db, "SELECT project_path, project_name, tool_call_count FROM sessions")
    assert session == {"project_path": None, "project_name": None, "tool_call_count": 1}
    (event,) = query_db(db, "SELECT payload FROM events")
    assert json.loads(event["payload"])["cwd"].startswith("[omitted:")
    assert payload["cwd"].encode() not in database_bytes(db)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('content_level = "everything"\n', "'content_level' must be one of full, metadata, none"),
        (
            '[redaction]\npatterns = { bad = "([" }\n',
            "redaction pattern 'bad' is not a valid regex",
        ),
        ("[redaction]\nenabled = 1\n", "'enabled' must be bool"),
    ],
)
def test_bad_privacy_settings_are_refused_at_start(agentd_env, agentd_home, text, message):
    import subprocess
    import sys

    (agentd_home / "config.toml").write_text(text)
    result = subprocess.run([sys.executable, "-m", "agentd", "start", "--foreground"], env=agentd_env,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("before", ["İ", "İİİİ stanbul ", "ǅ", "ﬁle "])
def test_a_secret_after_a_character_whose_lowercase_is_longer_is_still_redacted(before):
    # "İ".lower() is two characters: positions found in the lowered text are not the text's.
    text = before + 'export API_TOKEN=hunter2hunter2 and {"password": "s3cr3tvalue"}'
    redacted, hits = Redactor().redact(text)
    assert hits == 2 and "hunter2" not in redacted and "s3cr3tvalue" not in redacted
