"""Request attribution: outbound LLM calls tied to the inbound request that caused them.

Real parts only: FastAPI served by uvicorn on 127.0.0.1, Starlette with nested mounts, Flask through werkzeug's
test client, the real ``openai`` SDK through the monitor's transports, against the bundled fake LLM server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import flask
import httpx
import openai
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.context import InboundRequest, current_inbound
from llm_monitor_mw.fake_llm import FakeLLMServer
from llm_monitor_mw.middleware import AttributionMiddleware, WSGIAttributionMiddleware
from tests.conftest import only_record, records

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


# ---- helpers -------------------------------------------------------------------------------------------------


def sync_openai(monitor: Monitor, fake: FakeLLMServer) -> openai.OpenAI:
    http = httpx.Client(transport=monitor.transport())
    return openai.OpenAI(base_url=fake.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)


def async_openai(monitor: Monitor, fake: FakeLLMServer) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=monitor.async_transport())
    return openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="sk-test", http_client=http, max_retries=0)


def rows_of(monitor: Monitor, request_id: str) -> list[dict[str, Any]]:
    """The recorded calls of one inbound request, oldest first."""
    return [r for r in records(monitor) if r["inbound_request_id"] == request_id]


class HeaderAuth:
    """A host auth middleware (inside ours): puts the ``x-user`` header in ``request.state.user``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            user = dict(scope["headers"]).get(b"x-user")
            scope.setdefault("state", {})["user"] = None if user is None else user.decode()
        await self.app(scope, receive, send)


