"""Context carried from the code that makes a call to the record of that call.

Three context variables, each read once per captured call by the transport:

* :data:`current_tags` — set by :func:`tags` (``monitor.tags(...)``);
* :data:`current_inbound` — the inbound web request being served, an :class:`InboundRequest` set by the
  attribution middleware (:mod:`llm_monitor_mw.middleware`) for the duration of the request;
* :data:`current_trace` — the innermost :func:`trace` block (``monitor.trace(...)``), a :class:`TraceFrame`.

Built on :mod:`contextvars`, so values follow the code into ``asyncio`` tasks and into
``run_in_threadpool``/``asyncio.to_thread`` (both copy the context), and never leak between threads.

Who wins for a call's ``user``: ``tags(user=...)`` (explicit, innermost block first) over the middleware's ``user``
resolver. The ``user`` tag also stays in the call's tags.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

logger = logging.getLogger("llm_monitor_mw")

_EMPTY: dict[str, str] = {}
current_tags: ContextVar[dict[str, str]] = ContextVar("llm_monitor_mw_tags", default=_EMPTY)

Resolver = Callable[[], Any]
"""A zero-argument function giving a route template or a user id (``None`` = unknown)."""


class InboundRequest:
    """The inbound web request that is being served, for attributing the LLM calls it causes.

    ``route`` and ``user`` start as ``None`` and are filled by :meth:`resolve`, which the transport calls on the
    caller's thread at each captured call: the resolvers run lazily (at the first call, when the host's routing and
    auth have run, which usually sit inside the attribution middleware), then their answers are cached here.
    A route still unknown (a call made before routing) is looked up again at the next call; a user is looked up
    once. A resolver that raises gives ``None`` and one log line on the ``llm_monitor_mw`` logger. No lock: calls
    racing on several threads at a request's start may run a resolver twice, which is harmless.
    """

    __slots__ = ("_route_of", "_user_of", "method", "request_id", "route", "user")

    def __init__(
        self,
        method: str,
        request_id: str,
        *,
        route: Resolver | None = None,
        user: Resolver | None = None,
    ) -> None:
        self.method = method
        self.request_id = request_id
        self.route: str | None = None
        self.user: str | None = None
        self._route_of = route
        self._user_of = user

    def resolve(self, with_user: bool = True) -> None:
        """Run the resolvers not run yet (the user one only if ``with_user``); cheap once they have. Never raises."""
        route_of = self._route_of
        if route_of is not None:
            try:
                self.route = _text(route_of())
            except Exception as exc:
                self._route_of = None
                logger.warning("llm_monitor_mw: route lookup failed, route left empty: %r", exc)
            else:
                if self.route is not None:
                    self._route_of = None
        user_of = self._user_of
        if with_user and user_of is not None:
            try:
                self.user = _text(user_of())
            except Exception as exc:
                logger.warning("llm_monitor_mw: the user resolver raised, user left empty: %r", exc)
            self._user_of = None  # after the answer: a racing thread runs it again rather than reading no user

    def __repr__(self) -> str:
        return f"InboundRequest({self.method!r}, {self.request_id!r}, route={self.route!r}, user={self.user!r})"


current_inbound: ContextVar[InboundRequest | None] = ContextVar("llm_monitor_mw_inbound", default=None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text or None


@contextmanager
def tags(**values: object) -> Iterator[dict[str, str]]:
    """Attach tags to every LLM call made inside the block; nested blocks add to (and may override) outer ones.

    ``user=...`` also sets the calls' ``user`` column, overriding the attribution middleware's user resolver.
    """
    merged = {**current_tags.get(), **{str(k): str(v) for k, v in values.items()}}
    token = current_tags.set(merged)
    try:
        yield merged
    finally:
        current_tags.reset(token)


# ---- traces ------------------------------------------------------------------------------------------------

MAX_TRACE_NAME = 200
"""Longer ``trace()`` names are cut to this many characters."""
MAX_TRACE_DEPTH = 32
"""Nested ``trace()`` blocks deeper than this add no more names (the calls keep the outer names)."""


class TraceFrame:
    """The ``trace()`` blocks around the code that is running: the root's id and every block's name.

    Immutable, made once per block on entry; the transport keeps a reference to it per call and the record's
    ``trace_id``/``trace_name``/``span_name`` are worked out from it on the writer thread.
    """

    __slots__ = ("names", "trace_id")

    def __init__(self, trace_id: str, names: tuple[str, ...]) -> None:
        self.trace_id = trace_id
        """The id of the outermost block (32 hex digits)."""
        self.names = names
        """The blocks' names, outermost first."""

    def __repr__(self) -> str:
        return f"TraceFrame({self.trace_id!r}, {self.names!r})"


