"""One instance of a fleet, for the end-to-end tests: ``uvicorn tests.e2e.fleet_app:app`` (one process per instance).

A host app with the attribution middleware, an endpoint that makes real openai SDK calls to the bundled fake LLM,
and the monitoring app mounted at ``/monitoring``. Configured through the environment: ``E2E_DSN`` (the shared
PostgreSQL database), ``E2E_INSTANCE``, ``E2E_FAKE_URL``, ``E2E_MAX_QUEUE`` (default 100000), ``E2E_PASSWORD``
(Basic auth of the dashboard, user ``admin``) and ``E2E_TOKEN`` (bearer token for ``/metrics`` and ``/health``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
import openai
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from llm_monitor_mw import BasicAuth, Monitor

monitor = Monitor(
    os.environ["E2E_DSN"],
    instance=os.environ["E2E_INSTANCE"],
    max_queue=int(os.environ.get("E2E_MAX_QUEUE", "100000")),
    flush_interval=0.05,
)
client = openai.OpenAI(
    base_url=os.environ["E2E_FAKE_URL"] + "/v1",
    api_key="sk-test",
    http_client=httpx.Client(transport=monitor.transport(), timeout=30),
    max_retries=0,
)
MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


def work(request: Request) -> JSONResponse:
    """Make ``n`` chat calls (every second one streamed); answer how long each took, in milliseconds."""
    n = int(request.query_params.get("n", "1"))
    took = []
    for i in range(n):
        began = time.perf_counter()
        if i % 2:
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            for _ in stream:
                pass
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        took.append((time.perf_counter() - began) * 1000)
    return JSONResponse({"pid": os.getpid(), "instance": monitor.instance, "calls": n, "ms": took})


app = Starlette(
    routes=[
        Route("/work", work),
        Mount(
            "/monitoring",
            app=monitor.asgi_app(
                auth=BasicAuth("admin", os.environ["E2E_PASSWORD"]), metrics_token=os.environ["E2E_TOKEN"]
            ),
        ),
    ],
    middleware=[Middleware(monitor.asgi_middleware)],
)
