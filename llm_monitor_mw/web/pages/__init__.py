"""Dashboard pages and their htmx partials: overview, requests (+ CSV/JSON export), request detail, traces (+ one
trace, one session), costs, errors.

Every page is a full HTML page on a direct load. With ``HX-Request`` (and not a history restore) a page URL answers
with its content partial (tabs, toolbar and regions: what filter forms swap into ``#content``), and each
``fragments/...`` URL answers with one auto-refreshed region; loaded directly, a fragment URL renders its page.
All of these responses carry ``Vary: HX-Request``. Handlers are plain functions: the app runs them (and their
reads) behind its :class:`~.gate.Gate`, in threads of its own, never in the pool the host app uses.

One module per page, each with its view-model: :mod:`.overview`, :mod:`.requests` (and its exports),
:mod:`.detail`, :mod:`.traces`, :mod:`.costs`, :mod:`.errors`; :mod:`.view` parses the query string, :mod:`.base`
holds what they share (one ``Analytics``, the store's, which the API uses too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jinja2 import Environment
from starlette.routing import BaseRoute, Route

from ..gate import Gate
from ..keys import KeyNames
from . import costs, detail, errors, overview, requests, traces
from .base import (
    PAGE_PATHS,
    REFRESH_TRIGGER,
    Dashboard,
    Data,
    Handler,
    Region,
    TTLCache,
    cache_key,
    is_fragment,
    render_page,
)
from .requests import EXPORT_CAP
from .view import (
    DEFAULT_RANGE,
    LIST_KEYS,
    MAX_PARAM,
    PAGE_SIZES,
    QUERY_KEYS,
    RANGES,
    STEP_NAMES,
    View,
    parse_view,
    step_for,
)
from .widgets import Chart, Kpi, change

if TYPE_CHECKING:
    from ...store import Store

__all__ = [
    "DEFAULT_RANGE",
    "EXPORT_CAP",
    "LIST_KEYS",
    "MAX_PARAM",
    "PAGE_PATHS",
    "PAGE_SIZES",
    "QUERY_KEYS",
    "RANGES",
    "REFRESH_TRIGGER",
    "STEP_NAMES",
    "Chart",
    "Dashboard",
    "Data",
    "Kpi",
    "Region",
    "TTLCache",
    "View",
    "cache_key",
    "change",
    "is_fragment",
    "parse_view",
    "render_page",
    "routes",
    "step_for",
]

PAGES = (overview, requests, detail, costs, errors)


def routes(store: Store, env: Environment, gate: Gate, key_names: KeyNames | None = None) -> list[BaseRoute]:
    """The dashboard's routes, reading through ``store``, rendering with ``env``, each run behind ``gate``;
    ``key_names`` names API keys."""
    dash = Dashboard(store, env, key_names)
    handlers: dict[str, Handler] = {}
    for page in PAGES:
        handlers.update(page.handlers(dash))
    handlers.update(traces.handlers(dash, store))
    return [
        Route(path, gate.endpoint(handler, "json" if path.endswith(".json") else "html"), methods=["GET"])
        for path, handler in handlers.items()
    ]