current_trace: ContextVar[TraceFrame | None] = ContextVar("llm_monitor_mw_trace", default=None)


class Trace:
    """What a ``trace()`` block is, as the calls made inside it will record it (yielded by :func:`trace`).

    Inside an inbound web request the request is the trace: ``trace_id`` is its request id, ``trace_name`` is
    ``None`` and every block's name is part of ``span_name``.
    """

    __slots__ = ("name", "span_name", "trace_id", "trace_name")

    def __init__(self, trace_id: str, trace_name: str | None, span_name: str | None, name: str) -> None:
        self.trace_id = trace_id
        """The trace's id: the inbound request's id, else the outermost block's (``uuid4().hex``)."""
        self.trace_name = trace_name
        """The outermost block's name (``None`` inside an inbound request)."""
        self.span_name = span_name
        """The names of the blocks below the trace's root, outermost first, joined by ``" / "``."""
        self.name = name
        """This block's own name."""

    def __repr__(self) -> str:
        return f"Trace({self.trace_id!r}, trace_name={self.trace_name!r}, span_name={self.span_name!r})"


def trace_fields(frame: TraceFrame | None, inbound: InboundRequest | None) -> tuple[str | None, str | None, str | None]:
    """``(trace_id, trace_name, span_name)`` of a call made inside ``frame`` while serving ``inbound``.

    The inbound request wins as the trace (its id, no name: it is named by method and route), and every
    ``trace()`` block inside it is a span; else the outermost block is the trace and the inner ones are spans.
    """
    if inbound is not None:
        names = frame.names if frame is not None else ()
        return inbound.request_id, None, " / ".join(names) or None
    if frame is None:
        return None, None, None
    return frame.trace_id, frame.names[0], " / ".join(frame.names[1:]) or None


@contextmanager
def trace(name: object) -> Iterator[Trace]:
    """Group every LLM call made inside the block into one trace named ``name`` (an agent run, a job, a script).

    Nests: an inner block is a span of the outer one's trace (the calls' ``span_name``). Follows the code into
    asyncio tasks and thread pools that copy the context (``asyncio.create_task``, ``asyncio.to_thread``,
    ``contextvars.copy_context().run``), as :func:`tags` does. Inside an inbound web request (attribution
    middleware) the request is the trace and the block names a span of it. Yields a :class:`Trace`.
    """
    text = (name if isinstance(name, str) else str(name)).strip()[:MAX_TRACE_NAME]
    if not text:
        raise ValueError("a trace needs a non-empty name")
    parent = current_trace.get()
    if parent is None:
        frame = TraceFrame(uuid.uuid4().hex, (text,))
    elif len(parent.names) < MAX_TRACE_DEPTH:
        frame = TraceFrame(parent.trace_id, (*parent.names, text))
    else:
        frame = parent
    token = current_trace.set(frame)
    try:
        trace_id, trace_name, span_name = trace_fields(frame, current_inbound.get())
        yield Trace(trace_id or frame.trace_id, trace_name, span_name, text)
    finally:
        current_trace.reset(token)


# ---- route templates -----------------------------------------------------------------------------------------


