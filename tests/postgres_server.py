"""A throwaway PostgreSQL cluster for the tests: initdb into a temp dir, one server on 127.0.0.1, a fresh database
per test.

The server runs as the ``postgres`` user when the tests run as root (PostgreSQL refuses to run as root), as the
current user otherwise. It is tuned for tests (``fsync=off``: a crash loses nothing we need) and stopped at exit,
also when the test session dies: :func:`atexit`, and a watchdog process that runs ``pg_ctl stop -m immediate``
once the test process is gone (even after ``SIGKILL``).

Set ``LLM_MONITOR_TEST_PG`` to a base DSN (a superuser, e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``) to
use a server that is already running instead; the tests then create (and drop) their databases on it.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ENV_DSN = "LLM_MONITOR_TEST_PG"


def find_bindir() -> Path | None:
    """The directory holding ``initdb``/``pg_ctl`` (Debian's ``/usr/lib/postgresql/<newest>/bin`` first, then
    ``PATH``), ``None`` if absent."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _major(p.parent.name), reverse=True)
    for candidate in debian:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    found = shutil.which("pg_ctl")
    if found and (Path(found).parent / "initdb").exists():
        return Path(found).parent
    return None


def _major(name: str) -> int:
    return int(name) if name.isdigit() else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_database(dsn: str, dbname: str) -> str:
    """``dsn`` naming database ``dbname`` instead."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


class PostgresServer:
    """One PostgreSQL server for a test session: started here, or an existing one named by a base DSN."""

    def __init__(self, base_dsn: str | None = None) -> None:
        self.base_dsn = base_dsn or ""
        self.datadir: Path | None = None
        self.bindir: Path | None = None
        self._owned = base_dsn is None
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._prefix = f"t{os.getpid()}_"

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        """Start a fresh cluster (unless a base DSN was given) and wait until it accepts connections."""
        if not self._owned:
            with psycopg.connect(self.base_dsn, connect_timeout=5):
                pass
            return self
        bindir = find_bindir()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bindir = bindir
        root = Path(tempfile.mkdtemp(prefix="llm-monitor-pg-"))
        self.datadir = root / "data"
        sockets = root / "sock"
        sockets.mkdir()
        self.datadir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(self.datadir, "postgres", "postgres")
            shutil.chown(sockets, "postgres", "postgres")
        port = free_port()
        self._run(str(bindir / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C", "--no-sync")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        atexit.register(self.stop)
        self._watch(root)
        self._run(str(bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.datadir), "-l",
                  str(root / "server.log"), "-o", options)  # fmt: skip
        self.base_dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self

    def stop(self) -> None:
        """Stop the server this object started (immediately: nothing in it is kept) and delete its files."""
        if not self._owned or self.datadir is None or self.bindir is None:
            return
        datadir, self.datadir = self.datadir, None
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(datadir), "-m", "immediate", "-w", check=False)
        shutil.rmtree(datadir.parent, ignore_errors=True)
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None and watchdog.stdin is not None:
            with contextlib.suppress(OSError):
                watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=30)

    def _watch(self, root: Path) -> None:
        """A watchdog process that stops the server and deletes its files once this process is gone, however it
        ended (even ``SIGKILL``, which skips :mod:`atexit`): it waits for EOF on a pipe only this process holds."""
        assert self.datadir is not None and self.bindir is not None
        stop = [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "immediate", "-w"]
        if os.geteuid() == 0:
            stop = ["runuser", "-u", "postgres", "--", *stop]
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(root), *stop],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the test run reaches the tests, not the watchdog
        )

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
        if check and result.returncode != 0:
            log = ""
            if self.datadir is not None and (self.datadir.parent / "server.log").exists():
                log = (self.datadir.parent / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}{result.stdout}{log}")
        return result

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------------------------------
    def admin(self) -> psycopg.Connection:
        """An autocommit superuser connection to the maintenance database."""
        return psycopg.connect(self.base_dsn, autocommit=True, connect_timeout=5)

    def create_database(self) -> tuple[str, str]:
        """A new, empty database: ``(name, url)``."""
        with self._lock:
            name = f"{self._prefix}{next(self._counter)}_{int(time.time() * 1000) % 100000}"
        with self.admin() as conn:
            # FILE_COPY: a checkpoint plus a directory copy, faster than WAL_LOG for an empty template here
            # (fsync=off); measured in tests/store/test_engines.py::test_fresh_database_is_cheap.
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return name, with_database(self.base_dsn, name)

    def drop_database(self, name: str) -> None:
        """Drop a database made by :meth:`create_database`, disconnecting whoever still uses it."""
        with contextlib.suppress(psycopg.Error), self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_WATCHDOG = """
import shutil, subprocess, sys
sys.stdin.buffer.read()  # EOF: the test process closed the pipe or died
subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, cwd="/")
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10).stdout.lower()
    except (OSError, subprocess.SubprocessError):
        return False
    return "c.utf8" in out or "c.utf-8" in out
