"""`Monitor`: configuration and wiring of capture, store and web. Behaviour lives in the layers it wires."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import instrument
from .capture import open_calls
from .capture.pending import CaptureOptions, PendingCall
from .capture.providers import Registry
from .capture.transport import AsyncMonitorTransport, Capturer, MonitorTransport
from .context import Trace
from .context import tags as _tags
from .context import trace as _trace
from .hooks import Hooks
from .pricing import Pricer
from .record import CallRecord
from .store import Store, check_instance, open_engine
from .store.secrets import KeySecret
from .store.writer import before_exit_flush
from .web.auth import Auth
from .web.cardinality import check_limit
from .web.keys import check_key_names

if TYPE_CHECKING:
    from .alerts import AlertManager
    from .otel import OTelExporter
    from .store.engine import Engine
    from .store.read import Queries
    from .store.retention import Retention
    from .store.writer import Writer

logger = logging.getLogger("llm_monitor_mw")

# Streams still open at exit are finished (as cut short by the exit) before the writers' final flush.
before_exit_flush(open_calls.finish_all_at_exit)


class Monitor:
    """Records the LLM calls your app makes and serves what it recorded.

    Args:
        path: the SQLite file (created on first use; parent directories too), or a PostgreSQL database URL
            (``postgresql://user:password@host:5432/dbname``, also ``postgres://``; needs
            ``pip install "llm-monitor-mw[postgres]"``) that several instances share.
        instance: the name stamped on every call this process records (1 to 200 printable characters); default
            ``"<hostname>:<process group>"``, one name for all the worker processes of one server on one host.
        capture_content: store prompts and responses (off by default), truncated to ``content_limit`` characters
            and passed through ``redact`` first.
        content_limit: maximum characters kept of each prompt/response when ``capture_content`` is on.
        redact: ``str -> str`` applied to captured content before it is stored.
        stream_usage: add ``stream_options.include_usage`` to OpenAI chat-completion stream requests that do not
            set ``stream_options``, so that streamed calls report tokens (the stream then ends with one extra
            usage chunk, which the OpenAI SDK handles).
        prices: per-model price overrides in USD per million tokens, keyed by model or ``provider/model``:
            ``{"my-model": {"input": 0.5, "output": 1.5, "cache_read": 0.05}}``.
        update_prices: keep genai-prices' price list current with its background updater (an hourly fetch of its
            latest prices; a failed fetch is logged and the prices in use stay); ``False`` (the default) uses the
            prices bundled with the installed genai-prices. A configured ``genai_prices.UpdatePrices`` may be given.
        hosts: names for providers by host or ``host:port``, e.g. ``{"llm.internal:8000": "vllm"}``.
        ignore_hosts: hosts whose traffic is never recorded.
        max_queue: records waiting for the writer before new ones are dropped (and counted).
        batch_size, flush_interval: how the writer batches inserts.
        max_body_bytes: larger non-streamed response bodies are passed through but not parsed.
        retention_days: delete calls older than this many days (and their roll-up rows) on a background thread,
            shortly after start and then hourly, in short transactions; ``None`` keeps everything.
        metrics_max_label_values: distinct values ``/metrics`` shows per label (``provider``, ``model``,
            ``status``); values that ever answered OK come first, then the busiest (cumulative requests), then by
            name — chosen from the counters alone, so every worker shows the same series; the rest are summed under
            ``other``, so totals stay right.
        key_names: names for API keys on the dashboard and in the API, by key fingerprint (the 16 hex digits shown
            on a request's page, or a prefix of them of at least 8), e.g. ``{"3f2a9c1e": "billing-service"}``.
            Keys themselves are never stored: each call keeps an HMAC fingerprint and a hint (``sk-proj-…a1b2``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "llm_monitor.db",
        *,
        instance: str | None = None,
        capture_content: bool = False,
        content_limit: int = 4096,
        redact: Callable[[str], str] | None = None,
        stream_usage: bool = False,
        prices: Mapping[str, Mapping[str, float]] | None = None,
        hosts: Mapping[str, str] | None = None,
        ignore_hosts: tuple[str, ...] | list[str] = (),
        max_queue: int = 100_000,
        batch_size: int = 1000,
        flush_interval: float = 0.25,
        max_body_bytes: int = 16 * 1024 * 1024,
        retention_days: float | None = None,
        metrics_max_label_values: int = 100,
        key_names: Mapping[str, str] | None = None,
        update_prices: bool | Any = False,
    ) -> None:
        if content_limit < 0 or max_queue < 1 or batch_size < 1 or flush_interval <= 0 or max_body_bytes < 0:
            raise ValueError("content_limit, max_queue, batch_size, flush_interval and max_body_bytes must be positive")
        self.path = os.fspath(path)
        self.instance = check_instance(instance)
        self.metrics_max_label_values = check_limit(metrics_max_label_values)
        self.key_names = check_key_names(key_names)
        self.options = CaptureOptions(
            capture_content=capture_content,
            content_limit=content_limit,
            max_body_bytes=max_body_bytes,
            redact=redact,
        )
        self.pricer = Pricer(prices, update_prices=update_prices)
        self.hooks = Hooks()
        """Gates (before a request leaves) and listeners (after a record is built); see :mod:`.hooks`."""
        self.store = Store(
            open_engine(self.path),
            self._prepare,
            instance=self.instance,
            hooks=self.hooks,
            max_queue=max_queue,
            batch_size=batch_size,
            flush_interval=flush_interval,
            retention_days=retention_days,
        )
        """What the dashboard, API, alerts and CLI read and write through; see :class:`~.store.Store`."""
        self.options.key_secret = KeySecret(self.store.engine)  # read lazily, on the writer thread
        if self.store.retention is not None:
            self.store.retention.start()
        self._capturer = Capturer(
            Registry(dict(hosts or {}), frozenset(ignore_hosts)),
            self.store.writer.submit,
            hooks=self.hooks,
            max_body_bytes=max_body_bytes,
            stream_usage=stream_usage,
            on_begin=self.store.writer.start,
        )
        self._instrumented = False
        self._otel: OTelExporter | None = None
        self._alerts: AlertManager | None = None

    # Deprecated aliases, kept for code written against earlier versions: use ``monitor.store``.

    @property
    def db(self) -> Engine:
        """Deprecated: ``monitor.store.engine``."""
        return self.store.engine

    @property
    def writer(self) -> Writer:
        """Deprecated: ``monitor.store.writer``."""
        return self.store.writer

    @property
    def queries(self) -> Queries:
        """Deprecated: ``monitor.store.queries``."""
        return self.store.queries

    @property
    def retention(self) -> Retention | None:
        """Deprecated: ``monitor.store.retention``."""
        return self.store.retention

    @property
    def internal_errors(self) -> int:
        """Failures inside the monitor (capture, listeners, exporters) that the host never saw."""
        return self.hooks.internal_errors

    # ---- capture -------------------------------------------------------------------------------------------

    def transport(self, inner: Any = None) -> MonitorTransport:
        """A sync transport for ``httpx.Client(transport=...)`` or ``httpx2.Client(transport=...)``.

        ``inner`` is the transport that really sends (default: the library's own ``HTTPTransport``).
        """
        return MonitorTransport(self._capturer, inner)

    def async_transport(self, inner: Any = None) -> AsyncMonitorTransport:
        """An async transport for ``httpx.AsyncClient``/``httpx2.AsyncClient``."""
        return AsyncMonitorTransport(self._capturer, inner)

    def instrument_httpx(self) -> None:
        """Capture every ``httpx``/``httpx2`` client (sync and async) created from now on."""
        instrument.instrument(self.transport, self.async_transport)
        self._instrumented = True

    def uninstrument_httpx(self) -> None:
        """Stop wrapping new clients (clients already created keep recording)."""
        if self._instrumented:
            instrument.uninstrument()
            self._instrumented = False

    def aiohttp_middleware(self) -> Any:
        """An aiohttp client middleware that records LLM calls (aiohttp >= 3.12):
        ``aiohttp.ClientSession(middlewares=[..., monitor.aiohttp_middleware()])`` (last, so each attempt is one
        record). Needs ``pip install "llm-monitor-mw[aiohttp]"``."""
        from .capture.aiohttp import CaptureMiddleware

        return CaptureMiddleware(self._capturer)

    def instrument_aiohttp(self) -> None:
        """Capture every ``aiohttp.ClientSession`` created from now on (google-genai's async client, litellm).

        Sessions created before this call are not captured (make them afterwards, or pass
        :meth:`aiohttp_middleware`); nor is a request that passes its own ``middlewares=``.
        """
        from . import instrument_aiohttp

        instrument_aiohttp.instrument(self.aiohttp_middleware(), self.hooks.count_error)

    def uninstrument_aiohttp(self) -> None:
        """Stop adding the middleware to new sessions (sessions already created keep recording)."""
        from . import instrument_aiohttp

        middleware = instrument_aiohttp.installed_middleware()
        if middleware is not None and middleware._capturer.hooks is self.hooks:  # ours, not another monitor's
            instrument_aiohttp.uninstrument()

    def instrument(self) -> None:
        """:meth:`instrument_httpx` and, when aiohttp is installed, :meth:`instrument_aiohttp`: every HTTP client
        created from now on is captured; a call is recorded once even when httpx sends through aiohttp (litellm)."""
        self.instrument_httpx()
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            return
        try:
            self.instrument_aiohttp()
        except BaseException:
            self.uninstrument_httpx()
            raise

    def uninstrument(self) -> None:
        """Undo :meth:`instrument` (both libraries); clients already created keep recording."""
        self.uninstrument_httpx()
        self.uninstrument_aiohttp()

    @contextmanager
    def tags(self, **values: object) -> Iterator[dict[str, str]]:
        """Tag every call made inside the block (nests; follows asyncio tasks and thread pools)."""
        with _tags(**values) as merged:
            yield merged

    @contextmanager
    def trace(self, name: str) -> Iterator[Trace]:
        """Group every call made inside the block into one trace (an agent run, a job); nests as spans; follows
        asyncio tasks and thread pools. Inside an inbound request the request is the trace and this names a span.
        Yields a :class:`~llm_monitor_mw.context.Trace` (``trace_id``, ``trace_name``, ``span_name``)."""
        with _trace(name) as current:
            yield current

    # ---- store ---------------------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Return once every call captured so far is on disk (``False`` if ``timeout`` ran out first)."""
        return self.store.flush(timeout)

    def close(self) -> None:
        """Flush and stop the writer thread; also undoes :meth:`instrument` (httpx and aiohttp)."""
        self.uninstrument()
        if self._alerts is not None:
            self._alerts.close()
        self.store.close()
        self.pricer.close()

    def stats(self) -> dict[str, Any]:
        """Writer and capture counters: queued, written, dropped, failed, internal_errors, last_write_at."""
        return self.store.stats()

    def add_listener(self, listener: Callable[[CallRecord], None]) -> None:
        """Call ``listener(record)`` for every captured call, on the writer thread, just before it is stored.

        A listener must be quick and must not block; one that raises is logged and counted in
        ``stats()["internal_errors"]``, and never stops the record from being stored.
        """
        self.hooks.add_listener(listener)

    def remove_listener(self, listener: Callable[[CallRecord], None]) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        for added in self.hooks.listeners:
            if added == listener:  # equal, not only identical: ``obj.method`` is a new bound method each time
                self.hooks.remove_listener(added)

    def enable_otel(self, tracer_provider: Any = None, meter_provider: Any = None) -> OTelExporter:
        """Export every captured call as an OpenTelemetry GenAI client span and GenAI client metrics.

        Needs ``pip install "llm-monitor-mw[otel]"``. ``tracer_provider``/``meter_provider`` default to the global
        ones. Each span is a child of the span that was current where the request was made. Calling it again
        replaces the previous exporter. See :class:`llm_monitor_mw.otel.OTelExporter`.
        """
        from .otel import OTelExporter

        self.disable_otel()
        self._otel = OTelExporter(self.hooks, tracer_provider, meter_provider)
        return self._otel

    def disable_otel(self) -> None:
        """Stop exporting to OpenTelemetry (no error if it was not enabled)."""
        if self._otel is not None:
            self._otel.close()
            self._otel = None

    def _prepare(self, pending: PendingCall) -> CallRecord:
        record = pending.to_record(self.options)
        try:
            record.cost_usd = self.pricer.price(record)
        except Exception:
            logger.exception("llm_monitor_mw: pricing failed for %r", record.model)
        for listener in self.hooks.listeners:
            try:
                listener(record)
            except Exception as exc:
                logger.exception("llm_monitor_mw: listener %r failed", listener)
                self.hooks.count_error(exc)
        return record

    # ---- alerts and budgets -------------------------------------------------------------------------------

    @property
    def alerts(self) -> AlertManager:
        """Alert rules, budgets and notification channels (created on first use; nothing runs until
        ``monitor.alerts.start()``, except hard budgets, which guard the transport once added).
        See :class:`llm_monitor_mw.alerts.AlertManager`."""
        if self._alerts is None:
            from .alerts import AlertManager

            self._alerts = AlertManager(self.store, self.hooks)
        return self._alerts

    def budget_exceeded(self, scope: Mapping[str, str] | None = None) -> bool:
        """Whether a call with these attributes (``{"user": "alice"}``, ``{"tag": "customer:acme"}``…) is over a
        budget that covers it; ``None``: the budgets over all calls. ``False`` when no budget is configured."""
        return self._alerts is not None and self._alerts.budget_exceeded(scope)

    # ---- web -----------------------------------------------------------------------------------------------

    def asgi_app(
        self,
        auth: Auth | None = None,
        *,
        metrics_token: str | None = None,
        health_checks: Sequence[str] = (),
        concurrency: int | None = None,
        queue_timeout: float = 1.0,
    ) -> Any:
        """The monitoring app (dashboard, JSON API, static files, ``/metrics``, ``/health``) as an ASGI app; mount
        it at any prefix: ``app.mount("/monitoring", monitor.asgi_app(auth=BasicAuth("admin", password)))``.

        ``auth`` guards every route: :class:`BasicAuth`, :class:`Constraint`, or any object with an async
        ``check(request)`` returning ``None`` (allow) or a response. Without it the app is open (a warning is
        logged once). ``metrics_token`` additionally lets ``Authorization: Bearer <token>`` (a Prometheus scraper,
        a load balancer) reach ``GET /metrics`` and ``GET /health`` only. ``health_checks``: provider URLs that
        ``/health`` checks for reachability (opt-in; 2 s timeout each). ``concurrency``: how many dashboard/API
        requests run at once, in threads of the app's own (default: the CPUs, at least 2), never in the thread
        pool the host's endpoints use; a request that waits ``queue_timeout`` seconds for a turn gets ``503`` with
        ``Retry-After: 1``.
        """
        from .web.app import create_app

        return create_app(
            self.store,
            self.hooks,
            auth,
            alerts=lambda: self.alerts,
            metrics_max_label_values=self.metrics_max_label_values,
            key_names=self.key_names,
            metrics_token=metrics_token,
            health_checks=health_checks,
            concurrency=concurrency,
            queue_timeout=queue_timeout,
        )

    def wsgi_app(
        self,
        auth: Auth | None = None,
        *,
        metrics_token: str | None = None,
        health_checks: Sequence[str] = (),
        concurrency: int | None = None,
        queue_timeout: float = 1.0,
    ) -> Any:
        """The monitoring app for WSGI hosts (Flask):
        ``DispatcherMiddleware(flask_app.wsgi_app, {"/monitoring": monitor.wsgi_app(auth=...)})``.
        Arguments as for :meth:`asgi_app`."""
        from .web.bearer import validate_token
        from .web.gate import check_limits
        from .web.health import validate_urls
        from .web.wsgi import LazyWSGIApp

        if metrics_token is not None:
            validate_token(metrics_token)  # fail here, not at the first request
        validate_urls(health_checks)
        check_limits(concurrency, queue_timeout)
        return LazyWSGIApp(
            lambda: self.asgi_app(
                auth,
                metrics_token=metrics_token,
                health_checks=health_checks,
                concurrency=concurrency,
                queue_timeout=queue_timeout,
            )
        )

    @property
    def asgi_middleware(self) -> Any:
        """The ASGI attribution middleware class: ``app.add_middleware(monitor.asgi_middleware, user=...)``.

        Ties each captured call to the request that caused it (route template, user, method, request id). Add it
        last, so it is outermost; ``user(request) -> str | None`` runs at the request's first LLM call.
        See :class:`llm_monitor_mw.middleware.AttributionMiddleware`.
        """
        from .middleware import AttributionMiddleware

        return AttributionMiddleware

    def wsgi_middleware(
        self,
        app: Any,
        *,
        user: Callable[[dict[str, Any]], str | None] | None = None,
        request_id_header: str = "X-Request-ID",
    ) -> Any:
        """Wrap a WSGI app for attribution: ``flask_app.wsgi_app = monitor.wsgi_middleware(flask_app.wsgi_app)``.

        ``user(environ) -> str | None`` runs at the request's first LLM call. See
        :class:`llm_monitor_mw.middleware.WSGIAttributionMiddleware`.
        """
        from .middleware import WSGIAttributionMiddleware

        return WSGIAttributionMiddleware(app, user=user, request_id_header=request_id_header)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Monitor({self.store.engine.location!r}, instance={self.instance!r})"
