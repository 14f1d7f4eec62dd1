"""The forwarding app: one inbound request, one upstream request, both bodies streamed chunk by chunk.

The upstream request goes through an ``httpx.AsyncClient`` on the monitor's capture transport, so every LLM call
is recorded exactly as in-process capture records it. The request body is read from ASGI ``receive`` as it
arrives and handed to httpx as a stream; the response's raw bytes (still content-encoded) are sent to the client
as they arrive. Status, headers and bodies pass through unchanged (hop-by-hop headers aside, see
:mod:`.headers`); only failures the upstream cannot answer are the proxy's own: 502 (unreachable, broken before
the headers), 504 (timed out), 401 (proxy key), 404 (no route), each with a JSON body in the OpenAI/Anthropic
error shape ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextvars import ContextVar
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import quote

import anyio
import httpx
from starlette.types import Receive, Scope, Send

from ..capture.pending import ABANDONED, SCAN_BYTES, PendingCall
from ..capture.retries import Attempt, RetryGrouper
from ..capture.transport import CallRefused
from ..context import current_tags
from ..hooks import Hooks
from .config import MAX_ATTRIBUTION_CHARS, PROXY_KEY_HEADER, ProxyConfig
from .headers import request_headers, response_headers

logger = logging.getLogger("llm_monitor_mw")

USER_SCOPE_KEY = "llm_monitor_mw.proxy.user"
"""Where the forwarding app leaves the user header's value for the attribution middleware's resolver."""

_PROXY_KEY = PROXY_KEY_HEADER.encode("ascii")
_PROXY_AUTHORIZATION = b"proxy-authorization"
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_USER_AGENT = b"user-agent"


class _NoCookies(CookieJar):
    """A cookie jar that keeps nothing: a proxy must not collect one client's cookies for the next."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class _ClientGone(Exception):
    """The client hung up while its request body was being forwarded."""


class _Exchange:
    """One request in flight: the capture's pending call (if it is an LLM call) and the request body kept for it."""

    __slots__ = ("kept", "limit", "overflow", "pending", "size", "tail", "upload_done")

    def __init__(self, limit: int) -> None:
        self.pending: PendingCall | None = None
        self.limit = limit
        self.kept: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.tail = b""
        self.upload_done = False

    def keep(self, chunk: bytes) -> None:
        """Keep a request body chunk (by reference) for the record: up to ``limit`` bytes, then a bounded tail."""
        if not self.overflow and self.size + len(chunk) <= self.limit:
            self.kept.append(chunk)
            self.size += len(chunk)
            return
        self.overflow = True
        self.tail = (self.tail + chunk[-SCAN_BYTES:])[-SCAN_BYTES:]

    def publish(self) -> None:
        """Give the whole body (or its first and last bytes) to the pending call, read on the writer thread.

        The transport could not read a streamed request body when the call began; the record's model, stream flag
        and captured prompt come from it once the upload is complete.
        """
        pending = self.pending
        if pending is None or pending.done:
            return
        body = b"".join(self.kept)
        pending.req_body = body[:SCAN_BYTES] + self.tail if self.overflow else body


_exchange: ContextVar[_Exchange | None] = ContextVar("llm_monitor_mw_proxy_exchange", default=None)


def _claim(pending: PendingCall) -> None:
    """A gate: hands the pending call the transport just started to the request being forwarded in this context."""
    exchange = _exchange.get()
    if exchange is not None and exchange.pending is None:
        exchange.pending = pending


