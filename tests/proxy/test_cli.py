"""``llm-monitor proxy`` as a real process: options wired through, records written, usage errors."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import pytest

from llm_monitor_mw.fake_llm import FakeLLMServer

CLI = Path(sys.executable).parent / "llm-monitor"


def clean_env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LLM_MONITOR_")} | extra


def wait_for_port(proc: subprocess.Popen[str], seen: list[str]) -> int:
    """The port the proxy says it serves on (read from its stderr, which a thread keeps draining)."""
    found = threading.Event()
    port: list[int] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            match = re.search(r"proxy on http://127\.0\.0\.1:(\d+)", line)
            if match:
                port.append(int(match.group(1)))
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    assert found.wait(30), f"the proxy did not start: {seen}"
    return port[0]


def test_proxy_command_end_to_end(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    db = tmp_path / "proxy.db"
    env = clean_env(PROXY_KEY="k-123", DASH_PW="pw-456")
    args = [fake_llm.base_url, "--port", "0", "--db", db, "--user-header", "X-User", "--tag-header", "X-Feature=feat"]
    args += ["--require-key-env", "PROXY_KEY", "--username", "ops", "--password-env", "DASH_PW"]
    proc = subprocess.Popen(
        [str(CLI), "proxy", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    seen: list[str] = []
    try:
        base = f"http://127.0.0.1:{wait_for_port(proc, seen)}"
        headers = {"X-Proxy-Key": "k-123", "X-User": "carol", "X-Feature": "search"}
        client = openai.OpenAI(base_url=base + "/v1", api_key="sk-x", default_headers=headers, max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Hello from the fake LLM."
        refused = httpx.post(base + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []})
        assert refused.status_code == 401
        assert httpx.get(base + "/monitoring/").status_code == 401
        assert httpx.get(base + "/monitoring/", auth=("ops", "pw-456")).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(20) == 0, seen
    assert "k-123" not in "".join(seen) and "pw-456" not in "".join(seen)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT user, tags, model, output_tokens FROM calls").fetchall()
    assert len(rows) == 1
    user, tags, model, output_tokens = rows[0]
    assert (user, model, output_tokens) == ("carol", "gpt-4o-mini", 5)
    assert '"feat":"search"' in tags.replace(" ", "") and '"client":"127.0.0.1"' in tags.replace(" ", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give an UPSTREAM URL"),
        (["ftp://x"], "http:// or https://"),
        (["http://x", "--route", "anthropic"], "PREFIX=URL"),
        (["http://x", "--username", "admin"], "needs a password"),
        (["http://x", "--require-key-env", "NO_SUCH_VARIABLE_HERE"], "not set"),
        (["http://x", "--dashboard-prefix", "/"], "dashboard prefix"),
        (["http://x", "--route", "/monitoring/a=http://y"], "under the dashboard prefix"),
        (["http://x", "--tag-header", "X-A=user"], "tag name"),
        (["http://x", "--port", "70000"], "between 0 and 65535"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [str(CLI), "proxy", *args, "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert done.returncode == 2, done
    assert done.stderr.startswith("llm-monitor: error:") and message in done.stderr, done.stderr
    assert not (tmp_path / "x.db").exists()  # nothing created before the options are checked
