"""``examples/prometheus`` and ``examples/grafana``: promtool accepts them, alert rules behave, and every query uses
only metric and label names that ``/metrics`` really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm_monitor_mw import Monitor
from tests.ops.helpers import binary
from tests.ops.test_metrics import SEED, scrape
from tests.seed import insert

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROMETHEUS = EXAMPLES / "prometheus"
DASHBOARD = EXAMPLES / "grafana" / "dashboard.json"
PROMQL_WORDS = {
    "sum",
    "by",
    "without",
    "rate",
    "increase",
    "histogram_quantile",
    "offset",
    "and",
    "or",
    "unless",
    "label_values",
    "s",
    "m",
    "h",
    "d",
}
ADDED_BY_PROMETHEUS = {"instance", "job"}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], set[str]]:
    """Metric names (families and samples) and label names in a real exposition with every kind of call."""
    with Monitor(tmp_path_factory.mktemp("exported") / "m.db") as monitor:
        insert(monitor, SEED)
        text = scrape(monitor)
    names: set[str] = set()
    labels: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
            labels.update(sample.labels)
    return names, labels


def dashboard_queries() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in data["panels"] for t in panel.get("targets", [])]
    queries += [v["definition"] for v in data["templating"]["list"] if v["type"] == "query"]
    return queries


def alert_queries() -> list[str]:
    """The ``expr`` of every rule in alerts.yml (a block scalar or one line; the file is written that way)."""
    exprs: list[str] = []
    current: list[str] | None = None
    indent = 0
    for line in (PROMETHEUS / "alerts.yml").read_text().splitlines():
        stripped = line.strip()
        if current is not None:
            if stripped and len(line) - len(line.lstrip()) > indent:
                current.append(stripped)
                continue
            exprs.append(" ".join(current))
            current = None
        if stripped.startswith("expr:"):
            value = stripped.removeprefix("expr:").strip()
            if value == "|":
                current, indent = [], len(line) - len(line.lstrip())
            else:
                exprs.append(value)
    if current is not None:
        exprs.append(" ".join(current))
    return exprs


def metric_names(query: str) -> set[str]:
    """Identifiers in a PromQL query that are not functions, keywords, durations or label names."""
    query = re.sub(r"label_values\((.*),\s*\w+\)", r"\1", query)  # Grafana's label_values(metric, label)
    query = re.sub(r'"[^"]*"', '""', query)  # strings (label values, legend text)
    query = re.sub(r"\{[^}]*\}", "{}", query)  # label matchers
    query = re.sub(r"\b(by|without)\s*\([^)]*\)", "", query)  # grouping labels
    query = re.sub(r"\[[^\]]*\]", "[]", query)  # range durations
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", query))
    return {n for n in names if n not in PROMQL_WORDS and not n.startswith("__")}


def label_names(query: str) -> set[str]:
    grouped = [g for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", query) for g in group.split(",")]
    matched = re.findall(r"[{,]\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", query)
    label_values = re.findall(r"label_values\([^,]*,\s*([a-zA-Z_]+)\)", query)
    return {name.strip() for name in [*grouped, *matched, *label_values] if name.strip()}


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_alert_rules_fire_when_they_should_and_not_otherwise() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_tests_can_fail(tmp_path: Path) -> None:
    for name in ("alerts.yml", "alerts_test.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    rules = tmp_path / "alerts.yml"
    rules.write_text(rules.read_text().replace("> 0.05", "> 0.5"))
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0 and "LLMHighErrorRate" in result.stdout + result.stderr


def test_scrape_config_passes_promtool_check(tmp_path: Path) -> None:
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    (tmp_path / "llm-monitor.token").write_text("a-scrape-token\n")
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert "metrics_path: /monitoring/metrics" in config and "type: Bearer" in config


def test_alert_queries_use_exported_names(exported: tuple[set[str], set[str]]) -> None:
    names, labels = exported
    queries = alert_queries()
    assert len(queries) == 6
    for query in queries:
        used = metric_names(query)
        assert used and used <= names, (query, used - names)
        assert label_names(query) <= labels | ADDED_BY_PROMETHEUS, query


def test_dashboard_has_the_panels_and_only_exported_names(exported: tuple[set[str], set[str]]) -> None:
    names, labels = exported
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    titles = " | ".join(panel["title"].lower() for panel in data["panels"])
    for topic in ("request rate", "error rate", "p95", "time to first token", "tokens", "cost"):
        assert topic in titles, topic
    assert all(panel["targets"] for panel in data["panels"])
    assert len({p["id"] for p in data["panels"]}) == len(data["panels"])
    for query in dashboard_queries():
        used = metric_names(query)
        assert used and used <= names, (query, used - names)
        assert label_names(query) <= labels | ADDED_BY_PROMETHEUS, query


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (Grafana's variables replaced by what they expand to)."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, query in enumerate(dashboard_queries()):
        if query.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        expanded = query.replace("$__rate_interval", "1m").replace("$__range", "6h")
        expanded = expanded.replace("$provider", ".*").replace("$model", ".*")
        assert "$" not in expanded, expanded
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(expanded)}"]
    (tmp_path / "dashboard_rules.yml").write_text("\n".join(lines) + "\n")
    result = promtool("check", "rules", "dashboard_rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_name_checks_can_fail() -> None:
    assert metric_names('label_values(llm_requests_total{provider=~"$provider"}, model)') == {"llm_requests_total"}
    assert metric_names('sum by (le) (rate(llm_request_latency_bucket{model=~"$model"}[5m]))') == {
        "llm_request_latency_bucket"
    }
    assert label_names('sum by (le, region) (rate(x{model=~"a", tier!="b"}[5m]))') == {"le", "region", "model", "tier"}