class UserResolver:
    """``request.state.user``, counting runs per request id; raises for the user ``raise``."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()

    def __call__(self, request: Request) -> str | None:
        self.runs[request.headers.get("x-request-id", "")] += 1
        user = getattr(request.state, "user", None)
        if user == "raise":
            raise RuntimeError("user lookup is down")
        return user


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="attribution-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "app server did not start"
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# ---- FastAPI under uvicorn -----------------------------------------------------------------------------------


def fastapi_app(monitor: Monitor, fake: FakeLLMServer, resolver: UserResolver) -> FastAPI:
    aclient = async_openai(monitor, fake)
    sclient = sync_openai(monitor, fake)

    async def ask(delay: float = 0.0) -> str | None:
        headers = {"x-fake-chunk-delay": str(delay)} if delay else None
        reply = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
        return reply.choices[0].message.content

    app = FastAPI()

    @app.api_route("/chat/{chat_id}", methods=["GET", "POST"])
    async def chat(chat_id: int, delay: float = 0.0) -> dict[str, Any]:
        return {"chat_id": chat_id, "reply": await ask(delay)}

    @app.get("/fanout")
    async def fanout() -> dict[str, Any]:
        with monitor.tags(feature="fanout", step="outer"):

            async def nested() -> str | None:
                with monitor.tags(step="inner", depth=2):
                    return await ask()

            await asyncio.gather(ask(), ask(), nested())
            await run_in_threadpool(lambda: sclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
            with monitor.tags(user="explicit-user"):
                await ask()
        return {"ok": True}

    items = APIRouter(prefix="/items")

    @items.get("/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        return {"reply": await ask()}

    v2 = APIRouter()
    v2.include_router(items)
    app.include_router(v2, prefix="/v2")

    tenant_app, pings = FastAPI(), APIRouter()

    @pings.get("/ping/{n}")
    async def ping(n: int) -> dict[str, Any]:
        return {"reply": await ask()}

    tenant_app.include_router(pings, prefix="/v3")
    app.mount("/tenants/{tenant}", tenant_app)
    app.add_middleware(HeaderAuth)  # added first: runs *inside* the attribution middleware
    app.add_middleware(monitor.asgi_middleware, user=resolver)
    return app


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLMServer) -> Iterator[tuple[Monitor, str, Any]]:
    """One monitor and one FastAPI server for the module; tests tell their calls apart by request id."""
    monitor = Monitor(tmp_path_factory.mktemp("attribution") / "calls.db", flush_interval=0.05)
    resolver = UserResolver()
    with serve(fastapi_app(monitor, fake_llm, resolver)) as base_url:
        yield monitor, base_url, resolver
    monitor.close()


def test_fastapi_route_user_method_and_request_id(live: tuple[Monitor, str, Any]) -> None:
    monitor, base_url, resolver = live
    answer = httpx.post(f"{base_url}/chat/42", headers={"x-request-id": "req-fastapi-1", "x-user": "alice"})
    assert answer.status_code == 200 and answer.json()["reply"] == "Hello from the fake LLM."
    [row] = rows_of(monitor, "req-fastapi-1")
    assert row["route"] == "/chat/{chat_id}"
    assert row["user"] == "alice"  # resolved lazily: HeaderAuth (inside ours) had set request.state.user
    assert row["inbound_method"] == "POST"
    assert row["ok"] and row["model"] == "gpt-4o-mini"
    assert resolver.runs["req-fastapi-1"] == 1


def test_fastapi_fresh_request_ids_without_header(live: tuple[Monitor, str, Any]) -> None:
    monitor, base_url, _ = live
    for _ in range(2):
        assert httpx.get(f"{base_url}/chat/7", headers={"x-user": "no-id-user"}).status_code == 200
    ids = [r["inbound_request_id"] for r in records(monitor, user="no-id-user")]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_fastapi_nested_include_router_prefixes(live: tuple[Monitor, str, Any]) -> None:
    monitor, base_url, _ = live
    assert httpx.get(f"{base_url}/v2/items/abc-123", headers={"x-request-id": "req-nested"}).status_code == 200
    [row] = rows_of(monitor, "req-nested")
    assert row["route"] == "/v2/items/{item_id}"  # never the raw path, never without the include prefixes
    assert row["user"] is None and row["inbound_method"] == "GET"


def test_fastapi_app_mounted_with_a_path_parameter(live: tuple[Monitor, str, Any]) -> None:
    monitor, base_url, _ = live
    assert httpx.get(f"{base_url}/tenants/acme/v3/ping/5", headers={"x-request-id": "req-tenant"}).status_code == 200
    [row] = rows_of(monitor, "req-tenant")
    assert row["route"] == "/tenants/{tenant}/v3/ping/{n}"


def test_fastapi_gather_threadpool_tags_and_explicit_user(live: tuple[Monitor, str, Any]) -> None:
    monitor, base_url, resolver = live
    answer = httpx.get(f"{base_url}/fanout", headers={"x-request-id": "req-fanout", "x-user": "bob"})
    assert answer.status_code == 200
    rows = rows_of(monitor, "req-fanout")
    assert len(rows) == 5  # three gathered tasks, one in the thread pool, one with an explicit user
    assert {r["route"] for r in rows} == {"/fanout"}
    assert sorted(r["user"] for r in rows) == ["bob", "bob", "bob", "bob", "explicit-user"]
    tags = sorted((r["tags"] for r in rows), key=lambda t: sorted(t.items()))
    assert {"feature": "fanout", "step": "inner", "depth": "2"} in tags
    assert tags.count({"feature": "fanout", "step": "outer"}) == 3
    assert {"feature": "fanout", "step": "outer", "user": "explicit-user"} in tags
    assert resolver.runs["req-fanout"] == 1  # resolved once per inbound request, not once per call


def test_fastapi_concurrent_requests_keep_their_own_attribution(live: tuple[Monitor, str, Any]) -> None:
    monitor, base_url, _ = live

    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.get(f"/chat/{i}?delay=0.05", headers={"x-request-id": f"req-conc-{i}", "x-user": f"u{i}"})
                    for i in range(8)
                )
            )
        return [a.status_code for a in answers]

    assert asyncio.run(main()) == [200] * 8
    for i in range(8):
        [row] = rows_of(monitor, f"req-conc-{i}")
        assert (row["user"], row["route"]) == (f"u{i}", "/chat/{chat_id}")


def test_fastapi_raising_user_resolver_does_not_break_the_request(
    live: tuple[Monitor, str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    monitor, base_url, _ = live
    with caplog.at_level(logging.WARNING, logger="llm_monitor_mw"):
        answer = httpx.get(f"{base_url}/chat/1", headers={"x-request-id": "req-raise", "x-user": "raise"})
    assert answer.status_code == 200 and answer.json()["reply"] == "Hello from the fake LLM."
    [row] = rows_of(monitor, "req-raise")
    assert row["user"] is None and row["route"] == "/chat/{chat_id}" and row["ok"]
    lines = [r for r in caplog.records if "user resolver" in r.getMessage()]
    assert len(lines) == 1 and "user lookup is down" in lines[0].getMessage()


# ---- Starlette with nested mounts (in process) ---------------------------------------------------------------


def starlette_app(monitor: Monitor, fake: FakeLLMServer) -> Starlette:
    client = sync_openai(monitor, fake)

    def call() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    async def via_threadpool(request: Request) -> JSONResponse:
        await run_in_threadpool(call)
        return JSONResponse({"ok": True})

    def sync_endpoint(request: Request) -> JSONResponse:  # Starlette runs it in its thread pool
        call()
        return JSONResponse({"ok": True})

    async def raw_asgi(scope: Any, receive: Any, send: Any) -> None:  # a non-router app under a mount
        await run_in_threadpool(call)
        await PlainTextResponse("raw")(scope, receive, send)

    class CallsBeforeRouting:
        """A host middleware inside ours that calls an LLM before the router has matched anything."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].endswith("/pre"):
                await run_in_threadpool(call)
            await self.app(scope, receive, send)

    org_app = Starlette(routes=[Route("/items/{item_id}", sync_endpoint)])
    return Starlette(
        routes=[
            Mount("/api", routes=[Mount("/v1", routes=[Route("/chat/{chat_id}", via_threadpool)])]),
            Mount("/orgs/{org}", app=org_app),
            Mount("/raw", app=raw_asgi),
            Route("/plain/{x:int}", sync_endpoint),
        ],
        middleware=[
            Middleware(AttributionMiddleware, user=lambda r: r.headers.get("x-user"), request_id_header="X-Trace"),
            Middleware(CallsBeforeRouting),
        ],
    )


