"""No API key, and no part of one beyond a public prefix and its last four characters, is kept anywhere.

Calls are made with the real openai, anthropic and google-genai SDKs (and Gemini's ``key=`` query parameter) with
content capture on; then every byte of the SQLite file and its ``-wal``/``-shm``, the log output (every logger, at
DEBUG), every export format of ``llm-monitor export`` (with and without content) and of the dashboard, a backup,
``/metrics``, every dashboard page and every API answer are searched for each key's secret part: any six
consecutive characters of it that are not all within its public prefix. On PostgreSQL, every column of every table
is read as text and searched the same way. The fingerprint secret itself is on no page, in no export, in no log.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import types
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture.keys import PUBLIC_PREFIXES
from llm_monitor_mw.cli.main import main as cli
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.store.export import FORMATS
from tests.conftest import records
from tests.httplibs import libs_for_anthropic, libs_for_openai

pytestmark = [pytest.mark.sdk, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

OPENAI_KEY = "sk-proj-SECRETq7ZKmR2xLp9VtY4nB8cW3dF6hJ1sA5eG0uI2oP7SECRETwxyz"
ANTHROPIC_KEY = "sk-ant-api03-SECRETt4kXq9Lm2Vb7Nc3Zr8Hs1Jd6Fg0Pw5YeSECRET1234"
GEMINI_KEY = "AIzaSECRETyD3fK8mQ2rT7vX1bN5cJ9hL4pW6SECRET9kq"
GEMINI_QUERY_KEY = "AIzaSECRETqM4nB7vC2xZ8lK5jH1gF3dS6aSECRETq0pz"
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY, GEMINI_QUERY_KEY)
WINDOW = 6


def forbidden(key: str) -> list[str]:
    """Every ``WINDOW``-character run of ``key`` but those inside its public prefix (and the key itself)."""
    prefix = next((p for p in PUBLIC_PREFIXES if key.startswith(p)), "")
    runs = {key[i : i + WINDOW] for i in range(len(key) - WINDOW + 1) if i + WINDOW > len(prefix)}
    return sorted(runs | {key, key[: len(prefix) + 1], key[-5:]})


FORBIDDEN = sorted({run for key in KEYS for run in forbidden(key)})


def assert_clean(where: str, data: str | bytes, secret_hex: str | None = None) -> None:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    leaked = [run for run in FORBIDDEN if run in text]
    assert not leaked, f"{where} holds key characters: {leaked[:5]}"
    if secret_hex is not None:
        assert secret_hex not in text and secret_hex.upper() not in text, f"{where} holds the fingerprint secret"


def make_calls(monitor: Monitor, server: FakeLLMServer) -> None:
    http = libs_for_openai()[0].Client(transport=monitor.transport())
    oa = openai.OpenAI(base_url=server.base_url + "/v1", api_key=OPENAI_KEY, http_client=http, max_retries=0)
    messages: list = [{"role": "user", "content": "a prompt, captured"}]
    oa.chat.completions.create(model="gpt-4o-mini", messages=messages)
    for _ in oa.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
        pass
    with pytest.raises(openai.AuthenticationError):
        oa.chat.completions.create(model="gpt-4o-mini", messages=messages, extra_headers={"x-fake-status": "401"})

    http2 = libs_for_anthropic()[0].Client(transport=monitor.transport())
    an = anthropic.Anthropic(base_url=server.base_url, api_key=ANTHROPIC_KEY, http_client=http2, max_retries=0)
    an.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=messages)
    with pytest.raises(anthropic.AuthenticationError):
        an.messages.create(
            model="claude-sonnet-4-5", max_tokens=16, messages=messages, extra_headers={"x-fake-status": "401"}
        )

    options = types.HttpOptions(
        base_url=server.base_url, api_version="v1beta", httpx_client=httpx.Client(transport=monitor.transport())
    )
    genai.Client(api_key=GEMINI_KEY, http_options=options).models.generate_content(
        model="gemini-2.5-flash", contents="a prompt, captured"
    )
    with httpx.Client(transport=monitor.transport()) as client:
        url = f"{server.base_url}/v1beta/models/gemini-2.5-flash:generateContent?key={GEMINI_QUERY_KEY}"
        client.post(url, json={"contents": [{"parts": [{"text": "hi"}]}]})
        client.post(url, json={"contents": []}, headers={"x-fake-status": "403"})
    assert len(records(monitor)) == 8


def log_text(records: Iterable[logging.LogRecord]) -> str:
    """Every log record as text, but httpx's own ``HTTP Request: POST <url>`` lines: the host's HTTP client logs
    the URLs it sends (so Gemini's ``key=`` query value) with or without the monitor; the monitor's logger and
    every other one (the SDKs' DEBUG output included) are searched."""
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {logging.Formatter().format(r)}"
        for r in records
        if not (r.name in ("httpx", "httpx2") and r.getMessage().startswith("HTTP Request: "))
    )


def secret_of(monitor: Monitor) -> str:
    rows = monitor.store.engine.connection().execute("SELECT value FROM llm_monitor_secrets").fetchall()
    assert len(rows) == 1
    return str(rows[0][0])


def dashboard_answers(monitor: Monitor) -> Iterable[tuple[str, str]]:
    """Every page, fragment, export and API answer of the dashboard, and ``/metrics``."""
    ids = [r["id"] for r in records(monitor)]
    paths = [
        "/",
        "/requests",
        "/costs",
        "/errors",
        "/traces",
        "/alerts",
        "/fragments/overview/kpis",
        "/fragments/overview/charts",
        "/fragments/overview/top",
        "/fragments/requests/table",
        "/fragments/costs/body",
        "/fragments/errors/body",
        "/requests.csv",
        "/requests.json",
        "/api/requests?limit=1000",
        "/api/summary",
        "/api/keys",
        "/api/traces",
        "/api/stats",
        "/metrics",
        "/health",
        *(f"/requests/{i}" for i in ids),
        *(f"/api/requests/{i}" for i in ids),
    ]
    with TestClient(monitor.asgi_app()) as tc:
        hint_seen = False
        for path in paths:
            answer = tc.get(path)
            assert answer.status_code in (200, 503), (path, answer.status_code)  # /health may be degraded
            hint_seen = hint_seen or "sk-proj-…wxyz" in answer.text
            yield path, answer.text
        fingerprinted = tc.get("/api/keys").json()["items"]
        assert len(fingerprinted) == 4 and hint_seen  # the keys are told apart, and shown as hints
        for item in fingerprinted:
            assert tc.get(f"/api/requests?key={item['key_fingerprint']}").json()["total"] >= 1


def _hear_every_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo what other libraries' imports did to logging (litellm quiets httpx's logger, some stop propagation,
    disable loggers or raise ``logging.disable``), so that every record reaches caplog."""
    monkeypatch.setattr(logging.root.manager, "disable", 0)
    for name in ("httpx", "httpcore", "llm_monitor_mw", "openai", "anthropic", "google_genai", "genai-prices"):
        logger = logging.getLogger(name)
        for attr, value in (("level", logging.DEBUG), ("propagate", True), ("disabled", False)):
            monkeypatch.setattr(logger, attr, value)
    logging.root.manager._clear_cache()


def test_sqlite_nothing_anywhere(
    tmp_path: Path,
    fake_llm: FakeLLMServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    _hear_every_logger(monkeypatch)
    db = tmp_path / "calls.db"
    monitor = Monitor(db, capture_content=True, flush_interval=0.05)
    try:
        make_calls(monitor, fake_llm)
        secret = secret_of(monitor)
        details = [monitor.store.queries.request(r["id"]) for r in records(monitor)]
        assert all(d and d["key_fingerprint"] and d["key_hint"] for d in details)
        assert any(d and d["request_content"] for d in details)  # content capture was on
        for name in (db.name, db.name + "-wal", db.name + "-shm"):
            if (tmp_path / name).exists():
                assert_clean(f"{name} (open)", (tmp_path / name).read_bytes())
        for path, text in dashboard_answers(monitor):
            assert_clean(path, text, secret)
    finally:
        monitor.close()
    for file in tmp_path.iterdir():  # the file and whatever -wal/-shm remain after close
        assert_clean(file.name, file.read_bytes())
    assert {"csv", "jsonl"} <= set(FORMATS)
    for fmt in FORMATS:
        for content in ((), ("--content",)):
            out = tmp_path / f"export.{fmt}"
            assert cli(["export", str(db), "-o", str(out), "--format", fmt, *content]) == 0
            exported = out.read_text()
            assert "sk-proj-…wxyz" in exported if content else True  # the hint is exported with --content
            assert_clean(f"export {fmt} {content}", exported, secret)
            out.unlink()
    backup = tmp_path / "backup.db"
    assert cli(["backup", str(db), str(backup)]) == 0
    assert_clean("backup", backup.read_bytes())  # the backup keeps the secret (and so its fingerprints): no key
    backup.unlink()
    captured = capsys.readouterr()
    assert_clean("stdout/stderr", captured.out + captured.err, secret)
    assert any(r.name == "httpx" for r in caplog.records)  # DEBUG logging was captured
    assert_clean("log records", log_text(caplog.records), secret)


def test_postgresql_nothing_in_any_column(
    pg_url: str, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    _hear_every_logger(monkeypatch)
    monitor = Monitor(pg_url, capture_content=True, flush_interval=0.05)
    try:
        make_calls(monitor, fake_llm)
        secret = secret_of(monitor)
        conn = monitor.store.engine.connection()
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        ).fetchall()
        assert len({t for t, _ in columns}) > 5
        dumped = io.StringIO()
        for table, column in columns:
            for (value,) in conn.execute(f'SELECT CAST("{column}" AS TEXT) FROM "{table}"').fetchall():
                if value is not None and table != "llm_monitor_secrets":
                    dumped.write(f"{table}.{column}={value}\n")
        assert "sk-proj-…wxyz" in dumped.getvalue()
        assert_clean("postgresql columns", dumped.getvalue(), secret)
        for path, text in dashboard_answers(monitor):
            assert_clean(path, text, secret)
        out = io.StringIO()
        from llm_monitor_mw.store.export import export_engine

        for fmt in FORMATS:
            export_engine(monitor.store.engine, out, fmt, content=True)
        assert_clean("postgresql exports", out.getvalue(), secret)
    finally:
        monitor.close()
    assert_clean("log records", log_text(caplog.records), secret)