def asgi_route(scope: Mapping[str, Any], base_root_path: str) -> str | None:
    """The template of the route an ASGI (Starlette/FastAPI) router matched, e.g. ``/api/chat/{chat_id}``.

    Read from ``scope["route"]`` (set by the router once it matched), prefixed with the templates of the mounts
    the request went through inside the host app: the part of ``scope["root_path"]`` after ``base_root_path``
    (the root path the middleware saw). ``None`` when no route matched (yet).
    """
    route = scope.get("route")
    if route is None:
        return None
    template = _fastapi_effective_path(scope, route) or getattr(route, "path_format", None)
    if not isinstance(template, str):
        return None
    root_path = scope.get("root_path") or ""
    inner = root_path[len(base_root_path) :] if root_path.startswith(base_root_path) else root_path
    if not inner:
        return template
    mount = _unwrap(route)
    prefix = _mount_templates(scope.get("router"), inner, stop=mount if _is_mount(mount) else None)
    return prefix + template


def _fastapi_effective_path(scope: Mapping[str, Any], route: Any) -> str | None:
    """FastAPI >= 0.137 keeps ``include_router`` prefixes out of ``scope["route"]``; its effective context has them."""
    fastapi_scope = scope.get("fastapi")
    if not isinstance(fastapi_scope, dict):
        return None
    context = fastapi_scope.get("effective_route_context")
    if context is None or getattr(context, "original_route", None) is not route:
        return None  # absent, or left behind by an outer FastAPI app when a mounted one matched
    path = getattr(context, "path_format", None)
    return path if isinstance(path, str) and path else None


def _unwrap(route: Any) -> Any:
    return getattr(route, "original_route", route)


def _is_mount(route: Any) -> bool:
    routing = sys.modules.get("starlette.routing")
    return routing is not None and isinstance(route, routing.Mount)


def _mount_templates(router: Any, concrete: str, stop: Any = None) -> str:
    """Map a concrete mount prefix (``/orgs/42/api``) back to the mounts' templates (``/orgs/{org}/api``).

    Walks the mounts from the outermost router the way Starlette matched them. ``stop``: the matched route is
    itself a mount (a non-router app inside it): its own part of the prefix is left out, as its ``path_format``
    (``/static/{path}``) carries it. Whatever cannot be mapped is kept as it is.
    """
    template = ""
    routes = getattr(router, "routes", None) or ()
    rest = concrete
    while rest:
        step = _match_mount(routes, rest)
        if step is None:
            return template + rest
        mount, consumed = step
        if mount is stop and consumed == rest:
            return template
        template += mount.path_format.removesuffix("/{path}")
        rest = rest[len(consumed) :]
        routes = getattr(mount, "routes", None) or ()
    return template


def _match_mount(routes: Any, rest: str) -> tuple[Any, str] | None:
    """The first mount in ``routes`` that matches the start of ``rest`` (and consumes some of it)."""
    probe = rest + "/"
    for candidate in routes:
        if not _is_mount(candidate):
            continue
        match = candidate.path_regex.match(probe)
        if match is None:
            continue
        remaining = "/" + match.group("path")
        consumed = probe[: len(probe) - len(remaining)]
        if consumed and rest.startswith(consumed):
            return candidate, consumed
    return None


def flask_route(environ: Mapping[str, Any], base_script_name: str) -> str | None:
    """Flask's matched rule (``/api/chat/<int:chat_id>``) while a request context is active, else ``None``.

    Prefixed with what dispatchers inside the host app added to ``SCRIPT_NAME`` after ``base_script_name``.
    Flask is looked up lazily (``sys.modules``): never imported here.
    """
    flask = sys.modules.get("flask")
    if flask is None or not flask.has_request_context():
        return None
    rule = flask.request.url_rule
    if rule is None:
        return None
    script_name = environ.get("SCRIPT_NAME") or ""
    inner = script_name[len(base_script_name) :] if script_name.startswith(base_script_name) else ""
    return inner.rstrip("/") + rule.rule
