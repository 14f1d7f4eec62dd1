"""The demo's host app: a small Starlette app whose routes call LLMs, with the attribution middleware around it
(each call records its route, user and request id: one trace per request) and the monitor mounted at
``/monitoring``. Users say who they are with an ``x-user`` header, as an auth proxy would.

Routes: ``GET /chat?q=...`` (one call, on demand), ``POST /chat/{chat_id}`` (a conversation turn),
``GET /search?q=...`` (embeddings + answer), ``POST /summarize/{doc_id}``, ``POST /agent/{task}`` (an agent with
tools inside one request). With ``live=True`` the lifespan keeps traffic flowing (see :func:`.traffic.live`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from ..middleware import AttributionMiddleware
from .calls import CallFailed
from .scenarios import BY_NAME, USERS, Demo, User
from .traffic import live

HOME = """llm-monitor-mw demo app.

Try GET /chat?q=hello, then open /monitoring/ (the dashboard) and /monitoring/api/requests (the API).
Other routes: POST /chat/{chat_id}, GET /search?q=..., POST /summarize/{doc_id}, POST /agent/{task};
send an x-user header (alice, bob, carol, dana, erin, frank, grace, heidi) to be that user.
"""


def _user(request: Request) -> User:
    return BY_NAME.get(request.headers.get("x-user", ""), USERS[0])


def build_app(demo: Demo, *, live_traffic: bool = False) -> Starlette:
    """The demo app over ``demo``'s clients; ``live_traffic`` starts background calls with the app."""

    async def answer(coro: Any) -> Response:
        try:
            return JSONResponse({"reply": await coro})
        except CallFailed as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)

    async def home(request: Request) -> Response:
        return PlainTextResponse(HOME)

    async def quick_chat(request: Request) -> Response:
        return await answer(demo.quick_chat(request.query_params.get("q", "Say hello")))

    async def chat_turn(request: Request) -> Response:
        body = await request.json() if await request.body() else {}
        message = str(body.get("message") or "Hello!")
        try:
            turn = max(0, min(50, int(body.get("turn", 0))))
        except (TypeError, ValueError):
            turn = 0
        return await answer(demo.chat_turn(_user(request), request.path_params["chat_id"], message, turn))

    async def search(request: Request) -> Response:
        return await answer(demo.search(_user(request), request.query_params.get("q", "getting started")[:200]))

    async def summarize(request: Request) -> Response:
        return await answer(demo.summarize(_user(request), request.path_params["doc_id"][:64]))

    async def agent(request: Request) -> Response:
        return await answer(demo.agent(_user(request), request.path_params["task"][:64]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if live_traffic:
            transport = httpx.ASGITransport(app=app)
            http = httpx.AsyncClient(transport=transport, base_url="http://demo.internal", timeout=60)
            task = asyncio.create_task(live(demo, http))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await http.aclose()

    app = Starlette(
        routes=[
            Route("/", home),
            Route("/chat", quick_chat),
            Route("/chat/{chat_id}", chat_turn, methods=["POST"]),
            Route("/search", search),
            Route("/summarize/{doc_id}", summarize, methods=["POST"]),
            Route("/agent/{task}", agent, methods=["POST"]),
            Mount("/monitoring", app=demo.monitor.asgi_app()),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(AttributionMiddleware, user=lambda request: request.headers.get("x-user"))
    return app
