"""The tool (function) calls a model asked for, as read from a response body or stream, bounded.

Each family's parser calls :meth:`ToolCalls.start` when a call begins (a complete call in a body, or the first
event of a streamed one) and :meth:`ToolCalls.more` with each piece of a streamed call's arguments; a call is
identified by a ``key`` (the stream's index, block index or output index). Whatever a provider sends, the work
and memory stay bounded: every call is counted, but only the first :data:`MAX_CALLS` keep a name, names are cut
at :data:`MAX_NAME_CHARS`, and arguments (content: kept only when :attr:`ToolCalls.budget` is set, i.e. with
``capture_content``) are kept up to that many characters in all.
"""

from __future__ import annotations

import json
from typing import Any

MAX_CALLS = 128
"""Calls that keep a name (and arguments); the rest are only counted."""
MAX_NAME_CHARS = 128
"""Longer tool names are cut to this many characters."""
UNNAMED = "?"
"""The name recorded for a call whose name is missing or not a string."""


class ToolCall:
    """One call: its name (``None`` until a stream names it) and the pieces of its arguments kept so far."""

    __slots__ = ("cut", "id", "name", "parts")

    def __init__(self, name: str | None, call_id: str | None = None) -> None:
        self.name = name
        self.id = call_id
        self.parts: list[str] = []
        self.cut = False  # some of the arguments did not fit the budget

    @property
    def arguments(self) -> str:
        """The arguments' JSON text as kept (possibly cut)."""
        return "".join(self.parts)


class ToolCalls:
    """Accumulates the tool calls of one response (see the module docstring)."""

    __slots__ = ("_initial", "_keys", "_last", "budget", "calls", "count", "final", "keep")

    def __init__(self, budget: int = 0) -> None:
        self.keep = budget > 0
        """Whether arguments are kept at all (content capture is on)."""
        self.budget = self._initial = budget
        """Characters of arguments still to keep."""
        self.count = 0
        """Calls seen (all of them, also those past :data:`MAX_CALLS`)."""
        self.calls: list[ToolCall] = []
        self.final = False
        """The calls were read from a complete list (a body, or the final summary of a stream), not assembled."""
        self._keys: dict[Any, tuple[ToolCall | None, str | None]] = {}
        self._last: ToolCall | None = None

    def reset(self) -> None:
        """Forget what was assembled so far: a complete list follows."""
        self.budget = self._initial
        self.count = 0
        self.calls = []
        self._keys = {}
        self._last = None

    def start(self, name: Any, arguments: Any = None, key: Any = None, call_id: Any = None) -> None:
        """A call begins. ``arguments``: its JSON text, or a JSON value (serialised only if it is kept).

        With a ``key`` already seen (a stream naming a call again), the call is not counted again: a name it
        lacked is filled in and the arguments are added to it -- unless ``call_id`` differs from the id that
        call came with (servers that number every call of a parallel batch 0): then it is a new call.
        """
        call: ToolCall | None
        known = self._keys.get(key) if key is not None else None
        new_id = call_id if isinstance(call_id, str) and call_id else None
        if known is not None and (new_id is None or known[1] is None or known[1] == new_id):
            call = known[0]
            if call is not None and call.name is None and name is not None:
                call.name = _name(name)
        else:
            self.count += 1
            call = ToolCall(None if name is None else _name(name), new_id) if len(self.calls) < MAX_CALLS else None
            if call is not None:
                self.calls.append(call)
            if key is not None and (known is not None or len(self._keys) < 8 * MAX_CALLS):
                self._keys[key] = (call, new_id)
        self._last = call
        if arguments is not None and call is not None and self.keep:
            if self.budget <= 0:
                call.cut = True
            else:
                self._add(call, arguments if isinstance(arguments, str) else _dumps(arguments, self.budget))

    def more(self, key: Any, text: Any) -> None:
        """A piece of a streamed call's arguments (``key=None``: of the call started last)."""
        if key is None:
            call = self._last
        else:
            known = self._keys.get(key)
            call = known[0] if known is not None else None
        if call is not None and self.keep and isinstance(text, str) and text:
            self._add(call, text)

    def known(self, key: Any) -> bool:
        """Whether a call with this key was started."""
        return key in self._keys

    def _add(self, call: ToolCall, text: str) -> None:
        room = self.budget
        if room <= 0:
            call.cut = True
            return
        piece = text[:room]
        call.parts.append(piece)
        self.budget = room - len(piece)
        if len(piece) < len(text):
            call.cut = True

    @property
    def names(self) -> list[str]:
        """The kept calls' names, in order."""
        return [call.name or UNNAMED for call in self.calls]


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return UNNAMED
    return value[:MAX_NAME_CHARS]


def _dumps(value: Any, limit: int) -> str:
    """A JSON value (Anthropic's ``input``, Gemini's ``args``) as compact JSON text, at most ``limit`` characters
    of it encoded (the encoder stops early); never raises."""
    out: list[str] = []
    size = 0
    try:
        for piece in _ENCODER.iterencode(value):
            out.append(piece)
            size += len(piece)
            if size >= limit:
                break
    except (TypeError, ValueError, RecursionError):
        return "".join(out)
    return "".join(out)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
