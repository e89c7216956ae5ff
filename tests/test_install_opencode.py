"""`agentd install opencode` / `uninstall opencode`, and the plugin file shipped in the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agentd.installers import InstallError
from agentd.installers.opencode import (
    PLUGIN_MARKER as OPENCODE_PLUGIN_MARKER,
    install as install_opencode,
    plugin_source as opencode_plugin_source,
    target as opencode_plugin_path,
    uninstall as uninstall_opencode,
)
from conftest import REPO

PLUGIN_SOURCE = REPO / "opencode-plugin" / "src" / "agentd.ts"


def agentd(env, *args, cwd=None, python=sys.executable):
    return subprocess.run(
        [python, "-m", "agentd", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def home(tmp_path, agentd_env):
    """A scratch HOME, without XDG_CONFIG_HOME: the user scope is HOME/.config/opencode."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in agentd_env.items() if k != "XDG_CONFIG_HOME"}
    env["HOME"] = str(home)
    return home, env


def user_plugin(home: Path) -> Path:
    return home / ".config" / "opencode" / "plugins" / "agentd.ts"


def test_plugin_paths_follow_opencode_and_xdg(tmp_path):
    assert opencode_plugin_path("user", None, {"HOME": "/h"}) == Path(
        "/h/.config/opencode/plugins/agentd.ts"
    )
    assert opencode_plugin_path("user", None, {"HOME": "/h", "XDG_CONFIG_HOME": "/x"}) == Path(
        "/x/opencode/plugins/agentd.ts"
    )
    assert (
        opencode_plugin_path("project", tmp_path, {})
        == tmp_path.resolve() / ".opencode" / "plugins" / "agentd.ts"
    )


def test_the_source_is_the_checkouts_plugin_in_an_editable_install():
    text = opencode_plugin_source()
    assert text == PLUGIN_SOURCE.read_text()
    assert text.startswith(OPENCODE_PLUGIN_MARKER)


