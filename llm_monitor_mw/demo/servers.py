"""``python -m llm_monitor_mw.demo.servers``: the demo's fake providers in a process of their own (so that their
work runs beside the demo's, on another core); prints ``{"provider": port, ...}`` as one JSON line once they serve,
and serves until stdin closes (the demo's end, however it ends)."""

from __future__ import annotations

import json
import sys

from ..fake import FakeLLMServer
from .providers import PROVIDERS


def main() -> None:
    """Start one fake server per provider, print their ports, serve until stdin closes."""
    servers = {name: FakeLLMServer().start() for name in PROVIDERS}
    print(json.dumps({name: s.port for name, s in servers.items()}), flush=True)
    sys.stdin.read()
    for server in servers.values():
        server.stop()


if __name__ == "__main__":
    main()
