"""Scrubbing of secrets that providers sometimes echo back (e.g. in "invalid API key" error messages)."""

from __future__ import annotations

import re

_SECRET = re.compile(
    r"(?:sk-(?:proj-|ant-(?:api\d+-)?)?[A-Za-z0-9_\-]{8,}"  # OpenAI / Anthropic keys
    r"|AIza[0-9A-Za-z_\-]{20,}"  # Google API keys
    r"|gsk_[A-Za-z0-9]{20,}"  # Groq
    r"|(?i:bearer)\s+[A-Za-z0-9._\-~+/]{8,}=*)"  # anything sent as a bearer token
)


def scrub(text: str) -> str:
    """``text`` with anything that looks like an API key or bearer token replaced by ``[redacted]``."""
    return _SECRET.sub("[redacted]", text)
