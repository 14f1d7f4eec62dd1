"""API keys as the store may keep them: an HMAC fingerprint that tells keys apart, and a provider-style hint.

The key itself is never kept. :func:`identify` runs on the writer thread (from ``PendingCall.to_record``) on the
raw header value the transport found (``Authorization``, ``x-api-key``, ``api-key``, ``x-goog-api-key``, or
Gemini's ``key=`` query value). The fingerprint is ``HMAC-SHA256(secret, key)``, its first
:data:`FINGERPRINT_DIGITS` hex digits, under a random secret kept in the database (so every instance sharing
the database agrees, and a fingerprint says nothing without that database). The hint shows only what providers
publish about their keys: a known public prefix (``sk-proj-``, ``sk-ant-api03-``, ``AIza``…) and the last
:data:`TAIL_CHARS` characters, as their consoles do (``sk-proj-…a1b2``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

FINGERPRINT_DIGITS = 16
"""Hex digits of the HMAC kept (64 bits: no collision among any realistic number of keys)."""
TAIL_CHARS = 4
"""Characters of the key's end that the hint shows (as provider consoles do)."""
MIN_TAIL_KEY = 20
"""Shortest key whose last characters are shown: a shorter one is hinted ``…`` only (never most of a short key)."""
MIN_SECRET_CHARS = 16
"""Fewest characters past the public prefix for the tail to be shown (so at least 12 secret ones stay hidden)."""
ELLIPSIS = "…"

# Prefixes providers document as the fixed start of their keys, longest first (so ``sk-ant-api03-`` wins over
# ``sk-ant-`` and ``sk-``). Only these characters of a key's start are ever shown.
PUBLIC_PREFIXES: tuple[str, ...] = tuple(
    sorted(
        (
            "sk-proj-",  # OpenAI project keys
            "sk-svcacct-",  # OpenAI service accounts
            "sk-admin-",  # OpenAI admin keys
            "sk-ant-api03-",  # Anthropic
            "sk-ant-admin01-",  # Anthropic admin keys
            "sk-ant-",
            "sk-or-v1-",  # OpenRouter
            "sk-",  # OpenAI legacy, DeepSeek, and many OpenAI-compatible servers
            "AIza",  # Google (Gemini API keys)
            "gsk_",  # Groq
            "xai-",  # xAI
            "pplx-",  # Perplexity
            "nvapi-",  # NVIDIA
            "csk-",  # Cerebras
            "hf_",  # Hugging Face
            "r8_",  # Replicate
            "fw_",  # Fireworks
            "tgp_v1_",  # Together
        ),
        key=len,
        reverse=True,
    )
)


class KeyId(NamedTuple):
    """What the store keeps of a key: ``fingerprint`` (``None`` without the secret) and ``hint``."""

    fingerprint: str | None
    hint: str


def bare_key(credential: bytes) -> bytes | None:
    """The key in a header value: ``Bearer`` stripped (any case), surrounding whitespace too; ``None`` if empty."""
    value = credential.strip()
    scheme, _, rest = value.partition(b" ")
    if scheme.lower() == b"bearer":
        value = rest.strip()
    return value or None


def fingerprint(secret: bytes, key: bytes) -> str:
    """The first :data:`FINGERPRINT_DIGITS` hex digits of ``HMAC-SHA256(secret, key)``."""
    return hmac.new(secret, key, hashlib.sha256).hexdigest()[:FINGERPRINT_DIGITS]


def hint(key: bytes) -> str:
    """``<public prefix>…<last four>`` for a key of at least :data:`MIN_TAIL_KEY` characters (``…<last four>``
    without a known prefix); the prefix and ``…`` when fewer than :data:`MIN_SECRET_CHARS` characters follow it
    or the key's end is not printable ASCII; ``…`` alone for a shorter key, or for an ``Authorization`` scheme
    other than Bearer (``Basic``: its end is the end of a password)."""
    text = key.decode("latin-1")
    if len(text) < MIN_TAIL_KEY or " " in text:
        return ELLIPSIS
    prefix = next((p for p in PUBLIC_PREFIXES if text.startswith(p)), "")
    tail = text[-TAIL_CHARS:]
    if len(text) - len(prefix) < MIN_SECRET_CHARS or not (tail.isascii() and tail.isprintable()):
        return f"{prefix}{ELLIPSIS}"
    return f"{prefix}{ELLIPSIS}{tail}"


def identify(credential: bytes | None, secret: bytes | None) -> KeyId | None:
    """The fingerprint (under ``secret``; ``None`` without one) and hint of the key in ``credential`` (a raw
    header value), or ``None`` when there is no key."""
    if not credential:
        return None
    key = bare_key(credential)
    if key is None:
        return None
    return KeyId(fingerprint(secret, key) if secret else None, hint(key))
