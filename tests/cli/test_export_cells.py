"""``llm-monitor export``: hostile stored text and stored infinities come out spreadsheet-safe and as valid JSON."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from llm_monitor_mw.store.export import export
from tests.export_cases import (
    ALL_TEXT,
    HARMLESS_TEXT,
    HOSTILE_TEXT,
    check_csv_rows,
    check_json_rows,
    is_formula,
    records,
    store_non_finite,
    strict_json,
)

from .helpers import NOW, record, run, seed


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "m.db"
    seed(path, [record(NOW - i, **kw) for i, kw in enumerate(records())]).close()
    store_non_finite(path)
    return path


def _csv(raw: bytes) -> tuple[list[str], list[list[str]]]:
    header, *rows = csv.reader(io.StringIO(raw.decode("utf-8"), newline=""))
    return header, rows


def test_the_checks_can_fail() -> None:
    assert all(is_formula(text) for text in HOSTILE_TEXT[:20])
    assert not any(is_formula(text) for text in [*HARMLESS_TEXT, "ok\r=1+1", "'=1+1", "'\u00a0=1"])


def test_csv_file_is_one_record_per_call_and_never_a_formula(cli: Path, db: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls.csv"
    result = run(cli, "export", db, "-o", out)
    assert result.returncode == 0, result.stderr
    raw = out.read_bytes()
    assert raw.count(b"\r\n") >= len(ALL_TEXT) + 1  # RFC 4180 record ends
    header, rows = _csv(raw)
    check_csv_rows(rows, header)


def test_csv_to_stdout_is_the_same_bytes(cli: Path, db: Path, tmp_path: Path) -> None:
    import subprocess

    to_stdout = subprocess.run([str(cli), "export", str(db)], capture_output=True, timeout=60)
    assert to_stdout.returncode == 0, to_stdout.stderr
    out = tmp_path / "calls.csv"
    assert run(cli, "export", db, "-o", out).returncode == 0
    assert to_stdout.stdout == out.read_bytes()


def test_jsonl_has_one_call_per_line_and_no_infinity(cli: Path, db: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    result = run(cli, "export", db, "-o", out)
    assert result.returncode == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    assert "Infinity" not in text and "NaN" not in text
    lines = text.splitlines()  # splits at U+2028 and U+0085 too: they must be escaped
    assert len(lines) == len(ALL_TEXT)
    check_json_rows([strict_json(line) for line in lines])


def test_library_export_into_a_string(db: Path) -> None:
    buffer = io.StringIO(newline="")
    assert export(db, buffer, "csv") == len(ALL_TEXT)
    header, rows = _csv(buffer.getvalue().encode())
    check_csv_rows(rows, header)
