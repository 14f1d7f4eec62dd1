"""The store's own secrets (table ``llm_monitor_secrets``): the HMAC key of API-key fingerprints.

The key-fingerprint secret is 32 random bytes (64 hex digits), made once per database by the first writer that
needs it: ``INSERT … ON CONFLICT DO NOTHING`` then ``SELECT``, so instances that start together on one database
all read the row that won. It never leaves the store: not logged, not exported (exports read ``calls`` only),
not shown. A backup copies the database, and so the secret with it: a restored copy keeps its fingerprints.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import weakref
from typing import Any

from .engine.base import Connection, Engine
from .schema import SECRETS

logger = logging.getLogger("llm_monitor_mw")

KEY_SECRET = "key_fingerprint"  # noqa: S105 - a row's name, not a secret
"""``llm_monitor_secrets.name`` of the fingerprints' HMAC key."""
SECRET_BYTES = 32
WRITE_SECONDS = 5.0
"""Longest the writer thread waits for the secret's transaction (busy database, slow connect)."""
RETRY_SECONDS = 30.0
"""After a failure, how long :class:`KeySecret` answers ``None`` before it asks the database again."""

_CACHE: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _as_key(value: str) -> bytes:
    """The stored text as HMAC key bytes: the hex it was written as, else (a foreign value) its UTF-8."""
    try:
        return bytes.fromhex(value)
    except ValueError:
        return value.encode()


def key_secret(engine: Engine) -> bytes:
    """The fingerprints' HMAC key of the database behind ``engine``, made on first use; cached in the process.

    Raises the engine's errors when the database cannot be reached (see :class:`KeySecret` for a caller that
    must never raise)."""
    cached = _CACHE.get(engine)
    if cached is not None:
        return cached
    fresh = secrets.token_hex(SECRET_BYTES)

    def fn(conn: Connection) -> str:
        conn.execute(
            f"INSERT INTO {SECRETS} (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", [KEY_SECRET, fresh]
        )
        return str(conn.execute(f"SELECT value FROM {SECRETS} WHERE name = ?", [KEY_SECRET]).fetchone()[0])

    # no retries past the deadline: the writer thread is waiting, and the call is recorded without a fingerprint
    value = _as_key(engine.write(fn, attempts=5, deadline=time.monotonic() + WRITE_SECONDS))
    with _LOCK:
        return _CACHE.setdefault(engine, value)


class KeySecret:
    """``key_secret(engine)`` as a callable that never raises: ``None`` while the database cannot answer (asked
    again after :data:`RETRY_SECONDS`), for ``CaptureOptions.key_secret`` on the writer thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._value: bytes | None = None
        self._retry_at = 0.0

    def __call__(self) -> bytes | None:
        if self._value is not None:
            return self._value
        now = time.monotonic()
        if now < self._retry_at:
            return None
        try:
            self._value = key_secret(self.engine)
        except Exception as exc:
            self._retry_at = now + RETRY_SECONDS
            # the type and message of a database error only: the secret is not in it (none was read)
            logger.warning(
                "llm_monitor_mw: no key-fingerprint secret from %s (%s); calls are recorded without one for %.0f s",
                self.engine.location,
                type(exc).__name__,
                RETRY_SECONDS,
            )
            return None
        return self._value

    def __repr__(self) -> str:
        return f"KeySecret({self.engine.location!r})"  # never the value
