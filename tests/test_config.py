import re
import time
from dataclasses import fields
from pathlib import Path

import pytest

from agentd.config import ENV_OFF, SETTINGS, Config, ConfigError


def test_agentd_home_puts_everything_in_one_directory(tmp_path):
    c = Config.load({"AGENTD_HOME": str(tmp_path), "HOME": "/nowhere"})
    assert (c.socket_path, c.db_path, c.config_path) == (
        tmp_path / "agentd.sock",
        tmp_path / "agentd.db",
        tmp_path / "config.toml",
    )
    assert (c.spool_dir, c.log_path, c.pid_path) == (
        tmp_path / "spool",
        tmp_path / "agentd.log",
        tmp_path / "agentd.pid",
    )


def test_xdg_defaults():
    env = {"HOME": "/h", "XDG_RUNTIME_DIR": "/run/user/7"}
    c = Config.load(env)
    assert c.socket_path == Path("/run/user/7/agentd/agentd.sock")
    assert c.db_path == Path("/h/.local/share/agentd/agentd.db")
    assert c.state_dir == Path("/h/.local/state/agentd")
    assert c.config_path == Path("/h/.config/agentd/config.toml")
    assert Config.load({"HOME": "/h"}).socket_path == Path("/h/.local/state/agentd/agentd.sock")


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    (tmp_path / "config.toml").write_text('db = "/from/file.db"\noutput_limit_bytes = 99\n')
    env = {"AGENTD_HOME": str(tmp_path)}
    assert Config.load(env).db_path == Path("/from/file.db")
    assert Config.load(env).output_limit_bytes == 99
    env["AGENTD_DB"] = "/from/env.db"
    assert Config.load(env).db_path == Path("/from/env.db")
    assert Config.load(env, db_path=Path("/from/flag.db")).db_path == Path("/from/flag.db")
    assert Config.load(env, db_path=None).db_path == Path("/from/env.db")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("autostart = 'yes'\n", "'autostart' must be bool"),
        ("max_line_bytes = true\n", "'max_line_bytes' must be int"),
        ("not toml at all [\n", "cannot read config file"),
    ],
)
def test_bad_config_file_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        Config.load({"AGENTD_HOME": str(tmp_path)})
    assert str(tmp_path / "config.toml") in str(info.value)


def test_every_setting_is_read_from_the_file(tmp_path):
    (tmp_path / "config.toml").write_text(
        'socket = "/s.sock"\ndb = "/d.db"\nmax_line_bytes = 7\noutput_limit_bytes = 8\n'
        'autostart = false\ncontent_level = "none"\n'
        '[redaction]\nenabled = false\npatterns = { mine = "m[0-9]+" }\n'
    )
    c = Config.load({"AGENTD_HOME": str(tmp_path)})
    assert (c.socket_path, c.db_path) == (Path("/s.sock"), Path("/d.db"))
    assert (c.max_line_bytes, c.output_limit_bytes, c.autostart) == (7, 8, False)
    assert (c.content_level, c.redaction, c.redaction_patterns) == (
        "none",
        False,
        {"mine": "m[0-9]+"},
    )
    assert {s.attribute for s in SETTINGS} | {"state_dir", "config_path", "extra"} == {
        f.name for f in fields(Config)
    }


def test_defaults_come_from_the_table(tmp_path):
    c = Config.load({"AGENTD_HOME": str(tmp_path)})
    for setting in SETTINGS:
        if setting.resolve is None:
            assert getattr(c, setting.attribute) == setting.default, setting.name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("socket = 5\n", "'socket' must be str"),
        ("content_level = 'some'\n", "'content_level' must be one of full, metadata, none"),
        ("redaction = 1\n", "'redaction' must be a table"),
        ("[redaction]\nenabled = 'yes'\n", "[redaction] 'enabled' must be bool"),
        ("[redaction]\npatterns = { a = '(' }\n", "redaction pattern 'a' is not a valid regex"),
        ("[redaction]\npatterns = { a = 1 }\n", "redaction pattern 'a' must be a string"),
    ],
)
def test_bad_setting_names_the_key(tmp_path, text, message):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.load({"AGENTD_HOME": str(tmp_path)})


def test_autostart_env_over_file(tmp_path):
    """AGENTD_AUTOSTART beats the file, as for the hook (it was ignored by Config before)."""
    env = {"AGENTD_HOME": str(tmp_path)}
    assert Config.load(env).autostart is True
    assert Config.load({**env, "AGENTD_AUTOSTART": "0"}).autostart is False
    (tmp_path / "config.toml").write_text("autostart = false\n")
    assert Config.load(env).autostart is False
    assert Config.load({**env, "AGENTD_AUTOSTART": "1"}).autostart is True


@pytest.mark.parametrize("in_file", [None, True, False])
@pytest.mark.parametrize(
    "in_env", [None, "0", "false", "no", "off", "1", "true", "yes", "on", "", "FALSE", "Off"]
)
def test_autostart_config_and_hook_agree(tmp_path, monkeypatch, in_file, in_env):
    """The hook decides autostart by itself (it must not import config.py): run its own code on
    the same environment and config file, and compare."""
    from agentd import forward as hook  # the hook's code (hook.py only launches it)

    if in_file is not None:
        (tmp_path / "config.toml").write_text(f"autostart = {str(in_file).lower()}\n")
    env = {"AGENTD_HOME": str(tmp_path), "HOME": str(tmp_path)}
    if in_env is not None:
        env["AGENTD_AUTOSTART"] = in_env
    started: list[str] = []
    monkeypatch.setattr(hook.Stdin, "read", lambda self, until: True)
    monkeypatch.setattr(hook.Stdin, "payload", lambda self: b'{"a": 1}')
    monkeypatch.setattr(hook, "deliver", lambda *args: None)  # no daemon: spool, then autostart?
    monkeypatch.setattr(hook, "autostart", started.append)
    hook.run(env, time.monotonic())
    assert Config.load(env).autostart is bool(started)
    assert list((tmp_path / "spool").glob("*.ndjson"))  # the hook did run to its end
    if in_env is not None:  # the variable, when set, decides (over the file)
        assert Config.load(env).autostart is (in_env not in ENV_OFF)
