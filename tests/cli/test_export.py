"""``llm-monitor export``: CSV and JSON Lines round trips, filters, content only on request, streaming."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from .helpers import DAY, HOUR, NOW, assert_user_error, record, run, schema_v1_database, seed

T0 = NOW - 3 * DAY


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "m.db"
    seed(
        path,
        [
            record(T0, tags={"feature": "chat"}, user="alice", request_content="secret plan", cost_usd=0.5),
            record(T0 + HOUR, provider="anthropic", request_model="claude-haiku-4-5", user="bob"),
            record(
                T0 + 2 * HOUR,
                status_code=429,
                error_type="rate_limit_error",
                error="=HYPERLINK(1)",
                tags={"feature": "search"},
            ),
            record(NOW - HOUR, tags={"feature": "chat"}, route="/chat/{id}", streamed=True, ttft_ms=80.5),
        ],
    )
    return path


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_csv_to_stdout_round_trip(cli: Path, db: Path) -> None:
    result = run(cli, "export", db)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "exported 4 calls as csv to stdout\n"
    rows = _csv(result.stdout)
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]  # oldest first
    first = rows[0]
    assert first["started_at"] == iso(T0) and first["provider"] == "openai" and first["model"] == "gpt-4o-mini"
    assert json.loads(first["tags"]) == {"feature": "chat"} and first["user"] == "alice"
    assert first["ok"] == "True" and first["cost_usd"] == "0.5" and first["input_tokens"] == "10"
    assert first["error"] == "" and first["ttft_ms"] == ""  # NULL is an empty cell
    assert rows[2]["error"] == "'=HYPERLINK(1)"  # not run as a formula by spreadsheets
    assert rows[3]["streamed"] == "True" and float(rows[3]["ttft_ms"]) == 80.5 and rows[3]["route"] == "/chat/{id}"
    assert "request_content" not in first and "secret plan" not in result.stdout


def test_jsonl_round_trip_with_content(cli: Path, db: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"  # the format follows the extension
    result = run(cli, "export", db, "-o", out, "--content")
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"exported 4 calls as jsonl to {out}\n"
    rows = _jsonl(out.read_text())
    assert rows[0]["request_content"] == "secret plan" and rows[0]["response_content"] is None
    assert rows[0]["tags"] == {"feature": "chat"} and rows[0]["ok"] is True and rows[0]["started_at"] == iso(T0)
    assert rows[2]["error"] == "=HYPERLINK(1)" and rows[2]["ok"] is False and rows[2]["status_code"] == 429
    assert rows[1]["provider"] == "anthropic" and rows[1]["ttft_ms"] is None
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("m.db")] == ["calls.jsonl"]  # no temp file


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        (["--since", "2h"], [4]),
        (["--until", "1d"], [1, 2, 3]),
        (["--since", iso(T0 + HOUR), "--until", iso(T0 + 2 * HOUR)], [2]),
        (["--since", str(T0 + 1)], [2, 3, 4]),
        (["--provider", "anthropic"], [2]),
        (["--model", "gpt-4o-mini", "--status", "ok"], [1, 4]),
        (["--status", "error"], [3]),
        (["--tag", "feature:chat"], [1, 4]),
        (["--user", "bob"], [2]),
        (["--route", "/chat/{id}"], [4]),
        (["--provider", "nobody"], []),
    ],
)
def test_filters(cli: Path, db: Path, args: list[str], ids: list[int]) -> None:
    result = run(cli, "export", db, "--format", "jsonl", *args)
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in _jsonl(result.stdout)] == ids


def test_empty_csv_still_has_its_header(cli: Path, db: Path) -> None:
    result = run(cli, "export", db, "--provider", "nobody")
    assert (
        result.returncode == 0
        and result.stdout.startswith("id,started_at,provider,")
        and result.stdout.count("\n") == 1
    )


def test_bad_filters_are_usage_errors(cli: Path, db: Path, tmp_path: Path) -> None:
    assert_user_error(run(cli, "export", db, "--tag", "feature"), "key:value")
    assert_user_error(run(cli, "export", db, "--since", "1h", "--until", "2h"), "--since must be before --until")
    bad = run(cli, "export", db, "--since", "yesterday")
    assert bad.returncode == 2 and "argument --since" in bad.stderr and "ISO-8601" in bad.stderr
    assert_user_error(run(cli, "export", db, "-o", tmp_path / "nope" / "x.csv"), "no such directory")


def test_older_schema_exports_the_columns_it_has(cli: Path, tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    schema_v1_database(path)
    result = run(cli, "export", path)
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split(",")
    assert "provider" in header and "route" not in header and "user" not in header


def test_closed_pipe_ends_quietly(cli: Path, db: Path) -> None:
    proc = subprocess.Popen([str(cli), "export", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"id,")
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err


def test_export_streams_instead_of_loading_everything(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    seed(path, [record(NOW - i, error="x" * 1000) for i in range(40_000)], rollups=False).close()  # ~40 MB of text
    code = textwrap.dedent(
        f"""
        import os, resource
        from llm_monitor_mw.store.export import export
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with open(os.devnull, "w") as out:
            n = export({str(path)!r}, out, "jsonl")
        print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows, grown_kib = map(int, result.stdout.split())
    assert rows == 40_000 and grown_kib < 15_000, grown_kib  # far below the ~40 MB a full load would take
