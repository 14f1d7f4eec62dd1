"""OpenTelemetry stays optional: never imported unless asked for, a clear error when missing, no cost when off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest

from llm_monitor_mw import CallRecord, Monitor
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.httplibs import libs_for_openai
from tests.otel.conftest import OTel

MESSAGES: list = [{"role": "user", "content": "Say hello"}]


def chat(monitor: Monitor, server: FakeLLMServer) -> None:
    http = libs_for_openai()[0].Client(transport=monitor.transport())
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-test", http_client=http)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_importing_the_package_does_not_import_opentelemetry(tmp_path: Path) -> None:
    code = (
        "import sys, llm_monitor_mw\n"
        "m = llm_monitor_mw.Monitor(sys.argv[1]); m.transport(); m.async_transport(); m.close()\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'opentelemetry'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "calls.db")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch, monitor: Monitor) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "llm_monitor_mw.otel", raising=False)
    gates = monitor.hooks.gates
    with pytest.raises(ImportError, match=r'pip install "llm-monitor-mw\[otel\]"'):
        monitor.enable_otel()
    assert monitor.hooks.gates == gates and monitor._otel is None  # nothing half-attached
    monitor.disable_otel()  # still harmless


def test_without_otel_calls_carry_no_context(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    seen: list[CallRecord] = []
    monitor.add_listener(seen.append)
    assert monitor.hooks.gates == ()  # nothing extra runs on the caller's path
    chat(monitor, fake_llm)
    assert monitor.flush(timeout=10)
    [record] = seen
    assert record.trace_context is None


def test_context_travels_on_the_record_but_is_never_data(otel: OTel, monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    seen: list[CallRecord] = []
    monitor.add_listener(seen.append)
    with otel.tracer_provider.get_tracer("app").start_as_current_span("outer"):
        chat(monitor, fake_llm)
    assert monitor.flush(timeout=10)
    [record] = seen
    assert record.trace_context is not None  # the caller's OpenTelemetry Context, holding the outer span
    data = record.to_dict()  # the context (and its live span) is neither copied nor exposed
    assert "trace_context" not in data and data["model"] == "gpt-4o-mini"
    assert "trace_context" not in repr(record)
