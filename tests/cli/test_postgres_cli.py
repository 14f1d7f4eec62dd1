"""``llm-monitor`` against a real PostgreSQL server: serve, check, prune and export take a URL; backup refuses it and
names pg_dump; the password in the URL is never printed."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from llm_monitor_mw.store.engine import open_engine
from llm_monitor_mw.store.retention import ADVISORY_KEY
from llm_monitor_mw.store.schema import SCHEMA_VERSION

from .helpers import DAY, HOUR, NOW, assert_user_error, count, free_port, insert_raw, record, run, seed
from .test_serve import server

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
"""A throwaway role's password, to show it is never printed."""


@pytest.fixture
def url(pg_server, pg_url: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh database owned by a role with a password, as a URL holding that password."""
    dbname = urlsplit(pg_url).path.lstrip("/")
    role = f"h5_{uuid.uuid4().hex[:8]}"
    with pg_server.admin() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f'ALTER DATABASE "{dbname}" OWNER TO {role}')
    parts = urlsplit(pg_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    yield urlunsplit((parts.scheme, f"{role}:{PASSWORD}@{host}", parts.path, parts.query, parts.fragment))
    with pg_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f"DROP ROLE IF EXISTS {role}")


def _no_password(*outputs: str) -> None:
    for text in outputs:
        assert PASSWORD not in text, text


def _fields(stdout: str) -> dict[str, str]:
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in stdout.splitlines()}


def _hourly(url: str) -> None:
    seed(url, [record(NOW - i * HOUR, user=f"u{i % 4}", tags={"k": str(i % 3)}) for i in reversed(range(40 * 24))])


def test_check_reports_server_schema_rows_and_size(cli: Path, url: str) -> None:
    now = time.time()  # NOW is when the helpers were imported, maybe minutes ago in a whole-suite run
    seed(url, [record(now - 3 * HOUR), record(now - 60)]).close()
    result = run(cli, "check", url)
    assert result.returncode == 0, result.stderr
    fields = _fields(result.stdout)
    assert re.fullmatch(r"PostgreSQL \d+(\.\d+)+", fields["engine"]), fields
    assert fields["database"].startswith("postgresql://h5_") and "@127.0.0.1" in fields["database"]
    assert fields["status"] == "healthy" and fields["schema version"] == str(SCHEMA_VERSION)
    assert fields["calls"] == "2" and fields["last call"].endswith("(1 min ago)")
    assert re.fullmatch(r"[\d.]+ (KiB|MiB) \(calls: [\d.]+ (KiB|MiB); pg_total_relation_size\)", fields["size"])
    assert not {"file", "WAL", "integrity"} & fields.keys()  # no file-only fields
    _no_password(result.stdout, result.stderr)

    report = json.loads(run(cli, "check", url, "--json").stdout)
    assert report["engine"] == "postgresql" and report["calls"] == 2 and report["schema_version"] == SCHEMA_VERSION
    assert report["size_bytes"] > report["calls_bytes"] > 0 and report["last_call_at"].endswith("Z")
    assert "wal_bytes" not in report and PASSWORD not in json.dumps(report)


def test_check_refuses_a_database_without_the_schema_and_creates_nothing(cli: Path, url: str) -> None:
    result = run(cli, "check", url)
    assert_user_error(result, "not an llm-monitor one")
    _no_password(result.stderr)
    assert count(url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == 0


def test_an_unreachable_server_fails_with_status_1(cli: Path) -> None:
    dead = f"postgresql://someone:{PASSWORD}@127.0.0.1:{free_port()}/nothing"
    result = run(cli, "check", dead)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("llm-monitor: error: postgresql://someone@127.0.0.1:") and "cannot connect" in (
        result.stderr
    )
    _no_password(result.stdout, result.stderr)


def test_prune_dry_run_counts_what_the_real_run_deletes(cli: Path, url: str) -> None:
    _hourly(url)
    engine = open_engine(url)
    insert_raw(engine, [record(NOW - 35 * DAY + i) for i in range(7)] + [record(NOW)])  # not projected yet
    young = count(url, "SELECT count(*) FROM calls WHERE started_at > ?", (NOW - 30 * DAY,))

    dry = run(cli, "prune", url, "--older-than", "30d", "--dry-run")
    real = run(cli, "prune", url, "--older-than", "30d")

    assert dry.returncode == 0 and real.returncode == 0, (dry.stderr, real.stderr)
    _no_password(dry.stdout, dry.stderr, real.stdout, real.stderr)
    said = re.match(r"dry run: would delete ([\d,]+) calls .* and ([\d,]+) roll-up rows\n", dry.stdout)
    done = re.match(
        r"deleted ([\d,]+) calls that started before \S+ \(older than 30d\) and ([\d,]+) roll-up rows in [\d.]+ s"
        r" \([\d,]+ transactions, longest write lock \d+ ms\)\n",
        real.stdout,
    )
    assert said and done, (dry.stdout, real.stdout)
    assert said.groups() == done.groups() and done.group(1) == "240" and int(done.group(2).replace(",", "")) > 0
    for out in (dry.stdout, real.stdout):
        assert "kept 7 older calls not yet counted" in out
    assert count(url) == young + 7  # the unprojected old calls wait for the writer


def test_prune_skips_while_another_pruner_holds_the_lock(cli: Path, url: str) -> None:
    _hourly(url)
    engine = open_engine(url)
    holder = engine.connection()
    assert holder.execute("SELECT pg_try_advisory_lock(CAST(? AS BIGINT))", (ADVISORY_KEY,)).fetchone()[0]
    try:
        result = run(cli, "prune", url, "--older-than", "30d")
    finally:
        holder.execute("SELECT pg_advisory_unlock(CAST(? AS BIGINT))", (ADVISORY_KEY,))
    assert result.returncode == 1 and "another prune" in result.stderr and "nothing was deleted" in result.stderr
    assert count(url) == 40 * 24
    assert run(cli, "prune", url, "--older-than", "30d").returncode == 0 and count(url) < 40 * 24


def test_prune_vacuum_on_postgres(cli: Path, url: str) -> None:
    _hourly(url)
    result = run(cli, "prune", url, "--older-than", "30d", "--vacuum")
    assert result.returncode == 0, result.stderr
    assert "vacuumed in" in result.stdout and "PostgreSQL VACUUM" in result.stdout


def test_export_streams_csv_and_jsonl_with_filters(cli: Path, url: str, tmp_path: Path) -> None:
    seed(
        url,
        [record(NOW - i * 60, user=f"u{i % 2}", tags={"feature": "chat" if i % 3 else "search"}) for i in range(30)],
    )
    result = run(cli, "export", url)
    assert result.returncode == 0, result.stderr
    table = list(csv.reader(io.StringIO(result.stdout, newline="")))
    assert len(table) == 31 and table[0][:2] == ["id", "started_at"]
    started = [row[1] for row in table[1:]]
    assert started == sorted(started)  # oldest first
    assert "exported 30 calls as csv to stdout" in result.stderr
    _no_password(result.stderr)

    out = tmp_path / "search.jsonl"
    result = run(cli, "export", url, "--tag", "feature:search", "--user", "u0", "-o", out)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = sum(1 for i in range(30) if i % 3 == 0 and i % 2 == 0)
    assert len(lines) == expected > 0
    assert all(r["tags"] == {"feature": "search"} and r["user"] == "u0" and r["ok"] is True for r in lines)


def test_backup_refuses_a_url_and_names_pg_dump(cli: Path, url: str, tmp_path: Path) -> None:
    seed(url, [record(NOW)]).close()
    for scheme in ("postgresql", "postgres"):
        target = scheme + url.removeprefix("postgresql")
        result = run(cli, "backup", target, tmp_path / "copy.db")
        assert_user_error(result, "backup copies SQLite files only", "pg_dump")
        _no_password(result.stdout, result.stderr)
    assert not (tmp_path / "copy.db").exists()


def test_serve_a_postgres_url(cli: Path, url: str) -> None:
    seed(url, [record(NOW - 60 * i) for i in range(3)]).close()
    with server(cli, url) as (base, proc):
        answer = httpx.get(base + "/api/requests")
        assert answer.status_code == 200 and answer.json()["total"] == 3
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "serving postgresql://" in err
    _no_password(err)


def test_retention_of_several_processes_prunes_once_at_a_time(url: str) -> None:
    """Three pruners race on one database (as three instances' retention threads would): each call deletes or
    skips, never both, and together they delete each old call exactly once."""
    _hourly(url)
    old = count(url, "SELECT count(*) FROM calls WHERE started_at < ?", (NOW - 30 * DAY,))
    from llm_monitor_mw.store.retention import prune

    results = []
    start = threading.Barrier(3)

    def one() -> None:
        engine = open_engine(url)
        engine.ensure()
        start.wait(30)
        results.append(prune(engine, NOW - 30 * DAY, batch_size=20))  # >= 12 batches: the others find it busy

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3 and sum(r.calls for r in results) == old > 0
    assert any(r.skipped for r in results) and all(r.calls == 0 for r in results if r.skipped)
