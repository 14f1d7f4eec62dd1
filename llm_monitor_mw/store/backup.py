"""Online backup: a consistent copy of a live database through SQLite's backup API.

The source connection holds one read transaction for the whole copy, so every step copies pages of the same
snapshot: writers in other processes keep committing (WAL readers do not block them) and the backup never
restarts because of them. The copy is written next to the destination under a temporary name, switched to
``journal_mode=DELETE`` (one self-contained file), checked with ``PRAGMA quick_check`` and only then renamed into
place, so a failed or interrupted backup never leaves a half-written file under the destination's name.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .dbfile import DatabaseFileError, open_existing
from .schema import CALLS


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What :func:`backup` copied."""

    dest: str
    pages: int
    bytes: int
    calls: int
    seconds: float


def backup(
    db_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    pages_per_step: int = 1024,
    sleep: float = 0.0,
) -> BackupResult:
    """Copy the database at ``db_path`` to ``dest`` while other processes may be writing to it.

    Refuses (``FileExistsError``) an existing ``dest`` unless ``overwrite``, and ``dest`` being the source
    itself. Raises :class:`DatabaseFileError` when the source is not a usable llm-monitor database.
    """
    started = time.perf_counter()
    source = Path(db_path)
    target = Path(dest)
    if target.is_dir():
        raise IsADirectoryError(f"{target}: is a directory; give the backup file's name")
    if target.exists():
        if source.exists() and os.path.samefile(source, target):
            raise FileExistsError(f"{target}: is the database itself")
        if not overwrite:
            raise FileExistsError(f"{target}: already exists (overwrite it with --force)")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{target.parent}: no such directory")
    src = open_existing(source)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            src.execute("BEGIN")
            src.execute(f"SELECT count(*) FROM sqlite_master WHERE name = '{CALLS}'").fetchone()  # snapshot now
            try:
                src.backup(dst, pages=pages_per_step, sleep=sleep)
            except sqlite3.DatabaseError as exc:
                raise DatabaseFileError(f"{source}: could not be read for backup ({exc})") from None
            finally:
                src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode = DELETE")
            problems = [r[0] for r in dst.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise DatabaseFileError(f"{source}: the copy failed its integrity check: {'; '.join(problems)}")
            pages = dst.execute("PRAGMA page_count").fetchone()[0]
            calls = dst.execute(f"SELECT count(*) FROM {CALLS}").fetchone()[0]
        finally:
            dst.close()
        os.replace(tmp, target)
    except BaseException:
        for leftover in (tmp, *(Path(f"{tmp}{suffix}") for suffix in ("-journal", "-wal", "-shm"))):
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise
    finally:
        src.close()
    return BackupResult(
        dest=str(target),
        pages=pages,
        bytes=target.stat().st_size,
        calls=calls,
        seconds=time.perf_counter() - started,
    )
