"""Outputs go where they are told: ``export -o`` and ``backup DEST`` to FIFOs, terminals, descriptors, symlinks.

Regular files are replaced atomically and keep their mode; anything else is written through, never replaced.
(Never the real ``/dev/null``: a FIFO or a pseudo-terminal stands in for a device.)
"""

from __future__ import annotations

import csv
import io
import os
import select
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from llm_monitor_mw.store import outfile

from .helpers import NOW, assert_user_error, record, run, seed

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs, ptys and modes are POSIX")
ROWS = 3
OLDEST_FIRST = ["3", "2", "1"]  # ids: the fixture inserts the newest call first


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "m.db"
    seed(path, [record(NOW - i) for i in range(ROWS)], rollups=False).close()
    return path


@contextmanager
def fifo(path: Path) -> Iterator[list[bytes]]:
    """A FIFO at ``path`` with a reader thread; the list holds what was read once the block ends."""
    os.mkfifo(path)
    got: list[bytes] = []

    def read() -> None:
        with open(path, "rb") as f:  # blocks until a writer opens it
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield got
    finally:
        if reader.is_alive():  # nobody opened it for writing: let the reader go
            with suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(10)
    assert stat.S_ISFIFO(path.stat().st_mode)  # still a FIFO: not replaced by a regular file


def csv_ids(data: bytes) -> list[str]:
    return [row["id"] for row in csv.DictReader(io.StringIO(data.decode(), newline=""))]


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def calls_in(data: bytes, tmp_path: Path) -> int:
    """The number of calls in the SQLite database ``data``, after an integrity check."""
    assert data.startswith(b"SQLite format 3\x00")
    copy = tmp_path / "received.db"
    copy.write_bytes(data)
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    finally:
        conn.close()


# ---- export -o --------------------------------------------------------------------------------------------------


def test_export_to_a_fifo_writes_through(cli: Path, db: Path, tmp_path: Path) -> None:
    pipe = tmp_path / "calls.csv"
    with fifo(pipe) as got:
        result = run(cli, "export", db, "-o", pipe)
        assert result.returncode == 0, result.stderr
    assert csv_ids(got[0]) == OLDEST_FIRST
    assert leftovers(tmp_path) == []


