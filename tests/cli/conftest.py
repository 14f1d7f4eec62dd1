"""The installed ``llm-monitor`` entry point, which every CLI test runs as a subprocess."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cli() -> Path:
    """The console script that ``pip install`` made for this interpreter's environment."""
    script = Path(sys.executable).parent / ("llm-monitor.exe" if os.name == "nt" else "llm-monitor")
    assert script.exists(), f"{script} missing: run `pip install -e .` so the llm-monitor entry point is installed"
    return script
