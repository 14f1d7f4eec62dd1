"""The one JSON response class of the monitoring app: strict JSON, whatever a stored row holds."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

from ..store.cells import finite


class JSONAnswer(JSONResponse):
    """A ``JSONResponse`` that writes non-finite floats as ``null`` (never ``Infinity``/``NaN``, which are not JSON
    and which Starlette's own class refuses with an exception, i.e. a 500)."""

    def render(self, content: Any) -> bytes:
        """Compact UTF-8 JSON; the rewrite of non-finite floats is only paid when there is one."""
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except ValueError:
            text = json.dumps(finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8")
