"""Running the fake LLM: :class:`FakeLLMServer` (uvicorn on a daemon thread, for tests and the demo) and the
command line (``python -m llm_monitor_mw.fake``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from .app import create_app
from .common import SimulatedDisconnect


class _QuietSimulatedDisconnects(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedDisconnect))


def _quiet_simulated_disconnects() -> None:
    """Keep uvicorn from logging a traceback for each deliberate ``disconnect``."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietSimulatedDisconnects) for f in logger.filters):
        logger.addFilter(_QuietSimulatedDisconnects())


class FakeLLMServer:
    """Runs create_app() under uvicorn on 127.0.0.1 (port 0 = free port) in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.app = create_app()
        self.requests_seen: list[dict[str, Any]] = self.app.state.requests_seen
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeLLMServer:
        """Start serving; returns once the server accepts connections."""
        if self._server is not None:
            return self
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        _quiet_simulated_disconnects()
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="fake-llm-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"fake LLM server failed to start on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError("fake LLM server did not start within 15s")
            time.sleep(0.005)
        self._server, self._thread = server, thread
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://{self.host}:{self.port}"
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=10)

    def reset(self) -> None:
        """Forget the requests seen and the ``x-fake-fail-times`` counters."""
        self.requests_seen.clear()
        with self.app.state.lock:
            self.app.state.fail_counters.clear()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None, *, prog: str = "python -m llm_monitor_mw.fake") -> int:
    """Serve the fake LLM until interrupted: ``python -m llm_monitor_mw.fake [--host H] [--port P | PORT]``
    (``python -m llm_monitor_mw.fake_llm`` too)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A local fake LLM server speaking the OpenAI, Anthropic, Gemini and Ollama wire formats, for"
        " tests, benchmarks and demos. Requests may steer it with x-fake-* headers (see the module's docstring).",
    )
    parser.add_argument("port_arg", nargs="?", type=int, metavar="PORT", help="TCP port (same as --port)")
    parser.add_argument("--port", type=int, default=None, help="TCP port; 0 picks a free one (default: 8700)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.port is not None and args.port_arg is not None and args.port != args.port_arg:
        parser.error("give the port once: PORT or --port")
    port = next((p for p in (args.port, args.port_arg) if p is not None), 8700)
    if not 0 <= port <= 65535:
        parser.error(f"port {port} is not between 0 and 65535")
    try:
        server = FakeLLMServer(host=args.host, port=port).start()
    except RuntimeError as exc:  # e.g. the port is taken (uvicorn has logged why)
        print(f"fake LLM: error: {exc}", file=sys.stderr)
        return 1
    print(f"fake LLM serving on {server.base_url} (Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    server.stop()
    return 0
