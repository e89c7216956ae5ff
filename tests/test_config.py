from pathlib import Path

import pytest

from agentd.config import Config, ConfigError


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