@pytest.mark.parametrize("root_path", ["", "/proxy"])
def test_starlette_nested_mount_templates(
    root_path: str, monitor: Monitor, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    app = starlette_app(monitor, fake_llm)
    expected = {
        "/api/v1/chat/99": "/api/v1/chat/{chat_id}",
        "/orgs/acme/items/5": "/orgs/{org}/items/{item_id}",
        "/raw/anything/here": "/raw/{path}",
        "/plain/3": "/plain/{x}",
        "/nothing/pre": None,  # called before routing, and no route matched afterwards
    }
    with TestClient(app, root_path=root_path) as client:
        for n, path in enumerate(expected):
            answer = client.get(root_path + path, headers={"x-trace": f"t{n}", "x-user": "carol"})
            assert answer.status_code == (404 if path == "/nothing/pre" else 200), path
    for n, (path, route) in enumerate(expected.items()):
        [row] = rows_of(monitor, f"t{n}")
        assert row["route"] == route, path
        assert (row["user"], row["inbound_method"]) == ("carol", "GET")


def test_asgi_host_exceptions_propagate_unchanged() -> None:
    error = ValueError("host bug")
    seen: list[InboundRequest | None] = []

    async def host(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_inbound.get())
        raise error

    scope = {"type": "http", "method": "PUT", "path": "/x", "headers": [(b"x-request-id", b"abc")]}
    with pytest.raises(ValueError) as caught:
        asyncio.run(AttributionMiddleware(host)(scope, None, None))  # type: ignore[arg-type]
    assert caught.value is error
    assert seen[0] is not None and (seen[0].method, seen[0].request_id) == ("PUT", "abc")
    assert current_inbound.get() is None


def test_asgi_internal_error_is_logged_and_the_host_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[bool] = []

    async def host(scope: Any, receive: Any, send: Any) -> None:
        ran.append(current_inbound.get() is None)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"malformed",)]}
    with caplog.at_level(logging.WARNING, logger="llm_monitor_mw"):
        asyncio.run(AttributionMiddleware(host)(scope, None, None))  # type: ignore[arg-type]
    assert ran == [True]
    assert any("attribution skipped" in r.getMessage() for r in caplog.records)


