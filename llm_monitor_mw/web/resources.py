"""Where the templates and static files are: inside the package (wheel) or at the repo root (checkout)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> Path:
    """``llm_monitor_mw/<name>`` in an installed wheel, else ``<repo>/<name>`` in a source checkout."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"llm_monitor_mw: cannot find its {name}/ directory (looked beside {_PACKAGE})")
