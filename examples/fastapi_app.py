"""FastAPI app: the monitor mounted at /monitoring behind basic auth, calls attributed to route and user."""

from __future__ import annotations

import httpx
import openai
import uvicorn
from _llm import api_key, llm_base_url, password
from fastapi import FastAPI, Request

from llm_monitor_mw import BasicAuth, Monitor

monitor = Monitor("examples_fastapi.db")
client = openai.AsyncOpenAI(
    base_url=llm_base_url(),
    api_key=api_key(),
    http_client=httpx.AsyncClient(transport=monitor.async_transport()),
)

app = FastAPI()
app.mount("/monitoring", monitor.asgi_app(auth=BasicAuth("admin", password())))
app.add_middleware(monitor.asgi_middleware, user=lambda request: request.headers.get("x-user", "anonymous"))


@app.get("/chat/{chat_id}")
async def chat(chat_id: int, request: Request, q: str = "Say hello") -> dict[str, str | None]:
    with monitor.tags(feature="chat"):
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": q}])
    return {"chat": str(chat_id), "reply": reply.choices[0].message.content}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8001)