def test_asgi_non_http_scopes_pass_through() -> None:
    seen: list[InboundRequest | None] = []

    async def host(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_inbound.get())

    asyncio.run(AttributionMiddleware(host)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == [None]


# ---- Flask (WSGI) --------------------------------------------------------------------------------------------


def flask_app(monitor: Monitor, fake: FakeLLMServer, user: Callable[[dict[str, Any]], str | None]) -> flask.Flask:
    client = sync_openai(monitor, fake)

    def call() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    app = flask.Flask(__name__)
    app.config["TESTING"] = True  # the host's own exceptions propagate to the test client
    api = flask.Blueprint("api", __name__, url_prefix="/api")

    @api.post("/chat/<int:chat_id>")
    def chat(chat_id: int) -> dict[str, Any]:
        call()
        call()
        return {"chat_id": chat_id}

    @api.get("/stream")
    def stream() -> flask.Response:
        @flask.stream_with_context
        def body() -> Iterator[str]:
            yield "start "
            call()  # an LLM call made while the WSGI server iterates the body
            yield "end"

        return flask.Response(body())

    @api.get("/boom")
    def boom() -> str:
        raise LookupError("host bug")

    app.register_blueprint(api)
    app.wsgi_app = monitor.wsgi_middleware(app.wsgi_app, user=user)  # type: ignore[method-assign]
    return app


def test_flask_rule_user_method_and_request_id(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    runs: list[str] = []

    def user(environ: dict[str, Any]) -> str | None:
        runs.append(environ["PATH_INFO"])
        return environ.get("HTTP_X_USER")

    app = flask_app(monitor, fake_llm, user)
    answer = app.test_client().post("/api/chat/12", headers={"X-Request-ID": "flask-1", "X-User": "dora"})
    assert answer.status_code == 200
    answer.close()  # a WSGI server closes the response iterable: that is when the attribution ends
    rows = rows_of(monitor, "flask-1")
    assert len(rows) == 2
    for row in rows:
        assert (row["route"], row["user"], row["inbound_method"]) == ("/api/chat/<int:chat_id>", "dora", "POST")
    assert runs == ["/api/chat/12"]  # once per inbound request
    assert current_inbound.get() is None


def test_flask_streamed_body_is_attributed_until_closed(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    app = flask_app(monitor, fake_llm, lambda environ: "erin")
    answer = app.test_client().get("/api/stream", headers={"X-Request-ID": "flask-stream"}, buffered=False)
    assert current_inbound.get() is not None  # the body has not been iterated yet: attribution still on
    assert b"".join(answer.response) == b"start end"
    answer.close()
    assert current_inbound.get() is None
    [row] = rows_of(monitor, "flask-stream")
    assert (row["route"], row["user"], row["inbound_method"]) == ("/api/stream", "erin", "GET")


def test_flask_host_exception_propagates_and_resolver_errors_are_swallowed(
    monitor: Monitor, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    def user(environ: dict[str, Any]) -> str | None:
        raise RuntimeError("no session store")

    app = flask_app(monitor, fake_llm, user)
    client = app.test_client()
    with pytest.raises(LookupError, match="host bug"):
        client.get("/api/boom")
    assert current_inbound.get() is None
    with caplog.at_level(logging.WARNING, logger="llm_monitor_mw"):
        answer = client.post("/api/chat/1", headers={"X-Request-ID": "flask-raise"})
        answer.close()
    assert answer.status_code == 200
    rows = rows_of(monitor, "flask-raise")
    assert [(r["user"], r["route"]) for r in rows] == [(None, "/api/chat/<int:chat_id>")] * 2
    assert len([r for r in caplog.records if "user resolver" in r.getMessage()]) == 1


def test_wsgi_request_id_header_and_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[InboundRequest | None] = []

    def host(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(current_inbound.get())
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ok"]

    middleware = WSGIAttributionMiddleware(host, request_id_header="X-Trace-Id")
    body = middleware({"REQUEST_METHOD": "DELETE", "HTTP_X_TRACE_ID": " t-1 "}, lambda *a: None)
    assert list(body) == [b"ok"]
    body.close()  # type: ignore[attr-defined]
    assert seen[0] is not None and (seen[0].method, seen[0].request_id, seen[0].route) == ("DELETE", "t-1", None)
    with caplog.at_level(logging.WARNING, logger="llm_monitor_mw"):
        body = middleware({"REQUEST_METHOD": "GET", "HTTP_X_TRACE_ID": 123}, lambda *a: None)  # not a str
    assert list(body) == [b"ok"] and seen[1] is None
    assert any("attribution skipped" in r.getMessage() for r in caplog.records)
    assert current_inbound.get() is None


# ---- without middleware ----------------------------------------------------------------------------------------


def test_tags_user_sets_the_user_without_middleware(monitor: Monitor, fake_llm: FakeLLMServer) -> None:
    client = sync_openai(monitor, fake_llm)
    with monitor.tags(user="frank", feature="batch"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    row = only_record(monitor)
    assert row["user"] == "frank" and row["tags"] == {"user": "frank", "feature": "batch"}
    assert row["route"] is None and row["inbound_method"] is None and row["inbound_request_id"] is None
