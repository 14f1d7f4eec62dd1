"""``requests.csv`` / ``requests.json``: hostile stored text and stored infinities, as the CLI export handles them."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from llm_monitor_mw import Monitor
from llm_monitor_mw.store.export import export
from tests.browser.server import host_app
from tests.export_cases import ALL_TEXT, check_csv_rows, check_json_rows, records, store_non_finite, strict_json
from tests.seed import insert

from .test_pages import rec


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    path = tmp_path_factory.mktemp("hostile") / "m.db"
    monitor = Monitor(path)
    insert(monitor, [dataclasses.replace(rec(i / 10), **kw) for i, kw in enumerate(records())])
    store_non_finite(path)
    with TestClient(host_app(monitor, "/m")) as c:
        yield c, path
    monitor.close()


def _csv(text: str) -> tuple[list[str], list[list[str]]]:
    header, *rows = csv.reader(io.StringIO(text, newline=""))
    return header, rows


def test_csv_is_one_record_per_call_and_never_a_formula(served: tuple[TestClient, Path]) -> None:
    response = served[0].get("/m/requests.csv")
    assert response.status_code == 200
    header, rows = _csv(response.content.decode("utf-8"))
    check_csv_rows(rows, header)


def test_json_is_strict_json_without_infinity(served: tuple[TestClient, Path]) -> None:
    response = served[0].get("/m/requests.json")
    assert response.status_code == 200
    assert "Infinity" not in response.text and "NaN" not in response.text
    items = strict_json(response.text)
    assert len(items) == len(ALL_TEXT)
    check_json_rows(items)


def test_cli_and_dashboard_write_the_same_cells(served: tuple[TestClient, Path]) -> None:
    client, path = served
    web_header, web_rows = _csv(client.get("/m/requests.csv").content.decode("utf-8"))
    buffer = io.StringIO(newline="")
    export(path, buffer, "csv")
    cli_header, cli_rows = _csv(buffer.getvalue())
    assert web_header == cli_header
    assert sorted(web_rows) == sorted(cli_rows)
