"""The registry: which requests are LLM calls, which wire format they use, and which provider serves them.

The wire format (family) comes from the path; the provider's name from the host. Adding a family means adding a
module with ``name``, ``operation``, ``model_from_path``, ``streams_by_default``, ``parse_body`` and
``parse_event`` and listing it in ``FAMILIES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from . import anthropic, gemini, ollama, openai

# Checked in this order; the first family that claims the path wins.
FAMILIES: tuple[ModuleType, ...] = (gemini, ollama, anthropic, openai)

# Provider names follow the OpenTelemetry GenAI vocabulary (gen_ai.provider.name) where it has one.
PROVIDER_BY_HOST: dict[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral_ai",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "api.cohere.ai": "cohere",
    "api.cohere.com": "cohere",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.fireworks.ai": "fireworks",
    "api.cerebras.ai": "cerebras",
}
PROVIDER_BY_HOST_SUFFIX: tuple[tuple[str, str], ...] = (
    (".openai.azure.com", "azure.ai.openai"),
    (".cognitiveservices.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
)
PROVIDER_BY_PORT: dict[int, str] = {11434: "ollama", 1234: "lm_studio"}

# Internal operation kinds that the OpenTelemetry vocabulary names differently.
OTEL_OPERATION: dict[str, str] = {"responses": "chat", "stream_generate_content": "generate_content"}


@dataclass(frozen=True, slots=True)
class Route:
    """How to read one kind of request: its family, operation kind and provider name."""

    family: ModuleType
    kind: str
    provider: str
    path_model: str | None

    @property
    def operation(self) -> str:
        """The OpenTelemetry ``gen_ai.operation.name``."""
        return OTEL_OPERATION.get(self.kind, self.kind)


def provider_for(host: str, port: int | None, overrides: dict[str, str]) -> str:
    """The provider's name for a host: user overrides (``host`` or ``host:port``) first, then known hosts."""
    if overrides:
        named = overrides.get(f"{host}:{port}") if port is not None else None
        named = named or overrides.get(host)
        if named:
            return named
    known = PROVIDER_BY_HOST.get(host)
    if known:
        return known
    for suffix, provider in PROVIDER_BY_HOST_SUFFIX:
        if host.endswith(suffix):
            return provider
    if port in PROVIDER_BY_PORT:
        return PROVIDER_BY_PORT[port]  # type: ignore[index]
    return host if port is None else f"{host}:{port}"


class Registry:
    """Resolves ``(method, host, port, path)`` to a :class:`Route`; results are cached (bounded)."""

    MAX_CACHE = 4096

    def __init__(self, host_names: dict[str, str] | None = None, ignore_hosts: frozenset[str] = frozenset()):
        self._host_names = dict(host_names or {})
        self._ignore_hosts = ignore_hosts
        self._cache: dict[tuple[str, str, int | None, str], Route | None] = {}

    def resolve(self, method: str, host: str, port: int | None, path: str) -> Route | None:
        key = (method, host, port, path)
        try:
            return self._cache[key]
        except KeyError:
            pass
        route = self._resolve(method, host, port, path)
        if len(self._cache) >= self.MAX_CACHE:
            self._cache.clear()
        self._cache[key] = route
        return route

    def _resolve(self, method: str, host: str, port: int | None, path: str) -> Route | None:
        if host in self._ignore_hosts:
            return None
        for family in FAMILIES:
            kind = family.operation(method, path)
            if kind is not None:
                provider = provider_for(host, port, self._host_names)
                return Route(family, kind, provider, family.model_from_path(path))
        return None
