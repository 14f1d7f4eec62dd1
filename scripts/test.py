#!/usr/bin/env python3
"""Run the whole test suite from a fresh clone: needs only Python >= 3.11 and pip.

1. ``.venv``        — the package with the latest SDKs (``openai`` 3.x / ``anthropic`` 2.x on ``httpx2``), lint, then
                      every test.
2. ``.venv-legacy`` — the last ``httpx``-based SDK releases (``openai`` 2.x, ``anthropic`` 0.x); every test again.
                      (``httpx2`` is still installed there: ``genai-prices`` depends on it. That our own code runs
                      without it is tested in ``tests/capture/test_without_httpx2.py``.)

Both get psycopg 3 (the ``test`` extra): the PostgreSQL tests start a throwaway server from the PostgreSQL server
binaries (Debian's ``postgresql`` package) or use ``LLM_MONITOR_TEST_PG``; see ``tests/postgres_server.py``.

Extra arguments go to pytest (e.g. ``python scripts/test.py -k openai -x``). Exits non-zero on any failure,
including a pytest run that collected no tests (exit code 5).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVS = {
    ".venv": [".[test,httpx2,compression,postgres]"],
    ".venv-legacy": [".[test]", "openai>=2,<3", "anthropic<1"],
}


def bin_path(env: Path, name: str) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin") / name


def run(*cmd: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def prepare(name: str, requirements: list[str]) -> Path:
    env = ROOT / name
    if not bin_path(env, "python").exists():
        venv.create(env, with_pip=True)
    python = bin_path(env, "python")
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", *requirements)
    return python


def pytest(python: Path, label: str, args: list[str]) -> None:
    cmd = [str(python), "-m", "pytest", *args]
    print("+", " ".join(cmd), flush=True)
    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code == 5:
        sys.exit(f"{label}: pytest collected no tests")
    if code != 0:
        sys.exit(f"{label}: tests failed (pytest exit code {code})")


def main() -> None:
    if sys.version_info < (3, 11):
        sys.exit("llm-monitor-mw needs Python >= 3.11")
    args = sys.argv[1:]
    latest = prepare(".venv", ENVS[".venv"])
    run(latest, "-m", "ruff", "check", ".")
    run(latest, "-m", "ruff", "format", "--check", ".")
    pytest(latest, "latest SDKs (httpx2)", args)
    legacy = prepare(".venv-legacy", ENVS[".venv-legacy"])
    pytest(legacy, "legacy SDKs (httpx only)", args)
    print("all test runs passed")


if __name__ == "__main__":
    main()
