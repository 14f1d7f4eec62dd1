"""The command line itself: help, version, argument errors, and refusing unusable database files everywhere."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from llm_monitor_mw import __version__
from llm_monitor_mw.store.schema import SCHEMA_VERSION

from .helpers import NOW, assert_user_error, record, run, seed

COMMANDS = ("serve", "demo", "prune", "backup", "export", "check")


def test_help_lists_every_command_with_examples(cli: Path) -> None:
    result = run(cli, "--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"\n    {command} " in result.stdout, command
    assert "examples:" in result.stdout and "llm-monitor prune llm_monitor.db --older-than 30d" in result.stdout
    assert "exit status:" in result.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "demo"])
def test_each_command_has_help_with_examples(cli: Path, command: str) -> None:
    result = run(cli, command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: llm-monitor {command} ")
    assert f"examples:\n  llm-monitor {command} " in result.stdout


def test_demo_help_is_the_demos_own_under_the_commands_name(cli: Path) -> None:
    result = run(cli, "demo", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: llm-monitor demo ") and "--port" in result.stdout


def test_version_and_python_dash_m(cli: Path) -> None:
    assert run(cli, "--version").stdout.strip() == f"llm-monitor {__version__}"
    result = subprocess.run(
        [sys.executable, "-m", "llm_monitor_mw.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == f"llm-monitor {__version__}"


def test_no_command_is_a_usage_error(cli: Path) -> None:
    result = run(cli)
    assert result.returncode == 2 and "usage: llm-monitor" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("age", ["30", "30x", "-1d", "0d", "d", ""])
def test_bad_durations_are_usage_errors(cli: Path, tmp_path: Path, age: str) -> None:
    seed(tmp_path / "m.db", [record(NOW)])
    result = run(cli, "prune", tmp_path / "m.db", "--older-than", age)
    assert result.returncode == 2 and "argument --older-than" in result.stderr and "Traceback" not in result.stderr


def test_unknown_option_is_a_usage_error(cli: Path, tmp_path: Path) -> None:
    result = run(cli, "check", tmp_path / "m.db", "--frobnicate")
    assert result.returncode == 2 and "unrecognized arguments: --frobnicate" in result.stderr


def _readers(db: Path, tmp_path: Path) -> list[tuple[str, ...]]:
    """Every command that reads an existing database, pointed at ``db``."""
    return [
        ("check", str(db)),
        ("prune", str(db), "--older-than", "1d"),
        ("backup", str(db), str(tmp_path / "copy.db")),
        ("export", str(db), "-o", str(tmp_path / "out.csv")),
        ("serve", str(db), "--port", "1"),  # fails before binding anything
    ]


def test_missing_file_is_refused_and_never_created(cli: Path, tmp_path: Path) -> None:
    missing = tmp_path / "sub" / "missing.db"
    for args in _readers(missing, tmp_path):
        assert_user_error(run(cli, *args), str(missing), "no such file")
    assert not missing.exists() and not missing.parent.exists()
    assert not (tmp_path / "copy.db").exists() and not (tmp_path / "out.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary files left either


def test_not_sqlite_is_refused(cli: Path, tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("these are not the pages you are looking for\n" * 100)
    for args in _readers(junk, tmp_path):
        assert_user_error(run(cli, *args), "not a SQLite database")
    assert junk.read_text().startswith("these are not")


def test_foreign_sqlite_file_is_refused_and_left_alone(cli: Path, tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    for args in _readers(other, tmp_path):
        assert_user_error(run(cli, *args), "not an llm-monitor one")
    conn = sqlite3.connect(other)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["users"]  # serve did not migrate it
    conn.close()


def test_newer_schema_version_is_refused(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    seed(db, [record(NOW)])
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    for args in _readers(db, tmp_path):
        assert_user_error(run(cli, *args), "newer llm-monitor-mw", f"schema version {SCHEMA_VERSION + 1}", "upgrade")


def test_corrupt_schema_page_is_refused(cli: Path, tmp_path: Path) -> None:
    db = tmp_path / "broken.db"
    seed(db, [record(NOW)]).close()
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # page 1 after the header: the schema table
    db.write_bytes(bytes(data))
    for args in _readers(db, tmp_path):
        assert_user_error(run(cli, *args), "broken.db")