def error_response(status: int, code: str, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of one of the proxy's own JSON errors."""
    body = json.dumps({"error": {"message": message, "type": "llm_monitor_proxy_error", "code": code}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
    return status, headers, body


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    status, headers, body = error_response(status, code, message)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RetryLineage:
    """Carries a client's last failed attempt from one inbound request to the next, so that an SDK's retries sent
    through the proxy (each a new inbound request, so a new context) still join their call.

    The retry rule itself is :class:`~llm_monitor_mw.capture.retries.RetryGrouper`'s, applied as if the client's
    requests were made in one context: a client is its address and ``User-Agent``. Only failed attempts are kept
    (a retry follows a failure), at most :data:`MAX_CLIENTS` of them, oldest dropped first; a success forgets its
    call. A client sending several calls at once whose attempts fail together may see a retry joined to the wrong
    one of them (the SDK's ``x-stainless-retry-count`` does not say which).
    """

    MAX_CLIENTS = 4096

    def __init__(self, retries: RetryGrouper | None) -> None:
        self.retries = retries
        self._failed: OrderedDict[tuple[str, bytes], Attempt] = OrderedDict()

    def enter(self, scope: Scope, user_agent: bytes | None) -> tuple[str, bytes] | None:
        """Before forwarding: resume this client's last failed attempt in this request's context."""
        if self.retries is None:
            return None
        peer = scope.get("client")
        client = (str(peer[0]) if peer else "", user_agent or b"")
        self.retries.resume(self._failed.get(client))
        return client

    def leave(self, client: tuple[str, bytes] | None) -> None:
        """After forwarding: remember the attempt if it failed, forget its call if it did not."""
        if self.retries is None or client is None:
            return
        attempt = self.retries.last()
        if attempt is None:
            return
        if attempt.failed_at is not None:
            self._failed[client] = attempt
            self._failed.move_to_end(client)
            while len(self._failed) > self.MAX_CLIENTS:
                self._failed.popitem(last=False)
        else:
            kept = self._failed.get(client)
            if kept is not None and kept.call_id == attempt.call_id:
                del self._failed[client]


class ForwardingApp:
    """Pure ASGI app forwarding every http request to the upstream its path routes to.

    Args:
        config: routes, attribution headers, the proxy key, timeouts.
        transport: the monitor's capture transport (``monitor.async_transport(inner)``).
        hooks: the monitor's hooks; a gate is added to tie each captured call to its inbound request.
    """

    def __init__(self, config: ProxyConfig, transport: httpx.AsyncBaseTransport, hooks: Hooks) -> None:
        self.config = config
        self.hooks = hooks
        self.client = httpx.AsyncClient(
            transport=transport,
            trust_env=False,  # environment proxies would get transports of their own, bypassing the capture
            follow_redirects=False,
            cookies=httpx.Cookies(_NoCookies()),
        )
        self._timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout).as_dict()
        watched: dict[bytes, bool] = {_PROXY_KEY: False, _PROXY_AUTHORIZATION: False, _USER_AGENT: True}
        if config.user_header is not None:
            watched[config.user_header] = config.forward_attribution_headers
        for name in config.tag_headers:
            watched[name] = config.forward_attribution_headers
        self._watched = watched
        self._lineage = RetryLineage(getattr(transport, "retries", None))
        hooks.add_gate(_claim, first=True)

    async def aclose(self) -> None:
        """Close the upstream connections and stop claiming calls."""
        self.hooks.remove_gate(_claim)
        await self.client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward one http request (websockets are refused: the proxy speaks HTTP only)."""
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        config = self.config
        raw_path = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
        routed = config.routes.match(raw_path)
        forwarded, found = request_headers(scope["headers"], self._watched)
        if config.proxy_key is not None and not self._key_ok(found):
            await _send_error(
                send,
                401,
                "proxy_key_required",
                f"this proxy needs its key in {PROXY_KEY_HEADER} (or Proxy-Authorization: Bearer)",
            )
            return
        if routed is None:
            await _send_error(send, 404, "no_route", "no upstream is configured for this path")
            return
        upstream, rest = routed
        tags = self._tags(scope, found)
        user = found.get(config.user_header) if config.user_header is not None else None
        if user:
            scope[USER_SCOPE_KEY] = user.decode("utf-8", "replace").strip()[:MAX_ATTRIBUTION_CHARS] or None
        url = upstream.target(rest, scope.get("query_string") or b"")
        exchange = _Exchange(config.keep_request_bytes)
        has_body = any(name in (_CONTENT_LENGTH, _TRANSFER_ENCODING) for name, _ in scope["headers"])
        if has_body:
            content: Any = self._upload(receive, exchange)
        else:
            content = None
            exchange.upload_done = True
        request = httpx.Request(
            scope["method"], url, headers=forwarded, content=content, extensions={"timeout": self._timeout}
        )
        tags_token = current_tags.set(tags)
        exchange_token = _exchange.set(exchange)
        client = self._lineage.enter(scope, found.get(_USER_AGENT))
        try:
            await self._forward(request, exchange, upstream.label, receive, send)
        finally:
            self._lineage.leave(client)
            _exchange.reset(exchange_token)
            current_tags.reset(tags_token)

    def _key_ok(self, found: dict[bytes, bytes]) -> bool:
        expected = self.config.proxy_key or b""
        sent = found.get(_PROXY_KEY)
        if sent is None:
            auth = found.get(_PROXY_AUTHORIZATION, b"")
            scheme, _, token = auth.strip().partition(b" ")
            sent = token.strip() if scheme.lower() == b"bearer" else None
        return sent is not None and hmac.compare_digest(sent.strip(), expected)

    def _tags(self, scope: Scope, found: dict[bytes, bytes]) -> dict[str, str]:
        tags = dict(current_tags.get())
        client = scope.get("client")
        if client:
            tags["client"] = str(client[0])
        for header, tag in self.config.tag_headers.items():
            value = found.get(header)
            if value:
                text = value.decode("utf-8", "replace").strip()[:MAX_ATTRIBUTION_CHARS]
                if text:
                    tags[tag] = text
        return tags

    async def _upload(self, receive: Receive, exchange: _Exchange) -> AsyncIterator[bytes]:
        """The request body as it arrives; the chunks of an LLM call are also kept for its record."""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone("the client disconnected while sending its request body")
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if chunk:
                if exchange.pending is not None:
                    exchange.keep(chunk)
                yield chunk
        exchange.upload_done = True
        exchange.publish()

    async def _forward(
        self, request: httpx.Request, exchange: _Exchange, label: str, receive: Receive, send: Send
    ) -> None:
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            await _send_error(
                send, 504, "upstream_timeout", f"the upstream {label} did not answer in time ({type(exc).__name__})"
            )
            return
        except _ClientGone:
            return
        except CallRefused as exc:
            await _send_error(send, 403, "call_refused", f"llm-monitor refused the call: {exc}")
            return
        except httpx.HTTPError as exc:
            if isinstance(exc.__cause__, _ClientGone) or isinstance(exc.__context__, _ClientGone):
                return
            await _send_error(
                send, 502, "upstream_unreachable", f"the upstream {label} failed: {type(exc).__name__}: {exc}"
            )
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response_headers(response.headers.raw),
                }
            )
            await self._relay(response, exchange, receive, send)
        finally:
            await response.aclose()

    async def _relay(self, response: httpx.Response, exchange: _Exchange, receive: Receive, send: Send) -> None:
        """Send the response body chunk by chunk; a client that hangs up closes the upstream response at once."""
        async with anyio.create_task_group() as group:
            if exchange.upload_done:  # else ``receive`` still belongs to the upload (an upstream that answered early)
                group.start_soon(_watch_disconnect, receive, group.cancel_scope, exchange)
            try:
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError as exc:  # the upstream broke mid-body: the client sees the connection cut, too
                logger.warning("llm_monitor_mw: proxy: upstream response broke mid-body: %r", exc)
                group.cancel_scope.cancel()
                return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()


async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope, exchange: _Exchange) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    pending = exchange.pending
    if pending is not None:
        # Recorded as closed early by the client before the read is cancelled (a cancelled read would otherwise
        # be recorded as a broken stream); the transport's own close then finds it finished.
        pending.finish(ABANDONED)
    scope.cancel()
