"""A TCP proxy on 127.0.0.1 that a test controls, standing between an instance and its PostgreSQL server: it
forwards (``up``), refuses (``down``: every open connection is cut and new ones are closed at once), swallows
(``blackhole``: connections are accepted and never answered, like a server behind a dropped route) or delays every
chunk it forwards by ``delay`` seconds (a slow network or an overloaded server)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` until told otherwise (see the module docstring)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "up"
        self.delay = 0.0
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def up(self) -> None:
        """Forward again (connections are new: the cut ones stay cut)."""
        self.mode = "up"

    def down(self) -> None:
        """Cut every connection; refuse new ones (accepted, then closed at once)."""
        self.mode = "down"
        self._cut()

    def blackhole(self) -> None:
        """Cut every connection; accept new ones and never answer them."""
        self.mode = "blackhole"
        self._cut()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _cut(self) -> None:
        with self._lock:
            sockets, self._open = list(self._open), set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._open.add(s)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.mode == "down":
                client.close()
                continue
            self._track(client)
            if self.mode == "blackhole":
                continue  # held open, never read from: the client waits for its own timeout
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._track(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                if self.mode != "up":
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
