"""Gates and listeners: the one place alerts, budgets and OpenTelemetry plug into capture and the writer.

A *gate* runs on the caller's thread before an LLM request leaves the process (``gate(pending)``; raising
:class:`~llm_monitor_mw.capture.pending.CallRefused` refuses the call). A *listener* runs on the writer thread for
every record just before it is stored (``listener(record)``). Both lists are copy-on-write, as httpx keeps its
event hooks: adding or removing builds a new tuple, so a thread iterating the old one never skips or repeats.

Failures inside a hook are the monitor's, never the host's: :meth:`Hooks.count_error` counts them (shown as
``internal_errors`` in ``stats()`` and ``/metrics``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Gate = Callable[[Any], None]
Listener = Callable[[Any], None]


class Hooks:
    """Copy-on-write lists of gates and listeners, and the internal-error counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.gates: tuple[Gate, ...] = ()
        """Read by the transport on every call: iterate this attribute once, it is replaced, never mutated."""
        self.listeners: tuple[Listener, ...] = ()
        """Read by the writer for every record; replaced, never mutated."""
        self.internal_errors = 0

    def add_gate(self, gate: Gate, *, first: bool = False) -> None:
        """Run ``gate(pending)`` before each LLM request (``first``: before the gates already added)."""
        with self._lock:
            if gate not in self.gates:
                self.gates = (gate, *self.gates) if first else (*self.gates, gate)

    def remove_gate(self, gate: Gate) -> None:
        """Stop running ``gate`` (no error if it was not added)."""
        with self._lock:
            self.gates = tuple(g for g in self.gates if g != gate)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(record)`` for every record, on the writer thread, before it is stored."""
        with self._lock:
            if listener not in self.listeners:
                self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        with self._lock:
            self.listeners = tuple(x for x in self.listeners if x != listener)

    def count_error(self, exc: BaseException | None = None) -> None:
        """Count an internal failure (a broken gate, listener, parser…); the caller has already logged it."""
        with self._lock:
            self.internal_errors += 1
