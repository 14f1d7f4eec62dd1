"""The demo: a small app making real `openai` SDK calls against the bundled fake LLM server, with the monitor's
API mounted at ``/monitoring``. No API key, no network beyond 127.0.0.1.

    python -m llm_monitor_mw.demo [--port 8000] [--db llm_monitor_demo.db]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from .fake import FakeLLMServer
from .monitor import Monitor

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-nano")


def build_app(monitor: Monitor, llm_base_url: str) -> Starlette:
    """A host app with one LLM-backed route and the monitor mounted at /monitoring."""
    client = openai.AsyncOpenAI(
        base_url=llm_base_url + "/v1",
        api_key="sk-demo-not-a-real-key",
        http_client=httpx.AsyncClient(transport=monitor.async_transport()),
        max_retries=2,
    )

    async def chat(request: Request) -> JSONResponse:
        prompt = request.query_params.get("q", "Say hello")
        with monitor.tags(feature="chat"):
            reply = await client.chat.completions.create(
                model=request.query_params.get("model", "gpt-4o-mini"),
                messages=[{"role": "user", "content": prompt}],
            )
        return JSONResponse({"reply": reply.choices[0].message.content})

    async def traffic() -> None:
        """Background calls so the numbers move: plain, streamed, embeddings, and the odd failure."""
        while True:
            model = random.choice(MODELS)
            headers: dict[str, str] = {"x-fake-chunk-delay": f"{random.uniform(0.005, 0.05):.3f}"}
            if random.random() < 0.08:
                headers.update(
                    {
                        "x-fake-status": random.choice(["429", "500"]),
                        "x-fake-fail-times": "1",
                        "x-fake-key": str(random.random()),
                    }
                )
            with contextlib.suppress(openai.APIError), monitor.tags(feature=random.choice(["summarize", "search"])):
                kind = random.random()
                if kind < 0.5:
                    stream = await client.chat.completions.create(
                        model=model,
                        messages=[{"role": "user", "content": "hi"}],
                        stream=True,
                        stream_options={"include_usage": True},
                        extra_headers=headers,
                    )
                    async for _ in stream:
                        pass
                elif kind < 0.85:
                    await client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": "hi"}], extra_headers=headers
                    )
                else:
                    await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
            await asyncio.sleep(random.uniform(0.3, 1.5))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(traffic())
        yield
        task.cancel()
        await client.close()

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("Demo app. Try /chat?q=hello, then /monitoring/ and /monitoring/api/requests\n")

    return Starlette(
        routes=[Route("/", home), Route("/chat", chat), Mount("/monitoring", app=monitor.asgi_app())],
        lifespan=lifespan,
    )


DEFAULT_DB = "llm_monitor_demo.db"
"""The demo's database file, in the current directory (a name no other tool's file is likely to have)."""


def main(argv: list[str] | None = None) -> None:
    """Run the demo until interrupted: the fake LLM server, the app on ``--port``, calls recorded in ``--db``."""
    parser = argparse.ArgumentParser(
        description="Run the llm-monitor-mw demo on 127.0.0.1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=8000, help="the demo app's port")
    parser.add_argument("--db", default=DEFAULT_DB, help="the SQLite file the calls are recorded in")
    args = parser.parse_args(argv)
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    with FakeLLMServer() as llm, Monitor(args.db) as monitor:
        app: Any = build_app(monitor, llm.base_url)
        print(f"fake LLM server: {llm.base_url}")
        print(f"demo app:        http://127.0.0.1:{args.port}/chat?q=hello")
        print(f"monitoring:      http://127.0.0.1:{args.port}/monitoring/  (API: /monitoring/api/requests)")
        print(f"database:        {args.db}")
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