def test_export_to_a_terminal_device_writes_through(cli: Path, db: Path) -> None:
    import tty

    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # no newline translation: the bytes as written
        name = os.ttyname(slave)
        before = os.stat(name)
        result = run(cli, "export", db, "-o", name, "--format", "jsonl")
        assert result.returncode == 0, result.stderr
        data = b""
        while data.count(b"\n") < ROWS and select.select([master], [], [], 10)[0]:
            data += os.read(master, 65536)
        after = os.stat(name)
    finally:
        os.close(slave)
        os.close(master)
    assert data.count(b"\n") == ROWS and data.startswith(b'{"id":3,')
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_export_to_dev_stdout_writes_to_the_descriptor(cli: Path, db: Path, tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("earlier line\n")
    with open(log, "a") as appending:  # as `>> log.txt`: the file must not be replaced, nor rewritten from 0
        result = subprocess.run([str(cli), "export", str(db), "-o", "/dev/stdout"], stdout=appending, timeout=60)
    assert result.returncode == 0
    text = log.read_bytes()
    assert text.startswith(b"earlier line\n")
    assert csv_ids(text[len(b"earlier line\n") :]) == OLDEST_FIRST
    plain = subprocess.run([str(cli), "export", str(db)], capture_output=True, timeout=60)
    assert text[len(b"earlier line\n") :] == plain.stdout


def test_export_follows_a_symlink_and_keeps_the_target_mode(cli: Path, db: Path, tmp_path: Path) -> None:
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    target.chmod(0o640)
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    result = run(cli, "export", db, "-o", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert csv_ids(target.read_bytes()) == OLDEST_FIRST
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert leftovers(tmp_path) == []


def test_export_refuses_a_dangling_symlink(cli: Path, db: Path, tmp_path: Path) -> None:
    link = tmp_path / "out.csv"
    link.symlink_to(tmp_path / "elsewhere" / "nothing.csv")
    assert_user_error(run(cli, "export", db, "-o", link), "is a symlink to", "does not exist")
    assert link.is_symlink() and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_a_new_export_file_gets_the_umask_mode(cli: Path, db: Path, tmp_path: Path, umask: int, mode: int) -> None:
    out = tmp_path / "new.csv"
    result = subprocess.run([str(cli), "export", str(db), "-o", str(out)], umask=umask, timeout=60)
    assert result.returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == mode


@pytest.mark.parametrize("mode", [0o600, 0o664, 0o444])
def test_an_existing_export_file_keeps_its_mode(cli: Path, db: Path, tmp_path: Path, mode: int) -> None:
    out = tmp_path / "calls.csv"
    out.write_text("old\n")
    out.chmod(mode)
    result = subprocess.run([str(cli), "export", str(db), "-o", str(out)], umask=0o022, timeout=60)
    assert result.returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == mode and csv_ids(out.read_bytes()) == OLDEST_FIRST


# ---- backup DEST ------------------------------------------------------------------------------------------------


def test_backup_to_a_fifo_streams_a_checked_copy(cli: Path, db: Path, tmp_path: Path) -> None:
    pipe = tmp_path / "backup.db"
    with fifo(pipe) as got:
        result = run(cli, "backup", db, pipe)  # a FIFO is no file to overwrite: no --force needed
        assert result.returncode == 0, result.stderr
    assert calls_in(got[0], tmp_path) == ROWS
    assert result.stdout == "" and f"backed up {db} to {pipe}: {ROWS} calls" in result.stderr
    assert leftovers(tmp_path) == []


def test_backup_to_stdout(cli: Path, db: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(cli), "backup", str(db), "-"], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert calls_in(result.stdout, tmp_path) == ROWS
    assert f"backed up {db} to stdout".encode() in result.stderr


def test_backup_follows_a_symlink_and_keeps_the_target_mode(cli: Path, db: Path, tmp_path: Path) -> None:
    target = tmp_path / "real-backup.db"
    target.write_text("an older backup")
    target.chmod(0o640)
    link = tmp_path / "backup-latest.db"
    link.symlink_to(target)
    assert_user_error(run(cli, "backup", db, link), "already exists", "--force")
    assert target.read_text() == "an older backup"
    result = run(cli, "backup", db, link, "--force")
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert calls_in(target.read_bytes(), tmp_path) == ROWS
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_backup_refuses_a_dangling_symlink(cli: Path, db: Path, tmp_path: Path) -> None:
    link = tmp_path / "b.db"
    link.symlink_to(tmp_path / "gone.db")
    assert_user_error(run(cli, "backup", db, link), "does not exist")
    assert not (tmp_path / "gone.db").exists()


@pytest.mark.parametrize(
    ("source_mode", "umask", "mode"), [(0o600, 0o022, 0o600), (0o644, 0o022, 0o644), (0o664, 0o027, 0o640)]
)
def test_a_new_backup_is_as_private_as_the_database(
    cli: Path, db: Path, tmp_path: Path, source_mode: int, umask: int, mode: int
) -> None:
    db.chmod(source_mode)
    dest = tmp_path / "new-backup.db"
    result = subprocess.run([str(cli), "backup", str(db), str(dest)], capture_output=True, umask=umask, timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(dest.stat().st_mode) == mode


# ---- the rules --------------------------------------------------------------------------------------------------


def test_resolve_classifies(tmp_path: Path) -> None:
    assert outfile.resolve(tmp_path / "new").kind is outfile.Kind.NEW
    (tmp_path / "file").write_text("x")
    assert outfile.resolve(tmp_path / "file").kind is outfile.Kind.FILE
    with pytest.raises(FileExistsError):
        outfile.resolve(tmp_path / "file", overwrite=False)
    with pytest.raises(IsADirectoryError):
        outfile.resolve(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        outfile.resolve(tmp_path / "missing" / "x")
    os.mkfifo(tmp_path / "fifo")
    assert outfile.resolve(tmp_path / "fifo", overwrite=False).kind is outfile.Kind.STREAM
    out = outfile.resolve("/dev/stdout")
    assert out.kind is outfile.Kind.DESCRIPTOR and out.fd == 1
    assert outfile.resolve("/dev/fd/2").fd == 2 and outfile.resolve("/proc/self/fd/0").fd == 0


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "calls.csv"
    out.write_text("old\n")
    with pytest.raises(RuntimeError), outfile.open_output(out) as stream:
        stream.write(b"half")
        raise RuntimeError("interrupted")
    assert out.read_text() == "old\n" and leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="planting another user's link needs root")
def test_someone_elses_symlink_in_a_sticky_shared_directory_is_not_followed(
    cli: Path, db: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    planted = shared / "out.csv"
    planted.symlink_to(precious)
    os.lchown(planted, 12345, 12345)  # another user's link, as in /tmp
    result = run(cli, "export", db, "-o", planted)
    assert result.returncode == 1 and "refusing to follow a symlink owned by another user" in result.stderr
    assert precious.read_text() == "keep me\n" and planted.is_symlink()
    os.lchown(planted, 0, 0)  # our own link there is followed, as the kernel would
    assert run(cli, "export", db, "-o", planted).returncode == 0
    assert csv_ids(precious.read_bytes()) == OLDEST_FIRST
