#!/usr/bin/env python3
"""Run the demo from a fresh clone (needs only Python >= 3.11 and pip): makes ``.venv``, installs, starts.

The demo app calls the bundled fake LLM server through the real ``openai`` SDK and serves what the monitor
recorded at http://127.0.0.1:8000/monitoring/ — no API key needed. Extra arguments go to the demo
(``--port``, ``--db``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    env = ROOT / ".venv"
    python = env / ("Scripts" if os.name == "nt" else "bin") / "python"
    if not python.exists():
        venv.create(env, with_pip=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", ".[demo]"],
        cwd=ROOT,
        check=True,
    )
    sys.exit(subprocess.run([str(python), "-m", "llm_monitor_mw.demo", *sys.argv[1:]], cwd=ROOT).returncode)


if __name__ == "__main__":
    main()
