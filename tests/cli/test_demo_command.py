"""``llm-monitor demo``: the README's demo (``llm_monitor_mw.demo``) started through the command."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx

from llm_monitor_mw.demo import DEFAULT_DB

from .helpers import free_port


def test_demo_serves_and_records_calls(cli: Path, tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "demo.db"
    proc = subprocess.Popen(
        [str(cli), "demo", "--port", str(port), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                reply = httpx.get(base + "/chat", params={"q": "hello"}, timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the demo did not start"
                time.sleep(0.2)
        assert reply.json() == {"reply": "Hello from the fake LLM."}
        while True:  # the writer flushes every 0.25 s
            data = httpx.get(base + "/monitoring/api/requests", timeout=10).json()
            if any(item["tags"].get("feature") == "chat" for item in data["items"]):
                break
            assert time.monotonic() < deadline, data
            time.sleep(0.2)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f"demo app:        http://127.0.0.1:{port}/chat?q=hello" in out
    assert f"database:        {db}" in out
    assert db.exists()


def test_the_readme_names_the_demo_database_the_demo_uses(cli: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    usage = re.search(r"llm-monitor demo \[--port (\d+)\] \[--db ([^\]]+)\]", readme)
    assert usage, "README: the `llm-monitor demo [--port N] [--db FILE]` line is gone"
    assert (int(usage[1]), usage[2]) == (8000, DEFAULT_DB)
    shown = subprocess.run([str(cli), "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert f"(default: {DEFAULT_DB})" in " ".join(shown.stdout.split()) and "(default: 8000)" in shown.stdout
