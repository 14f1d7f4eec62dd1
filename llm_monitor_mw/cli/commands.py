"""The data commands of ``llm-monitor``: ``prune``, ``backup``, ``export``, ``check`` and ``demo``.

Each takes the parsed arguments, does its job through ``store``, prints a short report and returns the exit
status. Problems the user can fix raise :class:`UsageError` or
:class:`~llm_monitor_mw.store.dbfile.DatabaseFileError`; ``main`` turns them into one line and status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from ..store.backup import backup as backup_db
from ..store.backup import postgres_hint
from ..store.dbfile import PostgresHealth, health, iso, open_store, postgres_health
from ..store.engine import is_postgres_url
from ..store.export import Format, export_engine
from ..store.outfile import Output, open_output
from ..store.outfile import resolve as resolve_output
from ..store.read.filters import Filters, parse_tag
from ..store.retention import prune as prune_db
from ..store.retention import vacuum
from .errors import CommandFailed, UsageError
from .timespec import format_duration


def size(n: int) -> str:
    """Bytes for people: ``1536`` -> ``1.5 KiB``."""
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def ago(ts: float | None, now: float | None = None) -> str:
    """``2026-01-31T12:00:00.000Z (3 min ago)``, or ``never``."""
    if ts is None:
        return "never"
    seconds = max(0.0, (time.time() if now is None else now) - ts)
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{iso(ts)} ({seconds / length:.0f} {unit} ago)"
    return f"{iso(ts)} ({seconds:.0f} s ago)"


# ---- prune ------------------------------------------------------------------------------------------------------


def prune(args: argparse.Namespace) -> int:
    """Delete calls older than ``--older-than`` (and their roll-up buckets); optionally VACUUM."""
    if args.batch_size < 1:
        raise UsageError("--batch-size must be positive")
    engine = open_store(args.db)
    try:
        before = time.time() - args.older_than
        result = prune_db(engine, before, batch_size=args.batch_size, dry_run=args.dry_run)
        if result.skipped:
            raise CommandFailed(
                f"{engine.location}: another prune (or an app's retention) is running on this database;"
                " nothing was deleted, try again when it is done"
            )
        what = f"calls that started before {iso(before)} (older than {format_duration(args.older_than)})"
        if args.dry_run:
            print(f"dry run: would delete {result.calls:,} {what} and {result.rollup_rows:,} roll-up rows")
        else:
            print(
                f"deleted {result.calls:,} {what} and {result.rollup_rows:,} roll-up rows"
                f" in {result.seconds:.1f} s ({result.transactions:,} transactions,"
                f" longest write lock {result.longest_lock_s * 1000:.0f} ms)"
            )
        if result.kept:
            print(
                f"kept {result.kept:,} older calls not yet counted into the roll-ups and /metrics counters:"
                f" an app writing to this database projects them, then a later prune deletes them"
            )
        if args.vacuum and not args.dry_run:
            _vacuum(engine, args.db)
        return 0
    finally:
        engine.close()


def _vacuum(engine: object, target: str) -> None:
    started = time.perf_counter()
    if is_postgres_url(target):
        vacuum(engine)  # type: ignore[arg-type]
        print(f"vacuumed in {time.perf_counter() - started:.1f} s (PostgreSQL VACUUM: the space is reused)")
        return
    was = Path(target).stat().st_size
    vacuum(engine)  # type: ignore[arg-type]
    now = Path(target).stat().st_size
    print(f"vacuumed in {time.perf_counter() - started:.1f} s: {size(was)} -> {size(now)}")


# ---- backup -----------------------------------------------------------------------------------------------------


def backup(args: argparse.Namespace) -> int:
    """Copy the database consistently while apps may be writing to it (SQLite only: PostgreSQL has pg_dump)."""
    if is_postgres_url(args.db):
        raise UsageError(postgres_hint(args.db))
    dest = args.dest
    if dest == "-":
        sys.stdout.flush()
        dest = f"/dev/fd/{sys.stdout.fileno()}"
    try:
        result = backup_db(args.db, dest, overwrite=args.force)
    except (FileExistsError, FileNotFoundError, IsADirectoryError) as exc:
        raise UsageError(str(exc)) from None
    print(
        f"backed up {args.db} to {'stdout' if args.dest == '-' else args.dest}: {result.calls:,} calls,"
        f" {size(result.bytes)} in {result.seconds:.1f} s (quick_check ok)",
        file=sys.stderr if result.streamed else sys.stdout,  # the copy itself may be on stdout
    )
    return 0


# ---- export -----------------------------------------------------------------------------------------------------


def export_format(args: argparse.Namespace) -> Format:
    """``--format``, else from the output file's extension (``.jsonl``/``.ndjson`` -> jsonl), else csv."""
    if args.format:
        return args.format
    if args.output not in ("-", None) and Path(args.output).suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    return "csv"


