"""The demo's four providers: one bundled fake LLM server each, named as the real services are, and the clients
that call them (the real ``openai`` and ``anthropic`` SDKs, plain ``httpx`` for Gemini and Ollama).

Each provider gets its own fake server so that its calls can be told apart by address: ``Monitor(hosts=...)`` maps
``127.0.0.1:<port>`` to the provider's name. The ports change at every start, the names never do, so a database
keeps one ``openai`` (not ``127.0.0.1:41234`` today and ``127.0.0.1:38811`` tomorrow) across restarts.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import anthropic
import httpx
import openai

try:
    import httpx2
except ImportError:  # older SDKs are built on httpx alone
    httpx2 = None  # type: ignore[assignment]

PROVIDERS = ("openai", "anthropic", "gcp.gemini", "ollama")
"""The providers' names, as ``capture/providers`` names the real services (OpenTelemetry GenAI vocabulary)."""

PRICES: dict[str, dict[str, float]] = {
    "ollama/llama3.2:3b": {"input": 0.0, "output": 0.0},
    "ollama/qwen2.5-coder:7b": {"input": 0.0, "output": 0.0},
}
"""Local models cost nothing: a price of zero (known), not an unknown price. Everything else is priced by
genai-prices at the real list prices."""

API_KEYS: dict[str, str] = {
    "openai": "sk-proj-demo0000notarealkey0000openai",
    "anthropic": "sk-ant-api03-demo0000notarealkey0000anthropic",
    "gcp.gemini": "AIzaDemo0000NotARealKey0000gemini",
}
"""One (fake) key per provider, so the Costs page's spend by API key has rows to show; never sent anywhere real."""


def http_lib(sdk: ModuleType) -> ModuleType:
    """The HTTP library an SDK is built on (``httpx2`` for ``openai`` >= 3 and ``anthropic`` >= 1, else ``httpx``):
    the one whose client it accepts."""
    if httpx2 is not None and issubclass(sdk.DefaultAsyncHttpxClient, httpx2.AsyncClient):
        return httpx2
    return httpx


class FakeProviders:
    """Four fake LLM servers on 127.0.0.1, one per provider, in a child process (``python -m
    llm_monitor_mw.demo.servers``) so that they run on a core of their own; ``hosts`` is the ``Monitor(hosts=...)``
    mapping. The child serves until its stdin closes, so it ends with the demo however the demo ends."""

    HOST = "127.0.0.1"

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> FakeProviders:
        """Start the servers (each on a free port); returns once they serve."""
        if self._process is not None:
            return self
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_monitor_mw.demo.servers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        try:
            ports = json.loads(line)
        except ValueError:
            process.kill()
            process.wait()
            raise RuntimeError(f"the demo's fake LLM servers did not start: {line!r}") from None
        self._process, self.ports = process, {name: int(ports[name]) for name in PROVIDERS}
        return self

    def stop(self) -> None:
        """Stop the servers and wait for their process to end."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def hosts(self) -> dict[str, str]:
        """``{"127.0.0.1:<port>": provider}`` for ``Monitor(hosts=...)``."""
        return {f"{self.HOST}:{port}": name for name, port in self.ports.items()}

    def url(self, provider: str) -> str:
        """The base URL of ``provider``'s fake server."""
        return f"http://{self.HOST}:{self.ports[provider]}"

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class Clients:
    """The demo's LLM clients, every one sending through the monitor's transport."""

    openai: openai.AsyncOpenAI
    anthropic: anthropic.AsyncAnthropic
    gemini: httpx.AsyncClient
    ollama: httpx.AsyncClient

    @classmethod
    def build(cls, monitor: Any, providers: FakeProviders) -> Clients:
        """Clients for ``providers``, recorded by ``monitor`` (SDK retries: 2, as the SDKs default)."""
        oa = openai.AsyncOpenAI(
            base_url=providers.url("openai") + "/v1",
            api_key=API_KEYS["openai"],
            http_client=http_lib(openai).AsyncClient(transport=monitor.async_transport(), timeout=30),
            max_retries=2,
        )
        an = anthropic.AsyncAnthropic(
            base_url=providers.url("anthropic"),
            api_key=API_KEYS["anthropic"],
            http_client=http_lib(anthropic).AsyncClient(transport=monitor.async_transport(), timeout=30),
            max_retries=2,
        )
        gemini = httpx.AsyncClient(
            base_url=providers.url("gcp.gemini"),
            headers={"x-goog-api-key": API_KEYS["gcp.gemini"]},
            transport=monitor.async_transport(),
            timeout=30,
        )
        ollama = httpx.AsyncClient(base_url=providers.url("ollama"), transport=monitor.async_transport(), timeout=30)
        return cls(oa, an, gemini, ollama)

    async def aclose(self) -> None:
        """Close every client."""
        with contextlib.suppress(Exception):
            await self.openai.close()
        with contextlib.suppress(Exception):
            await self.anthropic.close()
        await self.gemini.aclose()
        await self.ollama.aclose()
