"""Where notifications go: a generic JSON webhook, a Slack incoming webhook, e-mail over SMTP.

A :class:`Channel` only knows how to send one event and raises when it cannot. The :class:`Dispatcher` gives each
channel its own daemon thread and bounded queue, so a failing or hanging channel delays nobody but itself: not the
app, not the evaluator, not the other channels. Failures are logged and counted (:meth:`Dispatcher.stats`).

A channel's ``timeout`` bounds the whole send, not each socket operation: a receiver that trickles its answer a
byte at a time would otherwise hold a send for as long as it likes. A :class:`Deadline` shuts the channel's socket
down when the time is up, which ends any read or write blocked on it (name resolution is the one step it cannot
cut short).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any

from .events import AlertEvent

logger = logging.getLogger("llm_monitor_mw")

DEFAULT_TIMEOUT = 5.0


class Deadline:
    """Bounds a blocking exchange over sockets by a total time: once ``timeout`` seconds have passed since
    ``__enter__``, every socket registered with :meth:`watch` is shut down (a blocked read or write then fails)
    and leaving the block raises :class:`TimeoutError`.

    ``with Deadline(5.0, "webhook") as deadline: ...; deadline.watch(lambda: conn.sock)``
    """

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout = timeout
        self.what = what
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[Callable[[], Any]] = []
        self._timer: threading.Timer | None = None
        self._started = 0.0

    def remaining(self) -> float:
        """Seconds left (at least a millisecond: a zero timeout would mean non-blocking sockets)."""
        return max(0.001, self.timeout - (time.monotonic() - self._started))

    def watch(self, sock: Callable[[], Any]) -> None:
        """Shut down ``sock()`` (read when the time is up, so a socket replaced by STARTTLS is the one shut down)."""
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def __enter__(self) -> Deadline:
        self._started = time.monotonic()
        self._timer = threading.Timer(self.timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.expired:
            raise TimeoutError(f"{self.what}: timed out after {self.timeout:g} s") from exc


def _shutdown(sock: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):  # already closed, detached by a TLS upgrade, never connected
        target = sock()
        if target is not None:
            target.shutdown(socket.SHUT_RDWR)


class Channel:
    """A notification target. Subclasses implement :meth:`send`, which raises on failure."""

    name: str = "channel"
    timeout: float = DEFAULT_TIMEOUT

    def send(self, event: AlertEvent) -> None:
        """Deliver ``event`` (blocking, at most about ``timeout`` seconds in all; raises on failure)."""
        raise NotImplementedError


def _watched_handlers(deadline: Deadline) -> list[urllib.request.BaseHandler]:
    """urllib handlers whose connections register their socket with ``deadline`` as soon as it is connected."""

    class HTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(lambda: self.sock)

    class HTTPSConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(lambda: self.sock)

    class HTTPHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(HTTPConnection, req)

    class HTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(HTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]

    return [HTTPHandler(), HTTPSHandler()]


class WebhookChannel(Channel):
    """POSTs each event as JSON (:meth:`AlertEvent.to_dict`) to ``url``; any non-2xx answer is a failure.

    Args:
        url: the endpoint (``http://`` or ``https://``).
        headers: extra request headers, e.g. ``{"Authorization": "Bearer ..."}``.
        timeout: seconds for the whole send (connecting, sending, reading the answer).
        name: shown in logs and stats.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        name: str | None = None,
    ) -> None:
        _check_url(url, "url")
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.name = name or "webhook"

    def payload(self, event: AlertEvent) -> dict[str, Any]:
        """The JSON body sent for ``event``."""
        return event.to_dict()

    def send(self, event: AlertEvent) -> None:
        body = json.dumps(self.payload(event), separators=(",", ":")).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.url, data=body, method="POST", headers={"Content-Type": "application/json", **self.headers}
        )
        with Deadline(self.timeout, self.name) as deadline:
            opener = urllib.request.build_opener(*_watched_handlers(deadline))  # proxies from the environment too
            with opener.open(request, timeout=deadline.remaining()) as response:
                response.read()
                if not 200 <= response.status < 300:
                    raise OSError(f"{self.name}: {self.url} answered HTTP {response.status}")

    def __repr__(self) -> str:  # never show the URL: webhook URLs are secrets
        return f"{type(self).__name__}(name={self.name!r})"


