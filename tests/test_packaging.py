"""The wheel ships templates/ and static/ inside the package, installs in a fresh venv, imports and serves."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = out.glob("llm_monitor_mw-*.whl")
    return found


def test_wheel_contains_templates_and_static(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for path in ("templates", "static"):
        shipped = [n for n in names if n.startswith(f"llm_monitor_mw/{path}/")]
        on_disk = [p for p in (ROOT / path).rglob("*") if p.is_file()]
        assert len(shipped) == len(on_disk) > 0, (path, shipped)
    assert "llm_monitor_mw/fake_llm.py" in names
    for module in ("app", "server", "openai", "anthropic", "gemini", "ollama"):
        assert f"llm_monitor_mw/fake/{module}.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


@pytest.mark.timeout(600)
def test_wheel_installs_imports_and_serves(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / ("Scripts" if os.name == "nt" else "bin") / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel), "uvicorn"],
        check=True,
        timeout=600,
    )
    script = textwrap.dedent(
        """
        import threading, time, httpx, uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Mount
        import llm_monitor_mw
        from llm_monitor_mw import Monitor
        assert "site-packages" in llm_monitor_mw.__file__, llm_monitor_mw.__file__
        monitor = Monitor("served.db")
        app = Starlette(routes=[Mount("/monitoring", app=monitor.asgi_app())])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}/monitoring"
        page = httpx.get(base + "/")
        assert page.status_code == 200 and "/monitoring/static/style.css" in page.text, page.text
        assert httpx.get(base + "/static/style.css").status_code == 200
        assert httpx.get(base + "/api/requests").json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
        server.should_exit = True
        print("served ok")
        """
    )
    result = subprocess.run([str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "served ok" in result.stdout
