"""The example apps run as written: real openai SDK calls through the monitor, dashboard mounted behind auth."""

from __future__ import annotations

import base64
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.chdir(tmp_path)  # the examples write their SQLite file to the working directory
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    loaded: list[ModuleType] = []

    def _load(name: str) -> ModuleType:
        sys.modules.pop(name, None)
        module = importlib.import_module(name)
        loaded.append(module)
        return module

    yield _load
    for module in loaded:
        module.monitor.close()
        sys.modules.pop(module.__name__, None)


def test_fastapi_example(load) -> None:  # type: ignore[no-untyped-def]
    example = load("fastapi_app")
    client = TestClient(example.app)
    assert client.get("/chat/42", params={"q": "hi"}, headers={"x-user": "ana"}).json()["reply"]
    example.monitor.flush(5)
    assert client.get("/monitoring/api/requests").status_code == 401
    item = client.get("/monitoring/api/requests", headers=AUTH).json()["items"][0]
    assert (item["route"], item["user"], item["tags"]) == ("/chat/{chat_id}", "ana", {"feature": "chat"})


def test_starlette_example(load) -> None:  # type: ignore[no-untyped-def]
    example = load("starlette_app")
    client = TestClient(example.app)
    assert client.get("/chat", params={"q": "hi"}).json()["reply"]
    assert client.get("/ops/llm/api/requests", follow_redirects=False).status_code == 303  # to /login
    client.get("/login")
    example.monitor.flush(5)
    item = client.get("/ops/llm/api/requests").json()["items"][0]
    assert item["route"] == "/chat" and item["model"] == "gpt-4o-mini"


def test_flask_example(load) -> None:  # type: ignore[no-untyped-def]
    example = load("flask_app")
    client = WerkzeugClient(example.flask_app)
    assert client.get("/chat?q=hi", headers={"X-User": "bo"}, buffered=True).json["reply"]  # buffered: closed
    example.monitor.flush(5)
    response = client.get("/monitoring/api/requests", headers=AUTH, buffered=True)
    item = response.json["items"][0]
    assert (item["route"], item["user"]) == ("/chat", "bo")
