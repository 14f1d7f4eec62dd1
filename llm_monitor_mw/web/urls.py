"""Every URL the app emits comes from here: root-relative, built from the mount point of *this* request."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request


def url_for(request: Request, path: str = "", **query: object) -> str:
    """``{root_path}/{path}?{query}``: correct under any mount prefix, nested mounts and proxies' root_path."""
    root = request.scope.get("root_path", "").rstrip("/")
    target = f"{root}/{path.lstrip('/')}"
    params = {k: v for k, v in query.items() if v is not None and v != ""}
    return f"{target}?{urlencode(params)}" if params else target
