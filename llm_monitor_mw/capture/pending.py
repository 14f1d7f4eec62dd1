"""`PendingCall`: the in-flight state of one captured attempt, and its conversion into a `CallRecord`.

The transport touches a `PendingCall` on the caller's path (time stamps, chunk references, a bounded head and
tail of streams); :meth:`PendingCall.to_record` runs later on the writer thread and does all the parsing.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from time import perf_counter
from typing import Any

from ..context import InboundRequest, TraceFrame, trace_fields
from ..record import CallRecord
from .httplibs import header_values
from .keys import identify
from .numbers import MAX_WAIT_S, finite, header_count, header_seconds, reject
from .open_calls import DROPPED, EXITED
from .open_calls import add as _register
from .open_calls import discard as _forget
from .providers import Route
from .providers.base import Parsed, prompt_text
from .providers.tools import MAX_CALLS, ToolCalls
from .redaction import scrub
from .request_params import read_params
from .sse import CONTENT_MARK, MAX_EVENT_BYTES, Decoder, StreamDecodeStats, make_decoder, ndjson_events, sse_events

logger = logging.getLogger("llm_monitor_mw")

BODY, SSE, NDJSON = 0, 1, 2

# Streams keep a window of their first and of their last (decoded) bytes only: usage and end markers arrive at
# the ends (the model and Anthropic's input usage in the first events, everyone's output usage in the last).
# The windows are bounded in bytes, whatever the chunk sizes: a stream of one endless line keeps HEAD_BYTES +
# TAIL_BYTES of it. The tail fits the largest event that is parsed (OpenAI's response.completed repeats the whole
# response); an event cut by a window's edge is skipped.
HEAD_BYTES = 256 * 1024
TAIL_BYTES = MAX_EVENT_BYTES
SCAN_BYTES = 4096  # how much of each end of a request body is searched for "model" and "stream"
MAX_PIECES = 512  # pieces per window before the newest are joined (bounds per-object overhead of tiny reads)
JOIN_BYTES = 64 * 1024  # pieces this large are never joined again (so no piece is copied over and over)
MODEL_CHARS = 256  # longest model name, finish reason or request id kept

_MODEL_RE = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"')
_STREAM_RE = re.compile(rb'"stream"\s*:\s*(true|false)')
_TIER_RE = re.compile(rb'"service_tier"\s*:\s*"([A-Za-z0-9_.-]{1,64})"')

_FRAMING_HEADERS = frozenset({b"content-type", b"content-encoding"})
_CONTENT_TYPE = frozenset({b"content-type"})
_RECORDED_HEADERS = frozenset(
    {
        b"x-request-id",
        b"request-id",
        b"x-goog-request-id",
        b"x-ratelimit-remaining-requests",
        b"x-ratelimit-remaining-tokens",
        b"anthropic-ratelimit-requests-remaining",
        b"anthropic-ratelimit-tokens-remaining",
        b"anthropic-ratelimit-input-tokens-remaining",
        b"retry-after",
        b"retry-after-ms",
    }
)

# Operations whose complete responses tell how many tool calls were asked for (0 for a legacy completion).
_TOOL_OPERATIONS = frozenset({"chat", "responses", "generate_content", "stream_generate_content", "text_completion"})
_TOOLS_KEYS = (b'"tools"', b'"functions"')  # where each family's request offers tools (and OpenAI's legacy key)
_SCRUB_MARGIN = 256  # characters kept past content_limit, so a secret cut in two is still scrubbed
_TRUNCATED = "…[truncated]"

# End states of a response stream.
OPEN, COMPLETE, ABANDONED, BROKEN, FAILED = "open", "complete", "abandoned", "broken", "failed"


class CaptureOptions:
    """Settings the capture side needs (set once by the Monitor)."""

    __slots__ = ("capture_content", "content_limit", "key_secret", "max_body_bytes", "redact")

    def __init__(
        self,
        *,
        capture_content: bool = False,
        content_limit: int = 4096,
        max_body_bytes: int = 16 * 1024 * 1024,
        redact: Callable[[str], str] | None = None,
        key_secret: Callable[[], bytes | None] | None = None,
    ) -> None:
        self.capture_content = capture_content
        self.content_limit = content_limit
        self.max_body_bytes = max_body_bytes
        self.redact = redact
        self.key_secret = key_secret
        """Returns the HMAC secret of key fingerprints (``None`` while the database cannot say; never raises),
        called on the writer thread; ``None``: calls get a key hint but no fingerprint."""


class PendingCall:
    """One attempt between request start and the end of its response body.

    Only the per-call attributes are set in ``__init__``; the rest start from the class defaults below, because
    every attribute assignment is on the caller's path.
    """

    status: int | None = None
    resp_headers: Any = None
    mode = BODY
    decoder: Decoder | None = None
    first_at: float | None = None
    last_at: float | None = None
    end_at: float | None = None
    parts: list[bytes] | None = None
    body_len = 0
    nbytes = 0
    head: list[bytes] | None = None
    tail: deque[bytes] | None = None
    head_room = 0  # bytes the head window can still take
    tail_len = 0  # bytes in the tail window
    dropped = False  # bytes were dropped between the head and the tail windows
    state = OPEN
    exc_type: str | None = None
    exc_text: str | None = None
    note: str | None = None
    problem: str | None = None
    done = False
    chunks_after_first = 0  # stream chunks received after the first content chunk (time_per_output_chunk)
    read_at: float | None = None  # last chunk passed to the caller (or the headers' arrival): a dropped call's end
    trace_context: Any = None  # set by a tracing gate (e.g. OpenTelemetry's) on the caller's thread; else unused
    credential: bytes | None = None  # the API key header's raw value (never stored: fingerprinted on the writer)
    retry_mark: Any = None  # the retry grouper's note of this attempt (retries.Attempt), told how it ended

    def __init__(
        self,
        route: Route,
        method: str,
        host: str,
        path: str,
        req_body: bytes | None,
        started_at: float,
        start: float,
        call_id: tuple[str, int],
        attempt: int,
        tags: dict[str, str],
        sink: Callable[[PendingCall], None],
        max_body: int,
        inbound: InboundRequest | None = None,
        trace: TraceFrame | None = None,
    ) -> None:
        self.route = route
        self.method = method
        self.host = host
        self.path = path
        self.req_body = req_body
        self.started_at = started_at
        self.start = start
        self.call_id = call_id
        self.attempt = attempt
        self.tags = tags
        self.sink = sink
        self.max_body = max_body
        self.inbound = inbound
        self.trace = trace
        _register(self)  # finished at exit if nothing else finishes it (see open_calls)

    # ---- caller's path -------------------------------------------------------------------------------------

    def attach(self, status: int, headers: Any) -> None:
        """Response headers arrived: pick how the body will be read (and so which ``feed``). Never raises."""
        try:
            self.status = status
            self.resp_headers = headers
            if self.retry_mark is not None:
                self.retry_mark.answered(status)
            found = header_values(headers, _FRAMING_HEADERS)
            ctype = found.get(b"content-type", b"")
            if b"event-stream" in ctype:
                self.mode = SSE
            elif b"ndjson" in ctype:
                self.mode = NDJSON
            if self.mode == BODY:
                self.parts = []
            else:
                self.head = []
                self.tail = deque()
                self.head_room = HEAD_BYTES
            raw_encoding = found.get(b"content-encoding")
            if raw_encoding and raw_encoding != b"identity":
                encoding = raw_encoding.decode("latin-1")
                self.decoder = make_decoder(encoding, self.max_body)
                if self.decoder is None:
                    self.note = f"response is {encoding}-encoded and its decoder is not installed (brotli/zstandard)"
                    self._stop_parsing()
        except Exception as exc:  # pragma: no cover - defensive
            self.internal(exc)

    def feeder(self) -> Callable[[bytes], None]:
        """The function to call with each raw chunk passed to the caller (never raises).

        Picked once per response by the stream wrapper (which holds it, so no reference cycle is made here).
        """
        if self.mode == BODY:
            return self._feed_body
        if self.mode in (SSE, NDJSON):
            return self._feed_stream
        return self._feed_nothing

    def feed(self, chunk: bytes) -> None:
        """Feed one chunk (convenience for callers that do not hold :meth:`feeder`)."""
        self.feeder()(chunk)

    def _feed_body(self, chunk: bytes) -> None:
        """Non-streamed body: keep the chunks by reference (up to ``max_body`` decoded bytes) for one parse on the
        writer; past that limit nothing more is decoded or kept."""
        try:
            self.nbytes += len(chunk)
            if self.first_at is None:
                self.first_at = perf_counter()
            parts = self.parts
            if parts is None:
                return
            decoder = self.decoder
            if decoder is not None:
                chunk = decoder(chunk)
                if decoder.over:
                    self._too_big()
                    return
            self.body_len += len(chunk)
            if self.body_len > self.max_body:
                self._too_big()
            else:
                parts.append(chunk)
        except Exception as exc:
            self.internal(exc)

    def _too_big(self) -> None:
        self.parts = None
        self.decoder = None
        self.note = f"response larger than max_body_bytes={self.max_body} decoded bytes; not parsed"

    def _feed_stream(self, chunk: bytes) -> None:
        """SSE/NDJSON: note the first content chunk's time; keep a window of the first and the last bytes."""
        try:
            self.nbytes += len(chunk)
            decoder = self.decoder
            if decoder is not None:
                chunk = decoder(chunk)  # at most what is left of max_body; b"" once that is spent
                if not chunk:
                    return
            if self.first_at is None and CONTENT_MARK.search(chunk):
                self.first_at = perf_counter()
            elif self.first_at is not None:
                self.chunks_after_first += 1
            room = self.head_room
            if room:
                head = self.head
                if len(chunk) <= room:
                    head.append(chunk)  # type: ignore[union-attr]
                    self.head_room = room - len(chunk)
                    if len(head) > MAX_PIECES:  # type: ignore[arg-type]
                        _join_newest(head)  # type: ignore[arg-type]
                    return
                head.append(chunk[:room])  # type: ignore[union-attr]
                self.head_room = 0
                if len(chunk) - room <= 2 * TAIL_BYTES:
                    chunk = chunk[room:]
                else:
                    chunk = chunk[-TAIL_BYTES:]
                    self.dropped = True
            tail = self.tail
            tail.append(chunk)  # type: ignore[union-attr]
            size = self.tail_len + len(chunk)
            if size > TAIL_BYTES or len(tail) > MAX_PIECES:  # type: ignore[arg-type]
                size = self._trim_tail(size)
            self.tail_len = size
        except Exception as exc:
            self.internal(exc)

    def _trim_tail(self, size: int) -> int:
        """Keep the tail window to between ``TAIL_BYTES`` and twice that, in few pieces; return its size.

        Whole pieces fall off the old end while at least ``TAIL_BYTES`` remain; the oldest piece is cut only when
        the window reaches twice the limit, so the copying is amortised over that many new bytes.
        """
        tail: deque[bytes] = self.tail  # type: ignore[assignment]
        if size > TAIL_BYTES:
            while len(tail) > 1 and size - len(tail[0]) >= TAIL_BYTES:
                size -= len(tail.popleft())
                self.dropped = True
            if size > 2 * TAIL_BYTES:
                cut = size - TAIL_BYTES
                tail[0] = tail[0][cut:]
                size -= cut
                self.dropped = True
        if len(tail) > MAX_PIECES:
            _join_newest(tail)
        return size

    def _stop_parsing(self) -> None:
        self.mode = -1
        self.parts = self.head = self.tail = None

    def _feed_nothing(self, chunk: bytes) -> None:
        self.nbytes += len(chunk)

    def finish(self, state: str, exc: BaseException | None = None) -> None:
        """End of this attempt (completed, abandoned by the caller, or broken): hand it to the writer once.

        ``DROPPED``/``EXITED`` (never closed by the caller; finished by a finaliser or at exit) end at the last read,
        not now. May run in a finaliser, on any thread: it only notes times and appends to the writer's queue.
        """
        if self.done:
            return
        self.done = True
        _forget(self)
        if state in (DROPPED, EXITED) and self.read_at is not None:
            self.end_at = self.last_at = self.read_at
        else:
            self.end_at = self.last_at = perf_counter()
        self.state = state
        if state == FAILED and self.retry_mark is not None:
            self.retry_mark.raised()
        if exc is not None:
            self.exc_type = type(exc).__name__
            self.exc_text = str(exc)
        try:
            self.sink(self)
        except Exception as sink_exc:  # pragma: no cover - the sink never raises by contract
            logger.exception("llm_monitor_mw: could not queue a call record: %s", sink_exc)

    def internal(self, exc: Exception) -> None:
        """A bug or surprise inside capture: note it on the record, log it, never propagate."""
        if self.mode < 0 and self.note is not None:
            return  # already stopped parsing: the chunks that follow fail the same way, report once
        self.note = f"capture error: {type(exc).__name__}: {exc}"
        self._stop_parsing()
        logger.warning("llm_monitor_mw: capture error on %s %s: %r", self.host, self.path, exc)

    # ---- writer thread -------------------------------------------------------------------------------------

    def to_record(self, options: CaptureOptions) -> CallRecord:
        """Parse what was kept and build the record. Surprises become the record's ``error`` note."""
        route = self.route
        record = CallRecord(
            started_at=self.started_at,
            provider=route.provider,
            operation=route.operation,
            endpoint=self.path,
            method=self.method,
            host=self.host,
            call_id=f"{self.call_id[0]}{self.call_id[1]:x}",
            attempt=self.attempt,
            status_code=self.status,
            tags=self.tags,
            response_bytes=self.nbytes if self.status is not None else None,
            trace_context=self.trace_context,
        )
        self._attribute(record)
        end = self.end_at or perf_counter()
        record.duration_ms = (end - self.start) * 1000.0
        want_text = options.capture_content
        req_stream = self._scan_request(record)
        if self.status is not None:  # what the response was, whatever the request asked for
            ctype = _content_type(self.resp_headers)
            record.streamed = (
                "event-stream" in ctype
                or "ndjson" in ctype
                or (self.status < 400 and route.family.streamed_body(route.kind))
            )
        else:
            record.streamed = route.family.streams_by_default(route.kind) if req_stream is None else req_stream
        parsed = Parsed()
        if want_text:
            parsed.tools = ToolCalls(options.content_limit + _SCRUB_MARGIN)
        notes: list[str] = []
        try:
            self._parse(parsed, want_text, notes)
        except Exception as exc:
            notes.append(f"could not parse response: {type(exc).__name__}: {exc}")
            self.problem = "invalid_response"
            logger.warning("llm_monitor_mw: parse error for %s %s: %r", self.host, self.path, exc)
        try:
            self._tools(record, parsed, notes, options)
        except Exception as exc:  # pragma: no cover - defensive: the rest of the record stands
            record.tool_call_count = record.tool_names = record.tool_arguments = None
            logger.warning("llm_monitor_mw: tool-call capture failed: %r", exc)
        self._fill(record, parsed, notes)
        self._key(record, options)
        if want_text:
            try:
                self._content(record, parsed, options)
            except Exception as exc:
                record.request_content = record.response_content = None
                logger.warning("llm_monitor_mw: content capture failed (redact hook?): %r", exc)
        try:  # for listeners only (e.g. OpenTelemetry): a failure here never affects the record
            record.request_params = read_params(self.req_body)
            first, last = self.first_at, self.read_at or self.last_at  # read_at: the last chunk the caller got
            if record.streamed and self.chunks_after_first and first is not None and last is not None:
                record.chunk_timing = (self.chunks_after_first, max(0.0, last - first))
        except Exception as exc:
            record.request_params = None
            logger.warning("llm_monitor_mw: request parameters not read: %r", exc)
        return record

    def _key(self, record: CallRecord, options: CaptureOptions) -> None:
        """The API key's fingerprint and hint (see :mod:`.keys`); the key itself is dropped here, used or not."""
        credential, self.credential = self.credential, None
        if credential is None:
            return
        try:
            secret = options.key_secret() if options.key_secret is not None else None
            found = identify(credential, secret)
        except Exception as exc:  # pragma: no cover - defensive: the rest of the record stands
            logger.warning("llm_monitor_mw: key fingerprint failed: %s", type(exc).__name__)
            return
        if found is not None:
            record.key_fingerprint, record.key_hint = found

    def _attribute(self, record: CallRecord) -> None:
        """The inbound request's route, user, method and id (resolved in ``begin``); ``tags(user=...)`` wins. The
        trace: the inbound request's, else the outermost ``trace()`` block's."""
        inbound = self.inbound
        if inbound is not None:
            record.route = inbound.route
            record.user = inbound.user
            record.inbound_method = inbound.method
            record.inbound_request_id = inbound.request_id
        tag_user = self.tags.get("user")
        if tag_user:
            record.user = tag_user
        record.trace_id, record.trace_name, record.span_name = trace_fields(self.trace, inbound)

    def _scan_request(self, record: CallRecord) -> bool | None:
        """Requested model, stream flag and service tier from a bounded scan of both ends of the request body."""
        record.request_model = self.route.path_model
        body = self.req_body
        if not body:
            return None
        windows = (body,) if len(body) <= 2 * SCAN_BYTES else (body[:SCAN_BYTES], body[-SCAN_BYTES:])
        stream: bool | None = None
        for window in windows:
            if record.request_model is None or record.request_model == self.route.path_model:
                match = _MODEL_RE.search(window)
                if match:
                    raw = match.group(1)
                    try:
                        model = json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()
                    except ValueError:
                        model = raw.decode("utf-8", "replace")
                    record.request_model = _model_name(model)
            if stream is None:
                smatch = _STREAM_RE.search(window)
                if smatch:
                    stream = smatch.group(1) == b"true"
            if record.service_tier is None:  # the tier asked for; the response's, when it says, wins in _fill
                tmatch = _TIER_RE.search(window)
                if tmatch:
                    record.service_tier = tmatch.group(1).decode()
        return stream

    def _parse(self, parsed: Parsed, want_text: bool, notes: list[str]) -> None:
        route = self.route
        family, kind = route.family, route.kind
        if self.mode == BODY:
            if self.parts is None or self.status is None:
                return
            raw = b"".join(self.parts)
            if not raw.strip():
                if self.state == COMPLETE and self.status < 400:
                    notes.append("empty response body")
                return
            try:
                body = json.loads(raw)
            except ValueError as exc:
                if self.state == COMPLETE:
                    ctype = _content_type(self.resp_headers)
                    notes.append(f"response is not valid JSON ({ctype}, {len(raw)} bytes): {exc}")
                    self.problem = "invalid_response"
                    if self.status >= 400:
                        parsed.error = raw[:300].decode("utf-8", "replace")
                return
            parsed.completed = True
            family.parse_body(kind, body, parsed, want_text)
            return
        if self.mode < 0 or self.head is None or self.tail is None:
            return
        stats = StreamDecodeStats()
        events = sse_events if self.mode == SSE else ndjson_events
        head, tail = b"".join(self.head), b"".join(self.tail)
        if self.dropped:  # bytes were dropped between the windows: an event may be cut at each inner edge
            windows = [(head.decode("utf-8", "replace"), False, True), (tail.decode("utf-8", "replace"), True, False)]
        else:
            windows = [((head + tail).decode("utf-8", "replace"), False, False)]
        del head, tail
        for text, skip_first, skip_last in windows:
            for event in events(text, stats, skip_first=skip_first, skip_last=skip_last):
                family.parse_event(kind, event, parsed, want_text)
        if stats.done_marker:
            parsed.completed = True
        if stats.bad:
            notes.append(f"{stats.bad} malformed stream event(s) skipped")
            self.problem = "malformed_stream"
        if stats.oversized:
            notes.append(f"{stats.oversized} stream event(s) over {MAX_EVENT_BYTES} bytes skipped")
        over = self.decoder is not None and self.decoder.over
        if over:
            notes.append(
                f"response stream larger than max_body_bytes={self.max_body} decoded bytes; "
                "only its first bytes were decoded and parsed"
            )
        elif self.state == COMPLETE and not parsed.completed and self.status is not None and self.status < 400:
            notes.append("stream ended without the provider's end-of-stream marker (truncated)")
            self.problem = "incomplete_stream"

    def _fill(self, record: CallRecord, parsed: Parsed, notes: list[str]) -> None:
        notes.extend(parsed.notes)
        record.response_model = _model_name(parsed.response_model)
        record.input_tokens = parsed.input_tokens
        record.output_tokens = parsed.output_tokens
        record.total_tokens = parsed.total_tokens
        record.cached_tokens = parsed.cached_tokens
        record.cache_creation_tokens = parsed.cache_creation_tokens
        record.reasoning_tokens = parsed.reasoning_tokens
        record.cache_write_5m_tokens = parsed.cache_write_5m_tokens
        record.cache_write_1h_tokens = parsed.cache_write_1h_tokens
        record.service_tier = _short_text(parsed.service_tier) or record.service_tier
        record.response_id = _short_text(parsed.response_id)
        finish = parsed.finish_reason
        record.finish_reason = finish[:MODEL_CHARS] if isinstance(finish, str) else None
        if record.streamed:
            if self.first_at is not None:
                record.ttft_ms = (self.first_at - self.start) * 1000.0
            if self.last_at is not None:
                record.ttlt_ms = (self.last_at - self.start) * 1000.0
        first, last = self.first_at, self.last_at
        if record.output_tokens and record.streamed and first is not None and last is not None and last > first:
            record.output_tokens_per_s = finite(record.output_tokens / (last - first))
        elif record.output_tokens and record.duration_ms:
            record.output_tokens_per_s = finite(record.output_tokens / (record.duration_ms / 1000.0))
        self._headers(record, notes)
        error_type, error = parsed.error_type, parsed.error
        if self.state == FAILED:
            error_type, error = self.exc_type, self.exc_text or self.exc_type
        elif self.state == BROKEN:
            error_type = error_type or self.exc_type
            notes.insert(0, f"response stream broke: {self.exc_type}: {self.exc_text}")
        elif self.state == ABANDONED and not parsed.completed:
            # SDKs close a stream right after its end marker without draining to EOF: that is not abandonment.
            notes.insert(0, "response closed by the caller before the end of the body")
        elif self.state == DROPPED and not parsed.completed:
            notes.insert(0, "response dropped by the caller without closing it (recorded at garbage collection)")
        elif self.state == EXITED and self.status is None:
            notes.insert(0, "the process exited before the response arrived (recorded at exit)")
        elif self.state == EXITED and not parsed.completed:
            notes.insert(0, "response still open at exit, never closed by the caller (recorded at exit)")
        if error_type is None:
            if self.status is not None and self.status >= 400:
                error_type = f"http_{self.status}"
            elif self.problem is not None:
                error_type = self.problem
        if self.note:
            notes.append(self.note)
        if notes:
            error = "; ".join([error, *notes] if error else notes)
        record.error_type = error_type
        record.error = scrub(error) if error else None

    def _tools(self, record: CallRecord, parsed: Parsed, notes: list[str], options: CaptureOptions) -> None:
        """The tool calls asked for: known (``0`` = none) for a complete response, else left ``None``.

        A stream keeps only its first and last bytes: when its middle was dropped, calls named there cannot be
        seen, so the count stays unknown (with a note) unless nothing could have been missed: the request offered
        no tools, the stream ended with a complete list of its output (the Responses API), or its finish reason
        rules tool calls out (Anthropic's ``end_turn``).
        """
        tools = parsed.tools
        if self.route.kind not in _TOOL_OPERATIONS or self.status is None or self.status >= 400 or parsed.error_type:
            return
        if not (parsed.completed or tools.final):
            if tools.count:
                notes.append(f"tool calls unknown: the response ended early ({tools.count} seen before it did)")
            return
        if self.mode != BODY and self.dropped and not tools.final:
            if not self._offers_tools():
                record.tool_call_count, record.tool_names = 0, []
                return
            if parsed.finish_reason not in self.route.family.NO_TOOL_FINISH:
                notes.append(
                    "tool calls unknown: the middle of the stream was not kept (streams keep their first "
                    f"{HEAD_BYTES // 1024} KiB and last {TAIL_BYTES // 1024} KiB)"
                )
                return
        record.tool_call_count = tools.count
        record.tool_names = tools.names
        if tools.count > len(tools.calls):
            notes.append(f"tool_names lists the first {MAX_CALLS} of {tools.count} tool calls")
        if options.capture_content and tools.calls:
            try:
                record.tool_arguments = _tool_arguments(tools, options)
            except Exception as exc:
                logger.warning("llm_monitor_mw: tool-call arguments capture failed (redact hook?): %r", exc)

    def _offers_tools(self) -> bool:
        """Whether the request may have offered tools: ``True`` unless it is plain JSON without a tools key."""
        body = self.req_body
        if not isinstance(body, bytes) or body[:64].lstrip()[:1] != b"{":
            return True
        return any(key in body for key in _TOOLS_KEYS)

    def _headers(self, record: CallRecord, notes: list[str]) -> None:
        """Request id, rate-limit figures and retry wait from the response headers, each validated."""
        if self.resp_headers is None:
            return
        found = header_values(self.resp_headers, _RECORDED_HEADERS)

        def get(*names: bytes) -> tuple[str, str | None]:
            for name in names:
                value = found.get(name)
                if value is not None:
                    return name.decode("ascii"), value.decode("latin-1")
            return names[0].decode("ascii"), None

        request_id = get(b"x-request-id", b"request-id", b"x-goog-request-id")[1]
        if request_id is not None:
            record.request_id = scrub(request_id.strip()[:MODEL_CHARS]) or None
        name, value = get(b"x-ratelimit-remaining-requests", b"anthropic-ratelimit-requests-remaining")
        record.ratelimit_remaining_requests = header_count(value, name, notes)
        name, value = get(
            b"x-ratelimit-remaining-tokens",
            b"anthropic-ratelimit-tokens-remaining",
            b"anthropic-ratelimit-input-tokens-remaining",
        )
        record.ratelimit_remaining_tokens = header_count(value, name, notes)
        value = found.get(b"retry-after-ms")
        if value is not None:
            record.retry_after_s = header_seconds(value.decode("latin-1"), 0.001, "retry-after-ms", notes)
        else:
            value = found.get(b"retry-after")
            if value is not None:
                record.retry_after_s = _retry_after(value.decode("latin-1"), self.started_at, notes)

    def _content(self, record: CallRecord, parsed: Parsed, options: CaptureOptions) -> None:
        limit = options.content_limit
        redact = options.redact
        body = self.req_body
        if body:
            try:
                text = prompt_text(json.loads(body))
            except ValueError:
                text = None
            if text is None:
                text = body[: limit * 4].decode("utf-8", "replace")
            record.request_content = _clip(text, limit, redact)
        if parsed.text_parts:
            record.response_content = _clip("".join(parsed.text_parts), limit, redact)