class SlackChannel(WebhookChannel):
    """A Slack incoming webhook (``https://hooks.slack.com/services/...``): ``text`` plus Block Kit ``blocks``."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, name: str | None = None) -> None:
        super().__init__(url, timeout=timeout, name=name or "slack")

    def payload(self, event: AlertEvent) -> dict[str, Any]:
        icon = {"fired": ":rotating_light:", "exceeded": ":no_entry:", "warning": ":warning:"}.get(
            event.event, ":white_check_mark:"
        )
        fields = [
            {"type": "mrkdwn", "text": f"*Severity*\n{_slack(event.severity)}"},
            {"type": "mrkdwn", "text": f"*Watching*\n{_slack(event.summary)}"},
        ]
        if event.value is not None:
            fields.append({"type": "mrkdwn", "text": f"*{_slack(event.metric)}*\n{event.value:.4g}"})
        if event.threshold is not None:
            fields.append({"type": "mrkdwn", "text": f"*Threshold*\n{event.threshold:.4g}"})
        return {
            "text": f"{icon} {event.text}",  # shown in notifications and where blocks are not rendered
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": f"{event.title}"[:150]}},
                {"type": "section", "fields": fields},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack(event.text)}]},
            ],
        }


class EmailChannel(Channel):
    """Sends each event as a plain-text e-mail over SMTP.

    Args:
        host, port: the SMTP server.
        sender: the ``From`` address.
        to: one address or a list.
        username, password: log in (after STARTTLS when ``starttls``) when given.
        starttls: upgrade the connection with STARTTLS (port 587); ``ssl``: connect over TLS (port 465).
        ssl_context: for both (default: the system's trust store).
        timeout: seconds for the whole send (connecting, TLS, login, the message).
    """

    def __init__(
        self,
        host: str,
        *,
        sender: str,
        to: str | Sequence[str],
        port: int = 25,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        ssl: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        name: str | None = None,
    ) -> None:
        recipients = [to] if isinstance(to, str) else list(to)
        if not host:
            raise ValueError("email channel: host: required")
        if not sender or "@" not in sender:
            raise ValueError(f"email channel: sender: expected an e-mail address, got {sender!r}")
        if not recipients or not all(isinstance(r, str) and "@" in r for r in recipients):
            raise ValueError(f"email channel: to: expected one or more e-mail addresses, got {to!r}")
        if starttls and ssl:
            raise ValueError("email channel: starttls and ssl: choose one")
        if (username is None) != (password is None):
            raise ValueError("email channel: username and password: give both or neither")
        self.host, self.port, self.sender, self.to = host, port, sender, recipients
        self.username, self.password = username, password
        self.starttls, self.use_ssl, self.ssl_context = starttls, ssl, ssl_context
        self.timeout = timeout
        self.name = name or "email"

    def message(self, event: AlertEvent) -> EmailMessage:
        """The e-mail sent for ``event``."""
        message = EmailMessage()
        message["Subject"] = event.title
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message.set_content(event.text + "\n\n" + json.dumps(event.to_dict(), indent=2) + "\n")
        return message

    def send(self, event: AlertEvent) -> None:
        context = self.ssl_context or ssl.create_default_context()
        with Deadline(self.timeout, self.name) as deadline:
            smtp: smtplib.SMTP
            if self.use_ssl:
                smtp = smtplib.SMTP_SSL(timeout=deadline.remaining(), context=context)
            else:
                smtp = smtplib.SMTP(timeout=deadline.remaining())
            # connect() here, not in the constructor, so the greeting is read under the deadline too; the
            # constructor would have remembered the host for TLS certificate checks, so that is done here
            smtp._host = self.host  # type: ignore[attr-defined]
            deadline.watch(lambda: getattr(smtp, "sock", None))
            try:
                smtp.connect(self.host, self.port)
                if self.starttls:
                    smtp.starttls(context=context)
                if self.username is not None and self.password is not None:
                    smtp.login(self.username, self.password)
                smtp.send_message(self.message(event))
                with contextlib.suppress(smtplib.SMTPServerDisconnected, OSError):
                    smtp.quit()
            finally:
                smtp.close()

    def __repr__(self) -> str:
        return f"EmailChannel(name={self.name!r}, host={self.host!r}, port={self.port})"


def channel_from_dict(data: Mapping[str, Any]) -> Channel:
    """A channel from a config table: ``type`` is ``webhook``, ``slack`` or ``email``; secrets may be read from
    the environment with ``url_env`` / ``password_env`` instead of ``url`` / ``password``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"channel: expected a table, got {data!r}")
    options = dict(data)
    kind = options.pop("type", None)
    where = f"channel {options.get('name', kind)!r}"
    for secret in ("url", "password"):
        env_key = options.pop(f"{secret}_env", None)
        if env_key is not None:
            if secret in options:
                raise ValueError(f"{where}: {secret}_env: give {secret} or {secret}_env, not both")
            if env_key not in os.environ:
                raise ValueError(f"{where}: {secret}_env: environment variable {env_key} is not set")
            options[secret] = os.environ[env_key]
    allowed = {
        "webhook": ({"url"}, {"headers", "timeout", "name"}),
        "slack": ({"url"}, {"timeout", "name"}),
        "email": ({"host", "sender", "to"}, {"port", "username", "password", "starttls", "ssl", "timeout", "name"}),
    }
    if kind not in allowed:
        raise ValueError(f"{where}: type: expected one of webhook, slack, email, got {kind!r}")
    required, optional = allowed[kind]
    for key in options:
        if key not in required | optional:
            raise ValueError(f"{where}: {key}: unknown field for a {kind} channel")
    for key in required:
        if key not in options:
            raise ValueError(f"{where}: {key}: required field is missing")
    if kind == "webhook":
        return WebhookChannel(**options)
    if kind == "slack":
        return SlackChannel(**options)
    return EmailChannel(**options)