def export_filters(args: argparse.Namespace) -> Filters:
    """The ``Filters`` named by ``--since``, ``--until``, ``--provider``, ``--model``, ``--status``, … ."""
    tag = None
    if args.tag:
        try:
            tag = parse_tag(args.tag)
        except ValueError:
            raise UsageError(f"--tag {args.tag!r}: use key:value, e.g. --tag feature:chat") from None
    if args.since is not None and args.until is not None and args.since >= args.until:
        raise UsageError("--since must be before --until")
    return Filters(
        since=args.since,
        until=args.until,
        provider=args.provider,
        model=args.model,
        ok=None if args.status is None else args.status == "ok",
        route=args.route,
        user=args.user,
        tag=tag,
    )


@contextlib.contextmanager
def _output(out: Output | None) -> Iterator[TextIO]:
    """UTF-8 text (no newline translation) to ``out`` (:mod:`~llm_monitor_mw.store.outfile` rules), or stdout."""
    if out is None:  # stdout that is no descriptor, e.g. when main() runs in-process under a test's capture
        yield sys.stdout
        sys.stdout.flush()
        return
    with open_output(out) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        yield text
        text.detach()  # flushes, and leaves closing (after fsync, before the rename) to open_output


def _resolve_output(path: str) -> Output | None:
    """Where ``-o`` points; ``-`` is this process's stdout. Raises :class:`UsageError` for an unusable path."""
    if path == "-":
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            return None
        sys.stdout.flush()
        path = f"/dev/fd/{fd}"
    try:
        return resolve_output(path)
    except (FileExistsError, FileNotFoundError, IsADirectoryError) as exc:
        raise UsageError(str(exc)) from None


def export(args: argparse.Namespace) -> int:
    """Stream the matching calls as CSV or JSON Lines to a file or stdout."""
    fmt = export_format(args)
    filters = export_filters(args)
    engine = open_store(args.db)  # a bad database must not leave an output file behind
    try:
        out = _resolve_output(args.output)
        with _output(out) as text:
            count = export_engine(engine, text, fmt, filters, content=args.content)
    finally:
        engine.close()
    where = "stdout" if args.output == "-" else args.output
    print(f"exported {count:,} calls as {fmt} to {where}", file=sys.stderr)
    return 0


# ---- check ------------------------------------------------------------------------------------------------------


def check(args: argparse.Namespace) -> int:
    """Print the database's health; status 2 when the integrity check fails."""
    if is_postgres_url(args.db):
        return _check_postgres(args, postgres_health(args.db))
    report = health(args.db)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        version = _schema_line(report.schema_version, report.current_schema, "file")
        integrity = "ok (quick_check)" if report.healthy else "FAILED: " + "; ".join(report.integrity)
        for label, value in (
            ("file", report.path),
            ("status", "healthy" if report.healthy else "UNHEALTHY"),
            ("schema version", version),
            ("calls", f"{report.calls:,}"),
            ("first call", ago(report.first_call_at)),
            ("last call", ago(report.last_call_at)),
            ("size", f"{size(report.size_bytes)} ({size(report.free_bytes)} free pages)"),
            ("WAL", f"{size(report.wal_bytes)} (journal mode {report.journal_mode})"),
            ("integrity", integrity),
        ):
            print(f"{label + ':':<16}{value}")
    if not report.healthy:
        print(f"llm-monitor: error: {args.db}: integrity check failed", file=sys.stderr)
        return 2
    return 0


def _schema_line(version: int, current: int, what: str = "database") -> str:
    if version < current:
        return f"{version} (this package writes {current}; upgraded when an app opens the {what})"
    return f"{version}"


def _check_postgres(args: argparse.Namespace, report: PostgresHealth) -> int:
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    for label, value in (
        ("engine", f"PostgreSQL {report.server_version}"),
        ("database", report.location),
        ("status", "healthy"),
        ("schema version", _schema_line(report.schema_version, report.current_schema)),
        ("calls", f"{report.calls:,}"),
        ("first call", ago(report.first_call_at)),
        ("last call", ago(report.last_call_at)),
        ("size", f"{size(report.size_bytes)} (calls: {size(report.calls_bytes)}; pg_total_relation_size)"),
    ):
        print(f"{label + ':':<16}{value}")
    return 0


# ---- demo -------------------------------------------------------------------------------------------------------


def demo(args: argparse.Namespace) -> int:
    """Run the bundled demo (:mod:`llm_monitor_mw.demo`) with the remaining arguments."""
    try:
        from .. import demo as demo_app
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"the demo needs {exc.name!r}, which is not installed: pip install 'llm-monitor-mw[demo]'"
        ) from None
    program = sys.argv[0]
    sys.argv[0] = "llm-monitor demo"  # the demo's own parser names itself after argv[0] in --help and errors
    try:
        demo_app.main(args.passthrough)
    finally:
        sys.argv[0] = program
    return 0
