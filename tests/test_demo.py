"""The demo app answers and records its calls (served by uvicorn on loopback)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import uvicorn

from llm_monitor_mw import Monitor
from llm_monitor_mw.demo import build_app
from llm_monitor_mw.fake import FakeLLMServer


def test_demo_app_records_calls(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    with Monitor(tmp_path / "demo.db") as monitor:
        server = uvicorn.Server(
            uvicorn.Config(build_app(monitor, fake_llm.base_url), host="127.0.0.1", port=0, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        try:
            assert httpx.get(base + "/chat", params={"q": "hello"}).json() == {"reply": "Hello from the fake LLM."}
            monitor.flush(5)
            data = httpx.get(base + "/monitoring/api/requests").json()
            assert data["total"] >= 1
            assert any(item["tags"].get("feature") == "chat" for item in data["items"])
        finally:
            server.should_exit = True
            thread.join(10)
