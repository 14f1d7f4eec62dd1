"""Flask app: the monitor at /monitoring (WSGI, behind basic auth), calls attributed to Flask's route rule."""

from __future__ import annotations

import httpx
import openai
from _llm import api_key, llm_base_url, password
from flask import Flask, jsonify, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from llm_monitor_mw import BasicAuth, Monitor

monitor = Monitor("examples_flask.db")
client = openai.OpenAI(
    base_url=llm_base_url(), api_key=api_key(), http_client=httpx.Client(transport=monitor.transport())
)

flask_app = Flask(__name__)


@flask_app.get("/chat")
def chat():  # type: ignore[no-untyped-def]
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": request.args.get("q", "Say hello")}]
    )
    return jsonify(reply=reply.choices[0].message.content)


flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
    flask_app.wsgi_app, {"/monitoring": monitor.wsgi_app(auth=BasicAuth("admin", password()))}
)
flask_app.wsgi_app = monitor.wsgi_middleware(  # type: ignore[method-assign]
    flask_app.wsgi_app, user=lambda environ: environ.get("HTTP_X_USER")
)

if __name__ == "__main__":
    flask_app.run(host="127.0.0.1", port=8003)