def test_install_then_again_then_uninstall(home):
    home, env = home
    target = user_plugin(home)
    result = agentd(env, "install", "opencode", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"Would add agentd's plugin: {target}" in result.stdout
    assert not target.exists()

    result = agentd(env, "install", "opencode")
    assert result.returncode == 0, result.stderr
    assert f"Added agentd's plugin: {target}" in result.stdout
    assert target.read_text() == PLUGIN_SOURCE.read_text()
    # No temp file left; the record of the directories agentd made (for uninstall) beside it.
    assert sorted(p.name for p in target.parent.iterdir()) == [".agentd-created-dirs", "agentd.ts"]

    result = agentd(env, "install", "opencode")
    assert result.returncode == 0
    assert "Nothing to change" in result.stdout

    result = agentd(env, "uninstall", "opencode", "--dry-run")
    assert f"Would remove agentd's plugin: {target}" in result.stdout
    assert target.exists()
    result = agentd(env, "uninstall", "opencode")
    assert result.returncode == 0, result.stderr
    assert f"Removed agentd's plugin: {target}" in result.stdout
    assert not target.exists()
    assert list(home.iterdir()) == []  # .config/opencode/plugins: agentd made them, and took them
    result = agentd(env, "uninstall", "opencode")
    assert result.returncode == 0 and "Nothing to change" in result.stdout


def test_user_scope_honours_xdg_config_home(home, tmp_path):
    home, env = home
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    assert agentd(env, "install", "opencode").returncode == 0
    assert (tmp_path / "xdg" / "opencode" / "plugins" / "agentd.ts").exists()
    assert not user_plugin(home).exists()


def test_project_scope_defaults_to_the_current_directory(home, tmp_path):
    home, env = home
    project = tmp_path / "proj"
    project.mkdir()
    result = agentd(env, "install", "opencode", "--scope", "project", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (project / ".opencode" / "plugins" / "agentd.ts").exists()
    other = tmp_path / "other"
    other.mkdir()
    result = agentd(env, "install", "opencode", "--scope", "project", "--project-dir", str(other))
    assert result.returncode == 0, result.stderr
    assert (other / ".opencode" / "plugins" / "agentd.ts").exists()
    assert not user_plugin(home).exists()


def test_project_dir_needs_project_scope(home, tmp_path):
    _, env = home
    result = agentd(env, "install", "opencode", "--project-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--project-dir goes with --scope project" in result.stderr


def test_an_older_copy_is_updated(tmp_path):
    target = tmp_path / "plugins" / "agentd.ts"
    target.parent.mkdir()
    target.write_text(f"{OPENCODE_PLUGIN_MARKER}: an older version\n")
    plan = install_opencode(target, dry_run=True)
    assert plan.changes == ["update agentd's plugin"] and not plan.applied
    plan = install_opencode(target)
    assert plan.applied and target.read_text() == PLUGIN_SOURCE.read_text()


def test_someone_elses_file_is_never_overwritten_nor_removed(home):
    home, env = home
    target = user_plugin(home)
    target.parent.mkdir(parents=True)
    target.write_text("export const Mine = async () => ({})\n")
    for command in ("install", "uninstall"):
        result = agentd(env, command, "opencode")
        assert result.returncode == 1
        assert "not agentd's plugin" in result.stderr
        assert target.read_text() == "export const Mine = async () => ({})\n"
    with pytest.raises(InstallError):
        install_opencode(target)
    with pytest.raises(InstallError):
        uninstall_opencode(target)


def test_a_directory_in_the_way_is_an_error(tmp_path):
    target = tmp_path / "agentd.ts"
    target.mkdir()
    with pytest.raises(InstallError, match="is a directory"):
        install_opencode(target)


def test_the_wheel_ships_the_plugin_and_installs_it_without_the_checkout(tmp_path, home):
    home, env = home
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-w", str(dist), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = zf.read("agentd/opencode_plugin/agentd.ts").decode()
        assert shipped == PLUGIN_SOURCE.read_text()
        # Unpacked alone (site-packages of a pip install), far from any checkout.
        site = tmp_path / "site"
        zf.extractall(site)
    env["PYTHONPATH"] = str(site)
    probe = subprocess.run(
        [sys.executable, "-c", "import agentd; print(agentd.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == str(site / "agentd" / "__init__.py")
    assert not (site / "opencode-plugin").exists()
    result = agentd(env, "install", "opencode", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert user_plugin(home).read_text() == shipped


def test_a_symlinked_plugin_is_updated_through_its_link(home, tmp_path):
    """Dotfiles: the plugin is a link into a repository; the link stays, its target is updated."""
    home, env = home
    target = user_plugin(home)
    target.parent.mkdir(parents=True)
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "agentd.ts"
    real.write_text(f"{OPENCODE_PLUGIN_MARKER} an older version\n")
    real.chmod(0o640)
    target.symlink_to(real)
    result = agentd(env, "install", "opencode")
    assert result.returncode == 0, result.stderr
    assert target.is_symlink() and target.resolve() == real
    assert real.read_text() == PLUGIN_SOURCE.read_text()
    assert real.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in dotfiles.iterdir()) == ["agentd.ts"]  # no temp file left
    result = agentd(env, "uninstall", "opencode")
    assert result.returncode == 0, result.stderr
    assert not target.exists() and not target.is_symlink() and real.exists()


def test_uninstall_removes_the_directories_install_made_and_no_others(home, tmp_path):
    _, env = home
    made, theirs = tmp_path / "made", tmp_path / "theirs"
    made.mkdir()
    (theirs / ".opencode" / "plugins").mkdir(parents=True)
    said = {}
    for project in (made, theirs):
        args = ("--scope", "project", "--project-dir", str(project))
        assert agentd(env, "install", "opencode", *args).returncode == 0
        assert (project / ".opencode" / "plugins" / "agentd.ts").exists()
        result = agentd(env, "uninstall", "opencode", *args)
        assert result.returncode == 0, result.stderr
        said[project] = result.stdout
    assert list(made.iterdir()) == []
    assert f"Removed {made / '.opencode'} (agentd had made it)" in said[made]
    assert [p.name for p in (theirs / ".opencode" / "plugins").iterdir()] == []
    assert "agentd had made it" not in said[theirs]
    # A file of the user's put beside the plugin keeps its directory.
    args = ("--scope", "project", "--project-dir", str(made))
    assert agentd(env, "install", "opencode", *args).returncode == 0
    (made / ".opencode" / "plugins" / "mine.ts").write_text("export {}\n")
    assert agentd(env, "uninstall", "opencode", *args).returncode == 0
    assert [p.name for p in (made / ".opencode" / "plugins").iterdir()] == ["mine.ts"]
