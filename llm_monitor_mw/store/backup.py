"""Online backup: a consistent copy of a live database through SQLite's backup API.

The source connection holds one read transaction for the whole copy, so every step copies pages of the same
snapshot: writers in other processes keep committing (WAL readers do not block them) and the backup never
restarts because of them. The copy is written next to the destination under a temporary name, switched to
``journal_mode=DELETE`` (one self-contained file), checked with ``PRAGMA quick_check`` and only then renamed into
place, so a failed or interrupted backup never leaves a half-written file under the destination's name. A
destination that is no regular file (a FIFO, a device, ``/dev/stdout``) is written through, never replaced: see
:func:`backup` and :mod:`.outfile`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import outfile
from .dbfile import DatabaseFileError, location, open_existing
from .engine import is_postgres_url
from .schema import CALLS


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What :func:`backup` copied."""

    dest: str
    pages: int
    bytes: int
    calls: int
    seconds: float
    streamed: bool = False
    """Whether ``dest`` was written through (a device, a FIFO, a descriptor) rather than replaced as a file."""


def backup(
    db_path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    pages_per_step: int = 1024,
    sleep: float = 0.0,
) -> BackupResult:
    """Copy the database at ``db_path`` to ``dest`` while other processes may be writing to it.

    ``dest`` follows the rules of :mod:`.outfile`: a regular file (or a new path, or a symlink's target) is
    replaced atomically, keeping an existing file's mode, and a new one gets the source's mode filtered by the
    umask (as ``cp`` does: the copy is as private as the database); a FIFO, a character device or ``/dev/stdout``
    receives the bytes of a checked copy made first in the temporary directory (``$TMPDIR``), since SQLite's
    backup API needs a real file. Refuses (``FileExistsError``) an existing regular file or block device unless
    ``overwrite``, and ``dest`` being the source itself. Raises :class:`DatabaseFileError` when the source is not a
    usable llm-monitor database.
    """
    if is_postgres_url(db_path):
        raise DatabaseFileError(postgres_hint(db_path))
    started = time.perf_counter()
    source = Path(db_path)
    target = Path(dest)
    if target.exists() and source.exists() and os.path.samefile(source, target):
        raise FileExistsError(f"{target}: is the database itself")
    out = outfile.resolve(target, overwrite=overwrite)
    src = open_existing(source)
    try:
        mode = stat.S_IMODE(source.stat().st_mode)
        if out.replaces:
            fd, tmp = outfile.create_beside(out.target, mode)
        else:
            fd, tmp = outfile.create_beside(Path(tempfile.gettempdir()) / f"{source.name}.backup", 0o600)
        os.close(fd)
        try:
            pages, calls = _copy(src, source, tmp, pages_per_step, sleep)
            size = tmp.stat().st_size
            if out.replaces:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    outfile.adopt_metadata(fd, out)
                finally:
                    os.close(fd)
                os.replace(tmp, out.target)
            else:
                with tmp.open("rb") as copy, os.fdopen(outfile.open_through(out), "wb") as stream:
                    shutil.copyfileobj(copy, stream, 1 << 20)
                tmp.unlink()
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
        bytes=size,
        calls=calls,
        seconds=time.perf_counter() - started,
        streamed=not out.replaces,
    )


def postgres_hint(url: str | os.PathLike[str]) -> str:
    """Why a PostgreSQL database is not backed up here, and the ``pg_dump`` command that does it (the URL shown
    without its password: ``pg_dump`` reads that from ``PGPASSWORD`` or ``~/.pgpass``)."""
    return (
        f"{location(url)}: backup copies SQLite files only; for PostgreSQL use pg_dump,"
        f" e.g. pg_dump --format=custom --file=llm_monitor.dump '{location(url)}'"
    )


def _copy(src: sqlite3.Connection, source: Path, tmp: Path, pages_per_step: int, sleep: float) -> tuple[int, int]:
    """Back ``src`` up into the file ``tmp``, self-contained and checked; returns ``(pages, calls)``."""
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
        return pages, dst.execute(f"SELECT count(*) FROM {CALLS}").fetchone()[0]
    finally:
        dst.close()