def _check_url(url: object, field_name: str) -> None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"{field_name}: expected an http:// or https:// URL")


def _slack(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Worker:
    """One channel's queue, thread and counters."""

    def __init__(self, channel: Channel, max_queue: int) -> None:
        self.channel = channel
        self.max_queue = max_queue
        self.queue: deque[AlertEvent] = deque()
        self.cond = threading.Condition()
        self.busy = False
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()
        self.sent = self.failed = self.dropped = 0
        self.last_error: str | None = None
        self.last_sent_at: float | None = None

    def put(self, event: AlertEvent) -> None:
        with self.cond:
            if self.pid != os.getpid():  # forked: the parent's thread is not ours
                self.pid, self.thread, self.busy = os.getpid(), None, False
                self.queue.clear()
            if len(self.queue) >= self.max_queue:
                self.dropped += 1
                logger.warning(
                    "llm_monitor_mw: alert channel %s is backed up; dropped %s", self.channel.name, event.title
                )
                return
            self.queue.append(event)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._run, name=f"llm-monitor-alerts-{self.channel.name}", daemon=True
                )
                self.thread.start()
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    if not self.cond.wait(timeout=60.0) and not self.queue:  # idle: put() starts a new one
                        self.thread = None
                        return
                event = self.queue.popleft()
                self.busy = True
            try:
                self.channel.send(event)
            except Exception as exc:
                self.failed += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "llm_monitor_mw: alert channel %s failed to send %s: %r", self.channel.name, event.title, exc
                )
            else:
                self.sent += 1
                self.last_sent_at = time.time()
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def wait_idle(self, deadline: float) -> bool:
        with self.cond:
            while self.queue or self.busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True


class Dispatcher:
    """Sends events to every channel, each from its own daemon thread with a bounded queue."""

    def __init__(self, *, max_queue: int = 1000) -> None:
        self.max_queue = max_queue
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    def add(self, channel: Channel) -> None:
        """Send future events to ``channel`` too."""
        if not isinstance(channel, Channel):
            raise TypeError(f"expected a Channel (WebhookChannel, SlackChannel, EmailChannel), got {channel!r}")
        with self._lock:
            self._workers = [*self._workers, _Worker(channel, self.max_queue)]

    @property
    def channels(self) -> list[Channel]:
        return [w.channel for w in self._workers]

    def dispatch(self, event: AlertEvent) -> None:
        """Queue ``event`` for every channel; never blocks, never raises."""
        for worker in self._workers:
            try:
                worker.put(event)
            except Exception:  # pragma: no cover - defensive: a thread that cannot start
                worker.failed += 1
                logger.exception("llm_monitor_mw: could not queue an alert for %s", worker.channel.name)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was sent or failed; ``False`` if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        return all(worker.wait_idle(deadline) for worker in self._workers)

    def stats(self) -> list[dict[str, Any]]:
        """Per channel: name, type, sent, failed, dropped, queued, last_error, last_sent_at."""
        return [
            {
                "name": w.channel.name,
                "type": type(w.channel).__name__,
                "sent": w.sent,
                "failed": w.failed,
                "dropped": w.dropped,
                "queued": len(w.queue),
                "last_error": w.last_error,
                "last_sent_at": w.last_sent_at,
            }
            for w in self._workers
        ]
