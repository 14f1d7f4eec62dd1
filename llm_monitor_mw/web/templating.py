"""The Jinja2 environment and the one way pages are rendered: plain data in, escaped HTML out."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .._version import __version__
from . import charts, unknown
from . import format as fm
from .resources import resource_dir
from .urls import url_for


def create_environment() -> Environment:
    """Autoescaping on for everything (stored provider text is hostile until proven otherwise), and the number and
    time formatting filters every page uses."""
    env = Environment(
        loader=FileSystemLoader(str(resource_dir("templates"))),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )
    env.filters.update(
        n=fm.integer,
        compact=fm.compact,
        ms=fm.duration_ms,
        usd=fm.money,
        pct=fm.percent,
        utc=fm.utc,
        utc_ms=fm.utc_ms,
        span=fm.span,
        share=charts.share_bar,
    )
    env.globals.update(cost_reason=unknown.cost_reason, tokens_reason=unknown.tokens_reason)
    return env


def render(env: Environment, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with ``url()`` bound to this request's mount point, plus ``version`` and ``request``."""
    html = env.get_template(template).render(
        url=lambda path="", **query: url_for(request, path, **query),
        version=__version__,
        request=request,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)
