"""A host app for the multi-worker test: ``uvicorn tests.ops.multiworker_app:app --workers 4``.

Every worker process imports this module and so has its own ``Monitor`` on the one shared SQLite file. Configured
through the environment: ``LLM_MONITOR_TEST_DB`` (file), ``LLM_MONITOR_TEST_FAKE_URL`` (a ``FakeLLMServer``),
``LLM_MONITOR_TEST_TOKEN`` (bearer token for ``/monitoring/metrics``) and ``LLM_MONITOR_TEST_PASSWORD``.
"""

from __future__ import annotations

import os
from typing import Any

import openai
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from llm_monitor_mw import BasicAuth, Monitor
from tests.httplibs import libs_for_openai

monitor = Monitor(os.environ["LLM_MONITOR_TEST_DB"], flush_interval=0.05)
client = openai.OpenAI(
    base_url=os.environ["LLM_MONITOR_TEST_FAKE_URL"] + "/v1",
    api_key="sk-test",
    http_client=libs_for_openai()[0].Client(transport=monitor.transport()),
    max_retries=0,
)
MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


def work(request: Request) -> JSONResponse:
    """Make ``n`` chat calls, every second one streamed (so time to first token is recorded too)."""
    n = int(request.query_params.get("n", "1"))
    streamed = 0
    for i in range(n):
        if i % 2:
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            for _ in stream:
                pass
            streamed += 1
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return JSONResponse({"pid": os.getpid(), "calls": n, "streamed": streamed})


app = Starlette(
    routes=[
        Route("/work", work),
        Mount(
            "/monitoring",
            app=monitor.asgi_app(
                auth=BasicAuth("admin", os.environ["LLM_MONITOR_TEST_PASSWORD"]),
                metrics_token=os.environ["LLM_MONITOR_TEST_TOKEN"],
            ),
        ),
    ]
)
