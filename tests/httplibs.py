"""Which HTTP client libraries each installed SDK accepts, so SDK tests run against every supported pairing."""

from __future__ import annotations

from types import ModuleType

import httpx

try:
    import httpx2
except ImportError:
    httpx2 = None  # type: ignore[assignment]

import anthropic
import openai


def _major(module: ModuleType) -> int:
    return int(module.__version__.split(".")[0])


def libs_for_openai() -> list[ModuleType]:
    """openai >= 3 is built on httpx2 and still takes httpx clients; 2.x takes httpx only."""
    if _major(openai) >= 3:
        assert httpx2 is not None, "openai>=3 depends on httpx2"
        return [httpx2, httpx]
    return [httpx]


def libs_for_anthropic() -> list[ModuleType]:
    """anthropic >= 1 is built on httpx2 (2.x rejects httpx clients); 0.x uses httpx."""
    if _major(anthropic) >= 1:
        assert httpx2 is not None
        libs: list[ModuleType] = [httpx2]
        if _major(anthropic) < 2:
            libs.append(httpx)
        return libs
    return [httpx]


def lib_id(lib: ModuleType) -> str:
    return lib.__name__
