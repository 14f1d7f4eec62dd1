"""The demo app answers, and records its calls under the providers' real names with routes (uvicorn on loopback)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import uvicorn

from llm_monitor_mw.demo import build_app
from llm_monitor_mw.demo.main import new_demo, open_demo


def test_demo_app_records_calls(tmp_path: Path) -> None:
    with open_demo(str(tmp_path / "demo.db")) as (monitor, providers):
        demo = new_demo(monitor, providers)
        server = uvicorn.Server(uvicorn.Config(build_app(demo), host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        try:
            response = httpx.get(base + "/chat", params={"q": "hello"}, timeout=30)
            assert response.status_code == 200
            monitor.flush(5)
            data = httpx.get(base + "/monitoring/api/requests", timeout=30).json()
            assert data["total"] >= 1
            item = data["items"][0]
            assert item["provider"] in {"openai", "anthropic", "gcp.gemini", "ollama"}  # not 127.0.0.1:port
            assert item["route"] == "/chat" and item["trace_id"]
        finally:
            server.should_exit = True
            thread.join(10)
