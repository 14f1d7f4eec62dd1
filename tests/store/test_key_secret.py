"""The key-fingerprint secret: made once per database, the same for every engine and instance that shares it."""

from __future__ import annotations

import threading

from llm_monitor_mw.store import open_engine
from llm_monitor_mw.store.secrets import KEY_SECRET, KeySecret, key_secret


def stored(target: str) -> list[tuple[str, str]]:
    engine = open_engine(target)
    try:
        return [tuple(r) for r in engine.connection().execute("SELECT name, value FROM llm_monitor_secrets")]
    finally:
        engine.close()


def test_made_once_and_kept(store_target: str) -> None:
    engine = open_engine(store_target)
    first = key_secret(engine)
    assert len(first) == 32 and first == key_secret(engine)
    (row,) = stored(store_target)
    assert row == (KEY_SECRET, first.hex())
    other = open_engine(store_target)  # another engine: not the process cache, the database answers
    assert key_secret(other) == first
    engine.close()
    other.close()


def test_concurrent_first_use_agrees(store_target: str) -> None:
    engines = [open_engine(store_target) for _ in range(6)]
    for engine in engines:
        engine.ensure()  # migrated before the race: the race is the secret's
    barrier = threading.Barrier(len(engines))
    found: list[bytes] = []
    errors: list[BaseException] = []

    def run(engine: object) -> None:
        try:
            barrier.wait()
            found.append(key_secret(engine))  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.close()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(found) == len(engines)
    assert len(set(found)) == 1
    assert len(stored(store_target)) == 1


def test_databases_differ(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = open_engine(str(tmp_path / "a.db")), open_engine(str(tmp_path / "b.db"))
    assert key_secret(a) != key_secret(b)


def test_key_secret_callable_never_raises(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = open_engine(str(tmp_path / "c.db"))
    engine.connection().execute("DROP TABLE llm_monitor_secrets")
    secret = KeySecret(engine)
    assert secret() is None and secret() is None  # the second answer without asking again
    assert "c.db" in repr(secret)
