"""``llm-monitor serve``: the dashboard on a database file, as a real server process, with and without auth."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from llm_monitor_mw.cli import main
from llm_monitor_mw.cli.serve import is_loopback

from .helpers import NOW, assert_user_error, free_port, record, run, seed


@contextmanager
def server(cli: Path, *args: object, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``llm-monitor serve args...`` on a free loopback port; yields its base URL once it answers."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LLM_MONITOR_")} | (env or {})
    proc = subprocess.Popen(
        [str(cli), "serve", *map(str, args), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "m.db"
    seed(path, [record(NOW - 60 * i) for i in range(3)])
    return path


def test_basic_auth_from_the_environment(cli: Path, db: Path) -> None:
    with server(cli, db, "--username", "ops", env={"LLM_MONITOR_PASSWORD": "s3cret-pw"}) as (base, proc):
        denied = httpx.get(base + "/api/requests")
        assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Basic ")
        assert httpx.get(base + "/api/requests", auth=("ops", "wrong")).status_code == 401
        ok = httpx.get(base + "/api/requests", auth=("ops", "s3cret-pw"))
        assert ok.status_code == 200 and ok.json()["total"] == 3
        page = httpx.get(base + "/", auth=("ops", "s3cret-pw"))
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"serving {db} at {base}/ (basic auth)" in err and "WARNING" not in err and "s3cret-pw" not in err


def test_password_option_and_default_username(cli: Path, db: Path) -> None:
    with server(cli, db, "--password", "pw-on-argv") as (base, _):
        assert httpx.get(base + "/api/stats").status_code == 401
        assert httpx.get(base + "/api/stats", auth=("admin", "pw-on-argv")).status_code == 200


def test_open_on_loopback_without_a_warning(cli: Path, db: Path) -> None:
    with server(cli, db) as (base, proc):
        assert httpx.get(base + "/api/requests").json()["total"] == 3
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "(no auth)" in err and "WARNING" not in err


def test_prefix(cli: Path, db: Path) -> None:
    with server(cli, db, "--prefix", "/monitoring/") as (base, _):
        root = httpx.get(base + "/")
        assert root.status_code == 307 and root.headers["location"] == "/monitoring/"
        assert httpx.get(base + "/monitoring/api/requests").json()["total"] == 3
        page = httpx.get(base + "/monitoring/")
        assert page.status_code == 200 and 'href="/monitoring/' in page.text


def test_username_without_password_is_a_usage_error(cli: Path, db: Path) -> None:
    env = {"LLM_MONITOR_PASSWORD": ""}
    assert_user_error(run(cli, "serve", db, "--username", "ops", env=env), "LLM_MONITOR_PASSWORD")


def test_bad_prefix_is_a_usage_error(cli: Path, db: Path) -> None:
    assert_user_error(run(cli, "serve", db, "--prefix", "/a/../b"), "--prefix")


def test_loud_warning_when_open_beyond_loopback(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    calls: list[tuple[str, int]] = []

    def bound_but_not_served(self: uvicorn.Server, sockets: list[socket.socket]) -> None:
        calls.append(sockets[0].getsockname()[:2])
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", bound_but_not_served)  # bound on a free port, never served
    monkeypatch.delenv("LLM_MONITOR_PASSWORD", raising=False)
    assert main(["serve", str(db), "--host", "0.0.0.0", "--port", "0"]) == 0
    err = capsys.readouterr().err
    ((host, port),) = calls
    assert host == "0.0.0.0" and port > 0
    assert f"WARNING: llm-monitor is serving the dashboard WITHOUT AUTHENTICATION on 0.0.0.0:{port}" in err
    assert f"serving {db} at http://0.0.0.0:{port}/ (no auth)" in err
    monkeypatch.setenv("LLM_MONITOR_PASSWORD", "pw")
    assert main(["serve", str(db), "--host", "0.0.0.0", "--port", "0"]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_busy_port_fails_before_claiming_to_serve(cli: Path, db: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run(cli, "serve", db, "--port", port, timeout=30)
    assert time.monotonic() - started < 20
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stdout == "" and "serving" not in result.stderr and "Traceback" not in result.stderr
    assert result.stderr == (
        f"llm-monitor: error: cannot listen on 127.0.0.1:{port}: port {port} is already in use"
        " (stop what listens there, or choose another with --port)\n"
    )


def test_port_zero_serves_on_a_free_port_and_says_which(cli: Path, db: Path) -> None:
    proc = subprocess.Popen([str(cli), "serve", str(db), "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        while not lines or "serving" not in lines[-1]:  # after the app's own no-auth warning
            lines.append(proc.stderr.readline())
            assert lines[-1], lines  # EOF: it exited
        match = re.search(r"serving .* at http://127\.0\.0\.1:(\d+)/ \(no auth\)", lines[-1])
        assert match, lines
        assert httpx.get(f"http://127.0.0.1:{match[1]}/api/summary", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
