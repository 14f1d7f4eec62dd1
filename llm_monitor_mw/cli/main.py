"""``llm-monitor``: the argument parser and the dispatcher that turns user errors into one line and status 2."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from ..store.dbfile import DatabaseFileError, DatabaseUnreachable
from ..store.export import FORMATS
from . import commands, proxy, reprice, serve
from .errors import CommandFailed, UsageError
from .timespec import parse_duration, parse_moment

PROG = "llm-monitor"

EXIT_STATUS = """\
exit status: 0 success, 1 the operation failed (e.g. the database stayed locked or its server did not answer,
             disk full, port in use, another prune running), 2 usage error or unusable database (missing, not
             SQLite, corrupt, not an llm-monitor database, written by a newer version)"""

MAIN_EPILOG = f"""\
examples:
  {PROG} serve llm_monitor.db                      dashboard on http://127.0.0.1:8000/
  {PROG} check llm_monitor.db                      health: rows, last call, size, integrity
  {PROG} prune llm_monitor.db --older-than 30d     delete calls older than 30 days
  {PROG} backup llm_monitor.db backup.db           consistent copy while the app keeps writing
  {PROG} export llm_monitor.db --since 7d -o calls.csv
  {PROG} reprice llm_monitor.db --since 30d        recompute costs after a price update
  {PROG} check postgresql://monitor@db.internal/llm   the same commands on PostgreSQL (but backup: pg_dump)
  {PROG} demo                                      demo app with a fake LLM server
  {PROG} proxy https://api.openai.com --port 8001  monitoring proxy for any client; dashboard at /monitoring/

