"""The README's auth recipes work as written: Flask-Login and Starlette sessions guarding the dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from starlette.requests import Request
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client, EnvironBuilder

from llm_monitor_mw import Constraint, Monitor

flask_login = pytest.importorskip("flask_login")


class User(flask_login.UserMixin):
    def __init__(self, user_id: str, is_admin: bool) -> None:
        self.id = user_id
        self.is_admin = is_admin


USERS = {"ana": User("ana", True), "bo": User("bo", False)}


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    mon = Monitor(tmp_path / "recipes.db")
    yield mon
    mon.close()


def test_flask_login_recipe(monitor: Monitor) -> None:
    flask_app = Flask(__name__)
    flask_app.secret_key = "test-secret"
    login_manager = flask_login.LoginManager(flask_app)
    login_manager.user_loader(USERS.get)

    @flask_app.get("/login/<name>")
    def login(name: str) -> str:
        flask_login.login_user(USERS[name])
        return "ok"

    # --- the recipe (README) ---
    def flask_login_admin(request: Request) -> bool:
        """Open Flask's session from the dashboard request's cookie and ask Flask-Login who it is."""
        environ = EnvironBuilder(path="/", headers={"Cookie": request.headers.get("cookie", "")}).get_environ()
        with flask_app.request_context(environ):
            user = flask_login.current_user
            return bool(user.is_authenticated and user.is_admin)

    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app,
        {"/monitoring": monitor.wsgi_app(auth=Constraint(flask_login_admin, redirect_to="/login"))},
    )
    # ---
    anonymous = Client(flask_app)
    assert anonymous.get("/monitoring/api/stats", buffered=True).status_code == 303
    admin, user = Client(flask_app), Client(flask_app)
    admin.get("/login/ana")
    user.get("/login/bo")
    assert admin.get("/monitoring/api/stats", buffered=True).status_code == 200
    assert user.get("/monitoring/api/stats", buffered=True).status_code == 303
