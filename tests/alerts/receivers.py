"""Real local receivers for notifications: a loopback HTTP server and an aiosmtpd SMTP server."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CERT, KEY = HERE / "smtp_cert.pem", HERE / "smtp_key.pem"  # self-signed for 127.0.0.1, valid until 2125


class HTTPReceiver:
    """A loopback HTTP server recording every POST. ``mode``: ``ok`` (204), ``fail`` (500) or ``hang`` (never
    answers until :meth:`release` or the server stops)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.arrived:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    receiver.arrived.notify_all()
                if receiver.mode == "hang":
                    receiver._release.wait(30)
                status = 500 if receiver.mode == "fail" else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> HTTPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        self._release.set()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``count`` requests arrived (or fail)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout), self.requests
            return list(self.requests)

    def json(self, index: int = 0) -> Any:
        return json.loads(self.requests[index]["body"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SMTPReceiver:
    """An aiosmtpd server on loopback collecting the messages it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []
        self.logins: list[tuple[str, str]] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd handler hook
        with self.arrived:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
            self.arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= count, timeout), self.messages


@contextmanager
def smtp_server(
    *, tls: bool = False, auth: Callable[[str, str], bool] | None = None
) -> Iterator[tuple[SMTPReceiver, int]]:
    """Run aiosmtpd on 127.0.0.1 (``tls``: offer STARTTLS and require it; ``auth``: require a login)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    receiver = SMTPReceiver()
    kwargs: dict[str, Any] = {}
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(CERT, KEY)
        kwargs.update(tls_context=context, require_starttls=True)
    if auth is not None:

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            if not isinstance(data, LoginPassword):
                return AuthResult(success=False, handled=False)
            user, password = data.login.decode(), data.password.decode()
            receiver.logins.append((user, password))
            return AuthResult(success=auth(user, password), handled=False, auth_data=data)

        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=tls)
    port = free_port()
    controller = Controller(receiver, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield receiver, port
    finally:
        controller.stop()


def client_tls_context() -> ssl.SSLContext:
    """A client context that trusts the test certificate."""
    return ssl.create_default_context(cafile=str(CERT))


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


class Trickler:
    """A loopback TCP server that answers every connection with ``payload``, one byte every ``interval`` seconds
    (an HTTP status line, an SMTP greeting…), never faster: each read a client makes gets a byte well within any
    per-read timeout, so only a total deadline ends the exchange early. ``tls``: speak TLS (the test certificate)."""

    def __init__(self, payload: bytes, interval: float = 0.2, *, tls: bool = False) -> None:
        self.payload = payload
        self.interval = interval
        self.connections = 0
        self.sent = 0
        self._stop = threading.Event()
        self._context: ssl.SSLContext | None = None
        if tls:
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._context.load_cert_chain(CERT, KEY)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            if self._context is not None:
                conn.settimeout(5)
                conn = self._context.wrap_socket(conn, server_side=True)
            for i in range(len(self.payload)):
                if self._stop.wait(self.interval):
                    return
                conn.sendall(self.payload[i : i + 1])
                self.sent += 1
        except OSError:
            return  # the client gave up: what the test wants
        finally:
            conn.close()

    def __enter__(self) -> Trickler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
