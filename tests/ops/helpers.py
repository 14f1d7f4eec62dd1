"""Shared by the operations tests: finding the Prometheus binaries, reading an exposition, free ports."""

from __future__ import annotations

import base64
import os
import shutil
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, frozenset[tuple[str, str]]]


def binary(name: str) -> str:
    """Path of ``promtool``/``prometheus``; skips when missing, except under CI (env ``CI`` set), where it fails."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian/Ubuntu: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def samples(text: str, prefix: str = "llm_") -> dict[Sample, float]:
    """Every sample of an exposition whose name starts with ``prefix``: ``{(name, labels): value}``."""
    out: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(prefix):
                key = (s.name, frozenset(s.labels.items()))
                assert key not in out, f"duplicate series {key}"
                out[key] = s.value
    return out


def key(name: str, **labels: str) -> Sample:
    return (name, frozenset(labels.items()))


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