def _tool_arguments(tools: ToolCalls, options: CaptureOptions) -> str:
    """The kept calls as a JSON array of ``{"name", "arguments"}``, the arguments' text cut to ``content_limit``
    characters in all (scrubbed of secrets and passed through ``redact`` like other content)."""
    room = options.content_limit
    entries = []
    for call in tools.calls:
        text = _clip(call.arguments, max(0, room), options.redact)
        if call.cut and not text.endswith(_TRUNCATED):
            text += _TRUNCATED
        room -= len(text)
        entries.append({"name": call.name or "?", "arguments": text})
    return json.dumps(entries, ensure_ascii=False)


def _join_newest(pieces: list[bytes] | deque[bytes]) -> None:
    """Many tiny reads: join the newest small pieces of a window into one (older and large pieces stay)."""
    newest: list[bytes] = []
    while pieces and len(newest) < MAX_PIECES // 2 and len(pieces[-1]) < JOIN_BYTES:
        newest.append(pieces.pop())
    if newest:
        newest.reverse()
        pieces.append(b"".join(newest))


def _content_type(headers: Any) -> str:
    if headers is None:
        return "?"
    return header_values(headers, _CONTENT_TYPE).get(b"content-type", b"?").decode("latin-1")


def _clip(text: str, limit: int, redact: Callable[[str], str] | None) -> str:
    # Scrub only what can be kept (a megabyte prompt costs ~35 ms to scrub); the margin catches a key cut in two.
    text = scrub(text[: limit + _SCRUB_MARGIN])
    if redact is not None:
        text = redact(text)
    return text if len(text) <= limit else text[:limit] + _TRUNCATED


def _short_text(value: Any) -> str | None:
    """A provider's short identifier (a tier, a response id) as text of at most ``MODEL_CHARS``, else ``None``."""
    return value[:MODEL_CHARS] if isinstance(value, str) and value else None


def _model_name(name: str | None) -> str | None:
    """A model name as stored: Google's resource prefix dropped (``models/text-embedding-004``), length bounded."""
    if name is None:
        return None
    return name.removeprefix("models/")[:MODEL_CHARS] or None


def _retry_after(value: str, now: float, notes: list[str]) -> float | None:
    """``Retry-After`` in seconds: delay-seconds, or an HTTP-date (RFC 9110) counted from ``now``."""
    text = value.strip()
    if not text[:1].isalpha():
        return header_seconds(text, 1.0, "retry-after", notes)
    try:
        seconds = max(0.0, parsedate_to_datetime(text).timestamp() - now)
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan  # "inf", "nan" and non-dates land here too
    if 0.0 <= seconds <= MAX_WAIT_S:
        return seconds
    reject(notes, "retry-after", value)
    return None
