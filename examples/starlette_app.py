"""Starlette app: the monitor at /ops/llm behind a session-based Constraint; /login sets the session."""

from __future__ import annotations

import httpx
import openai
import uvicorn
from _llm import api_key, llm_base_url
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Mount, Route

from llm_monitor_mw import Constraint, Monitor

monitor = Monitor("examples_starlette.db")
client = openai.AsyncOpenAI(
    base_url=llm_base_url(),
    api_key=api_key(),
    http_client=httpx.AsyncClient(transport=monitor.async_transport()),
)


async def chat(request: Request) -> JSONResponse:
    reply = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": request.query_params.get("q", "Say hello")}]
    )
    return JSONResponse({"reply": reply.choices[0].message.content})


async def login(request: Request) -> RedirectResponse:
    request.session["role"] = "admin"  # a real app checks a password here
    return RedirectResponse(request.query_params.get("next", "/ops/llm/"), status_code=303)


is_admin = Constraint(
    lambda request: request.scope.get("session", {}).get("role") == "admin",
    redirect_to=lambda request: f"/login?next={request.url.path}",
)

app = Starlette(
    routes=[Route("/chat", chat), Route("/login", login), Mount("/ops/llm", app=monitor.asgi_app(auth=is_admin))],
    middleware=[
        Middleware(monitor.asgi_middleware, user=lambda request: request.scope.get("session", {}).get("role")),
        Middleware(SessionMiddleware, secret_key="change-me"),
    ],
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8002)
