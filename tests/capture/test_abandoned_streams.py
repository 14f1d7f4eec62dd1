"""Responses the caller drops without closing are still recorded: at garbage collection, or at interpreter exit.

Real parts: the openai SDK (its ``Stream`` closes the response from a generator ``finally`` when it is collected)
and plain httpx/httpx2 responses, against the bundled fake server; exit is tested in a subprocess with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import openai
import pytest

from llm_monitor_mw import Monitor
from llm_monitor_mw.capture import open_calls
from llm_monitor_mw.fake_llm import FakeLLMServer
from tests.conftest import only_record, records
from tests.httplibs import lib_id, libs_for_openai

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
LIBS = libs_for_openai()
SLOW = {"x-fake-chunk-delay": "0.02", "x-fake-chunks": "20"}
IDLE = 0.25  # seconds the dropped stream sits unread before it is collected
DROPPED_NOTE = "response dropped by the caller without closing it (recorded at garbage collection)"
EXIT_NOTE = "response still open at exit, never closed by the caller (recorded at exit)"
ROOT = Path(__file__).resolve().parents[2]


def sync_client(lib: ModuleType, monitor: Monitor, server: FakeLLMServer) -> openai.OpenAI:
    http = lib.Client(transport=monitor.transport())
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)


def async_client(lib: ModuleType, monitor: Monitor, server: FakeLLMServer) -> openai.AsyncOpenAI:
    http = lib.AsyncClient(transport=monitor.async_transport())
    return openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)


def assert_dropped(row: dict[str, Any], read_ms: float, note: str = DROPPED_NOTE) -> None:
    """``read_ms``: from before the request to after the last read; the drop came ``IDLE`` seconds later."""
    assert row["error"] == note
    assert row["error_type"] is None and row["status_code"] == 200 and row["streamed"] is True
    # Ends at the last chunk read, not when it was collected.
    assert 0 < row["duration_ms"] <= read_ms, (row["duration_ms"], read_ms)
    assert row["ttlt_ms"] == pytest.approx(row["duration_ms"])


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_sdk_stream_dropped_after_break_is_recorded_at_collection(
    lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    client = sync_client(lib, monitor, fake_llm)
    started = time.perf_counter()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=SLOW)
    for _chunk in stream:
        break
    read_ms = (time.perf_counter() - started) * 1000
    time.sleep(IDLE)
    assert monitor.flush(timeout=10) and records(monitor) == []  # still open: nothing recorded yet
    del stream, _chunk
    gc.collect()  # the SDK's Stream is a reference cycle: only the collector frees it
    assert_dropped(only_record(monitor), read_ms)


def test_sdk_stream_closed_early_keeps_its_note(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_client(LIBS[0], monitor, fake_llm)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=SLOW)
    next(iter(stream))
    time.sleep(0.1)
    stream.close()
    row = only_record(monitor)
    assert row["error"] == "response closed by the caller before the end of the body"
    assert row["duration_ms"] >= 100  # a closed stream ends when it was closed


def test_plain_response_dropped_unclosed_is_recorded(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    # httpx only: httpx2's iter_raw() closes the response itself when the iterator is dropped.
    client = httpx.Client(transport=monitor.transport())
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    request = client.build_request("POST", fake_llm.base_url + "/v1/chat/completions", json=body, headers=SLOW)
    started = time.perf_counter()
    response = client.send(request, stream=True)
    chunks = response.iter_raw()
    next(chunks)
    next(chunks)
    read_ms = (time.perf_counter() - started) * 1000
    time.sleep(IDLE)
    del chunks, response
    gc.collect()  # httpx's Response and its BoundSyncStream form a cycle
    assert_dropped(only_record(monitor), read_ms)
    client.close()


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_response_never_read_is_recorded_at_header_time(
    lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    client = lib.Client(transport=monitor.transport())
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    started = time.perf_counter()
    response = client.send(
        client.build_request("POST", fake_llm.base_url + "/v1/chat/completions", json=body, headers=SLOW), stream=True
    )
    headers_ms = (time.perf_counter() - started) * 1000
    time.sleep(IDLE)
    del response
    gc.collect()
    row = only_record(monitor)
    assert row["error"] == DROPPED_NOTE and row["status_code"] == 200
    assert 0 < row["duration_ms"] <= headers_ms  # ends when the headers arrived: nothing was read after
    client.close()


@pytest.mark.parametrize("lib", LIBS, ids=lib_id)
def test_async_sdk_stream_dropped_after_break_is_recorded(
    lib: ModuleType, monitor: Monitor, fake_llm: FakeLLMServer
) -> None:
    async def main() -> float:
        client = async_client(lib, monitor, fake_llm)
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=SLOW
        )
        async for _chunk in stream:
            break
        read_ms = (time.perf_counter() - started) * 1000
        await asyncio.sleep(IDLE)
        del stream, _chunk
        gc.collect()  # asyncio then closes the SDK's async generator in a task of its own
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert monitor.flush(timeout=5) and len(records(monitor)) == 1  # before the loop ends
        await client.close()
        return read_ms

    read_ms = asyncio.run(main())
    assert_dropped(only_record(monitor), read_ms)


def test_async_sdk_stream_left_open_until_the_loop_ends(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    kept: list[Any] = []

    async def main() -> float:
        client = async_client(LIBS[0], monitor, fake_llm)
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=SLOW
        )
        async for _chunk in stream:
            break
        read_ms = (time.perf_counter() - started) * 1000
        kept.append(stream)  # still referenced: asyncio.run closes its generator when the loop shuts down
        await asyncio.sleep(IDLE)
        return read_ms

    read_ms = asyncio.run(main())
    assert_dropped(only_record(monitor), read_ms)


def test_async_plain_response_dropped_unclosed_is_recorded(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    async def main() -> float:
        async with httpx.AsyncClient(transport=monitor.async_transport()) as client:
            body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
            request = client.build_request("POST", fake_llm.base_url + "/v1/chat/completions", json=body, headers=SLOW)
            started = time.perf_counter()
            response = await client.send(request, stream=True)
            chunks = response.aiter_raw()
            await chunks.__anext__()
            read_ms = (time.perf_counter() - started) * 1000
            await asyncio.sleep(IDLE)
            await chunks.aclose()  # the iterator is closed, the response is not
            del chunks, response
            for _ in range(5):  # asyncio closes our dropped async generator in a task of its own
                await asyncio.sleep(0.01)
            gc.collect()
            return read_ms

    read_ms = asyncio.run(main())
    assert_dropped(only_record(monitor), read_ms)


# ---- at exit, in a subprocess -------------------------------------------------------------------------------

SCRIPT = """
import sys, time
import httpx, openai
from llm_monitor_mw import Monitor