DB is a SQLite file or a PostgreSQL URL (postgresql://user:password@host:5432/dbname, or postgres://...);
prefer PGPASSWORD or ~/.pgpass to a password in the URL, which other users can see in the process list.

Run '{PROG} COMMAND --help' for a command's options.

{EXIT_STATUS}"""


OUTPUT_RULES = """\
DEST: a regular file (or a new name) is written under a temporary name and renamed into place when complete;
an existing file keeps its permissions. A symlink is followed to its target (a dangling one is refused).
Anything else (/dev/stdout, a FIFO, a device) is written through, never replaced."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout; shows defaults."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _command(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    summary: str,
    epilog: str,
    handler: Callable[[argparse.Namespace], int],
    **kwargs: object,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=f"examples:\n{epilog}\n\n{EXIT_STATUS}",
        formatter_class=_Formatter,
        **kwargs,
    )
    parser.set_defaults(handler=handler)
    return parser


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "db", metavar="DB", help="the SQLite file or postgresql:// URL the monitor writes (it must exist)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``llm-monitor`` parser with one subcommand per job."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve, inspect and maintain an llm-monitor-mw database (SQLite file or PostgreSQL).",
        epilog=MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _command(
        sub,
        "serve",
        "serve the dashboard and JSON API for a database",
        f"  {PROG} serve llm_monitor.db\n"
        f"  LLM_MONITOR_PASSWORD=secret {PROG} serve llm_monitor.db --host 0.0.0.0 --username admin\n"
        f"  {PROG} serve llm_monitor.db --port 9000 --prefix /monitoring --retention 30d\n\n"
        f"The password is read from ${serve.PASSWORD_ENV} (safer than --password, which other users of the\n"
        f"machine can see in the process list). With a password and no --username the user is"
        f" '{serve.DEFAULT_USERNAME}'.\nWithout a password the dashboard is open to anyone who can reach it.",
        serve.run,
    )
    _db(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 for every interface")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--username", help=f"basic-auth user (or ${serve.USERNAME_ENV})")
    p.add_argument("--password", help=f"basic-auth password (prefer ${serve.PASSWORD_ENV})")
    p.add_argument("--prefix", default="/", help="URL path to serve the dashboard under, e.g. /monitoring")
    p.add_argument("--retention", type=parse_duration, metavar="AGE", help="also delete calls older than AGE, hourly")
    p.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level",
    )

    p = _command(
        sub,
        "proxy",
        "run a monitoring reverse proxy in front of LLM APIs: every call forwarded is recorded",
        f"  {PROG} proxy https://api.openai.com --port 8001 --db llm_monitor.db\n"
        f"  {PROG} proxy http://127.0.0.1:11434 --port 8001 --db postgresql://monitor@db.internal/llm\n"
        f"  {PROG} proxy https://api.openai.com --route /anthropic=https://api.anthropic.com \\\n"
        f"      --dashboard-prefix /monitoring --username admin --password-env {serve.PASSWORD_ENV}\n\n"
        "Clients point their base URL at the proxy (http://127.0.0.1:8001/v1 for OpenAI SDKs); a --route prefix\n"
        "is stripped before forwarding (/anthropic/v1/messages -> https://api.anthropic.com/v1/messages).\n"
        "Requests under --dashboard-prefix are the dashboard's and are never forwarded. With --require-key-env\n"
        "clients must send that key as X-Proxy-Key (or Proxy-Authorization: Bearer); it is never forwarded.",
        proxy.run,
    )
    proxy.add_arguments(p)

    p = _command(
        sub,
        "demo",
        "run the demo: an app calling a bundled fake LLM server, with the dashboard at /monitoring/",
        f"  {PROG} demo\n  {PROG} demo --port 8001 --db demo.db\n  {PROG} demo --help     the demo's own options",
        commands.demo,
        add_help=False,
    )

    p = _command(
        sub,
        "prune",
        "delete calls older than an age, in short transactions that running apps barely notice",
        f"  {PROG} prune llm_monitor.db --older-than 30d --dry-run\n"
        f"  {PROG} prune llm_monitor.db --older-than 90d --vacuum\n"
        f"  {PROG} prune postgresql://monitor@db.internal/llm --older-than 30d\n\n"
        "Ages: a number and a unit, s, m, h, d or w (15m, 12h, 30d, 2w). Roll-up buckets (the dashboard's hourly\n"
        "and daily aggregates) that ended before the cutoff go too. Only calls the writer has already counted\n"
        "into the roll-ups and /metrics counters are deleted; older ones still waiting (an old database's\n"
        "backlog) are kept, counted, and reported. --dry-run counts exactly what the real run deletes. One prune\n"
        "runs at a time per database (another one, or an app's retention, makes this one exit with status 1).\n"
        "Without --vacuum a SQLite file keeps its size and SQLite reuses the freed pages; on PostgreSQL --vacuum\n"
        "runs a plain VACUUM (the space is reused, writers are not blocked).",
        commands.prune,
    )
    _db(p)
    p.add_argument("--older-than", type=parse_duration, required=True, metavar="AGE", help="e.g. 30d, 12h, 15m")
    p.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    p.add_argument(
        "--vacuum",
        action="store_true",
        help="then rewrite the file to give the space back (blocks writers while it runs; needs free disk space"
        " the size of the database)",
    )
    p.add_argument("--batch-size", type=int, default=2000, help=argparse.SUPPRESS)

    p = _command(
        sub,
        "backup",
        "copy a SQLite database consistently while apps keep writing to it (SQLite online backup)",
        f"  {PROG} backup llm_monitor.db /backups/llm_monitor-$(date +%F).db\n"
        f"  {PROG} backup llm_monitor.db - | gzip > llm_monitor.db.gz\n\n"
        "The copy is one self-contained file, checked with PRAGMA quick_check before it takes DEST's name.\n"
        "PostgreSQL databases are backed up with pg_dump (e.g. pg_dump --format=custom -f llm.dump URL).\n"
        f"{OUTPUT_RULES}",
        commands.backup,
    )
    _db(p)
    p.add_argument("dest", metavar="DEST", help="the backup file to write, - for stdout")
    p.add_argument("--force", action="store_true", help="overwrite DEST if it exists")

    p = _command(
        sub,
        "export",
        "export calls as CSV or JSON Lines, oldest first, streamed",
        f"  {PROG} export llm_monitor.db --since 7d -o last-week.csv\n"
        f"  {PROG} export llm_monitor.db --format jsonl --status error --since 2026-01-01 --until 2026-02-01\n"
        f"  {PROG} export llm_monitor.db --tag feature:chat --format jsonl | jq .cost_usd\n\n"
        "Times: ISO-8601 (2026-01-31T12:00:00Z; naive = UTC), Unix seconds, or an age back from now (7d, 12h).\n"
        "Prompt and response text is left out unless --content is given; API keys are never stored.\n"
        "CSV is spreadsheet-safe: RFC 4180 quoting, and text a spreadsheet would run as a formula (= + - @ |,\n"
        "also behind spaces, and their full-width forms) starts with a '.\n"
        f"{OUTPUT_RULES.replace('DEST', 'FILE')}",
        commands.export,
    )
    _db(p)
    p.add_argument("-o", "--output", default="-", metavar="FILE", help="output file, - for stdout")
    p.add_argument("--format", choices=FORMATS, help="csv or jsonl (default: from FILE's extension, else csv)")
    p.add_argument("--since", type=parse_moment, metavar="TIME", help="calls that started at or after TIME")
    p.add_argument("--until", type=parse_moment, metavar="TIME", help="calls that started before TIME")
    p.add_argument("--provider", help="e.g. openai, anthropic")
    p.add_argument("--model", help="e.g. gpt-4o-mini")
    p.add_argument("--status", choices=("ok", "error"), help="only successful or only failed calls")
    p.add_argument("--route", help="inbound route template, e.g. /chat/{chat_id}")
    p.add_argument("--user", help="attributed user")
    p.add_argument("--tag", metavar="KEY:VALUE", help="e.g. feature:chat")
    p.add_argument("--content", action="store_true", help="include request_content and response_content")

    p = _command(
        sub,
        "check",
        "print a database's health: schema version, rows, last call, size, WAL size, integrity",
        f"  {PROG} check llm_monitor.db\n  {PROG} check llm_monitor.db --json\n"
        f"  {PROG} check postgresql://monitor@db.internal/llm\n\n"
        "Opens the file read-only. Exit status 2 when it is missing, unreadable or fails PRAGMA quick_check.\n"
        "On PostgreSQL: server version, schema version, rows, first/last call and size (pg_total_relation_size).",
        commands.check,
    )
    _db(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = _command(
        sub,
        "reprice",
        "recompute stored costs with the current prices and overrides, dashboards and counters updated",
        f"  {PROG} reprice llm_monitor.db\n"
        f"  {PROG} reprice llm_monitor.db --since 7d --prices prices.json\n"
        f"  {PROG} reprice postgresql://monitor@db.internal/llm --since 2026-01-01 --update\n\n"
        f"{reprice.EPILOG}",
        reprice.run,
    )
    _db(p)
    reprice.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``llm-monitor`` with ``argv`` (default: the process's arguments); returns the exit status."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        args.passthrough = rest  # the demo parses its own options (and its own --help)
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.handler(args))
    except (UsageError, DatabaseFileError) as exc:
        return _fail(str(exc), 2)
    except (CommandFailed, DatabaseUnreachable) as exc:
        return _fail(str(exc), 1)
    except sqlite3.DatabaseError as exc:
        kind = "corrupt database" if "malformed" in str(exc) or "not a database" in str(exc) else "database error"
        return _fail(f"{kind}: {exc}", 2 if kind == "corrupt database" else 1)
    except _postgres_errors() as exc:  # messages from the server name no password
        return _fail(f"database error: {' '.join(str(exc).split())}", 1)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # e.g. `llm-monitor export db | head`
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130


def _postgres_errors() -> tuple[type[BaseException], ...]:
    psycopg = sys.modules.get("psycopg")  # imported only if a PostgreSQL URL was used
    return (psycopg.Error,) if psycopg is not None else ()


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status