db, base_url, earlier = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
monitor = Monitor(db)
client = openai.OpenAI(
    base_url=base_url + "/v1", api_key="sk-test", http_client=httpx.Client(transport=monitor.transport()),
    max_retries=0,
)
messages = [{"role": "user", "content": "Say hello"}]
if earlier:
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
started = time.perf_counter()
stream = client.chat.completions.create(
    model="gpt-4o-mini", messages=messages, stream=True,
    extra_headers={"x-fake-chunk-delay": "0.02", "x-fake-chunks": "200"},
)
for chunk in stream:
    break
print((time.perf_counter() - started) * 1000)  # how long the request and the one read took
time.sleep(IDLE)
# exits here: no stream.close(), no monitor.close()
"""


def run_script(tmp_path: Path, server: FakeLLMServer, earlier: bool) -> tuple[subprocess.CompletedProcess[str], Path]:
    db = tmp_path / "exit.db"
    script = textwrap.dedent(SCRIPT).replace("IDLE", repr(IDLE))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(db), server.base_url, "1" if earlier else "0"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired as exc:  # the hang of issue 9
        pytest.fail(f"the process did not exit within 20 s: {exc.stderr!r}")
    return proc, db


def stored(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM calls ORDER BY id")]


@pytest.mark.parametrize("earlier", [False, True], ids=["first-call", "after-a-complete-call"])
def test_exit_with_a_stream_left_open_records_it(tmp_path: Path, fake_llm: FakeLLMServer, earlier: bool) -> None:
    proc, db = run_script(tmp_path, fake_llm, earlier)
    assert proc.returncode == 0, proc.stderr
    assert "llm_monitor_mw" not in proc.stderr, proc.stderr  # (the SDK may complain about its own generators)
    rows = stored(db)
    assert len(rows) == (2 if earlier else 1), rows
    if earlier:
        assert rows[0]["streamed"] == 0 and rows[0]["error"] is None and rows[0]["status_code"] == 200
    last = rows[-1]
    assert last["error"] == EXIT_NOTE and last["streamed"] == 1 and last["status_code"] == 200
    read_ms = float(proc.stdout.strip())
    assert 0 < last["duration_ms"] <= read_ms, (last["duration_ms"], read_ms)  # the last read, not the exit


IN_FLIGHT_SCRIPT = """
import sys, threading, time
import httpx
from llm_monitor_mw import Monitor
from llm_monitor_mw.capture import open_calls

monitor = Monitor(sys.argv[1])
client = httpx.Client(transport=monitor.transport(), timeout=30)
body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}
call = lambda: client.post(sys.argv[2] + "/v1/chat/completions", json=body, headers={"x-fake-chunk-delay": "1.5"})
threading.Thread(target=call, daemon=True).start()
deadline = time.monotonic() + 10
while not open_calls._open and time.monotonic() < deadline:  # until the request has started
    time.sleep(0.005)
time.sleep(0.3)
# exits with the request still waiting for its answer on a daemon thread
"""


def test_exit_with_a_request_in_flight_records_it(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    db = tmp_path / "inflight.db"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(IN_FLIGHT_SCRIPT), str(db), fake_llm.base_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = stored(db)
    assert row["status_code"] is None and row["ok"] == 0
    assert row["error"] == "the process exited before the response arrived (recorded at exit)"
    assert 300 <= row["duration_ms"] < 1500  # until the exit, before the answer


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_never_records_the_parents_open_calls(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = httpx.Client(transport=monitor.transport())
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    before = set(open_calls._open)
    response = client.send(
        client.build_request("POST", fake_llm.base_url + "/v1/chat/completions", json=body, headers=SLOW), stream=True
    )
    (pending,) = open_calls._open - before
    # collect earlier tests' garbage here, where its finalisers can take the locks other threads hold: in the child
    # those threads are gone, and a finaliser waiting on one of their locks would hang it
    gc.collect()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the open call is neither collected nor finished at exit
        code = 1
        with contextlib.suppress(BaseException):
            sent: list[Any] = []
            pending.sink = sent.append
            del response
            gc.collect()
            open_calls.finish_all_at_exit()
            code = 0 if not sent else 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    response.close()  # the parent's own call is recorded, once
    assert only_record(monitor)["error"] == "response closed by the caller before the end of the body"
    client.close()
