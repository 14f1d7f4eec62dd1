"""Rules, budgets and channels: validation with clear errors, durations, periods, and loading TOML files."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llm_monitor_mw import Budget, EmailChannel, Monitor, Rule, SlackChannel, WebhookChannel
from llm_monitor_mw.alerts.config import load, parse
from llm_monitor_mw.alerts.rules import parse_duration, period_bounds

TOML = """
[alerts]
interval = "15s"

[[rules]]
name = "high error rate"
metric = "error_rate"
threshold = 0.05
window = "5m"
for = "2m"
severity = "critical"
scope = { provider = "openai" }

[[rules]]
name = "slow"
metric = "latency_p95_ms"
threshold = 8000
scope = { tag = "feature:search" }

[[budgets]]
name = "daily"
limit = 50.0
period = "day"
warn_at = 0.8
hard = true

[[budgets]]
name = "per customer"
limit = 5
period = "month"
scope = { tag = "customer:*" }

[[channels]]
type = "slack"
url_env = "TEST_SLACK_URL"

[[channels]]
type = "webhook"
url = "http://127.0.0.1:9/hook"
headers = { Authorization = "Bearer x" }

[[channels]]
type = "email"
host = "smtp.example.com"
port = 587
starttls = true
username = "alerts"
password_env = "TEST_SMTP_PASSWORD"
sender = "alerts@example.com"
to = ["oncall@example.com"]
"""


def test_durations() -> None:
    assert parse_duration(90, "x") == 90.0
    assert parse_duration("90", "x") == 90.0
    assert parse_duration("1.5m", "x") == 90.0
    assert parse_duration("2h", "x") == 7200.0
    assert parse_duration("1d", "x") == 86400.0
    assert parse_duration("250ms", "x") == 0.25
    for bad in ("5 minutes", "-1", -1, True, None, "m", float("nan")):
        with pytest.raises(ValueError, match=r"^x: "):
            parse_duration(bad, "x")


def test_rule_normalizes_and_describes() -> None:
    rule = Rule("errors", "error_rate", 0.05, window="5m", for_="1m", scope={"provider": "openai"})
    assert (rule.window, rule.for_, rule.cooldown) == (300.0, 60.0, 300.0)
    assert rule.describe() == "error_rate > 0.05 over 5m (provider=openai)"
    assert rule.breached(0.06) and not rule.breached(0.05) and not rule.breached(None)
    low = Rule("quiet", "requests", 1, op="<")
    assert low.breached(0) and not low.breached(1)
    assert Rule("x", "requests", 1, scope="all").scope == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "latency"}, r"rule 'r': metric: unknown 'latency'; use one of error_rate, latency_p95_ms"),
        ({"threshold": "high"}, r"rule 'r': threshold: expected a number"),
        ({"window": "5 fortnights"}, r"rule 'r': window: expected a duration"),
        ({"window": 0}, r"rule 'r': window: must be longer than 0"),
        ({"for_": "-5s"}, r"rule 'r': for: expected a duration"),
        ({"severity": "page"}, r"rule 'r': severity: unknown 'page'"),
        ({"op": "=="}, r"rule 'r': op: unknown '=='"),
        ({"scope": {"team": "x"}}, r"rule 'r': scope.team: unknown scope key"),
        ({"scope": {"tag": "nokey"}}, r"rule 'r': scope.tag: expected 'key:value'"),
        ({"scope": {"user": "*"}}, r"rule 'r': scope: '\*' \(every value separately\) is only allowed in budgets"),
        ({"min_requests": -1}, r"rule 'r': min_requests: expected an integer >= 0"),
    ],
)
def test_rule_errors_name_the_field(kwargs: dict, message: str) -> None:
    fields = {"name": "r", "metric": "error_rate", "threshold": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        Rule(**fields)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit_usd": 0}, r"budget 'b': limit: must be more than 0"),
        ({"limit_usd": "ten"}, r"budget 'b': limit: expected a number"),
        ({"period": "year"}, r"budget 'b': period: unknown 'year'; use one of day, week, month"),
        ({"warn_at": 80}, r"budget 'b': warn_at: expected a fraction"),
        ({"hard": "yes"}, r"budget 'b': hard: expected true or false"),
        ({"scope": {"user": "*", "model": "*"}}, r"budget 'b': scope: at most one scope key may be '\*'"),
    ],
)
def test_budget_errors_name_the_field(kwargs: dict, message: str) -> None:
    fields = {"name": "b", "limit_usd": 10.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        Budget(**fields)


def test_budget_groups_and_keys() -> None:
    per_user = Budget("u", 5, scope={"user": "*", "model": "gpt-4o"})
    assert per_user.group == "user" and per_user.fixed_scope == {"model": "gpt-4o"}
    assert per_user.key("alice") == "budget:u:alice"
    assert per_user.describe("alice") == "$5 per day (user=alice, model=gpt-4o)"
    per_customer = Budget("c", 5, scope={"tag": "customer:*"})
    assert per_customer.group == "tag:customer" and per_customer.scope_for("acme") == {"tag": "customer:acme"}
    assert Budget("g", 5).group is None and Budget("g", 5, warn_at=0).warn_at is None


def test_period_bounds_are_utc_calendar_periods() -> None:
    now = datetime(2025, 12, 31, 15, 30, tzinfo=UTC).timestamp()  # a Wednesday
    day = period_bounds("day", now)
    assert day == (datetime(2025, 12, 31, tzinfo=UTC).timestamp(), datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    week = period_bounds("week", now)
    assert week == (datetime(2025, 12, 29, tzinfo=UTC).timestamp(), datetime(2026, 1, 5, tzinfo=UTC).timestamp())
    month = period_bounds("month", now)
    assert month == (datetime(2025, 12, 1, tzinfo=UTC).timestamp(), datetime(2026, 1, 1, tzinfo=UTC).timestamp())


def test_load_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLACK_URL", "https://hooks.slack.com/services/T/B/secret")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "pw")
    path = tmp_path / "alerts.toml"
    path.write_text(TOML)
    config = load(path)
    assert config.interval == 15.0
    errors, slow = config.rules
    assert (errors.name, errors.for_, errors.severity, errors.scope) == (
        "high error rate",
        120.0,
        "critical",
        {"provider": "openai"},
    )
    assert slow.scope == {"tag": "feature:search"} and slow.window == 300.0
    daily, per_customer = config.budgets
    assert (daily.limit_usd, daily.hard, daily.warn_at) == (50.0, True, 0.8)
    assert per_customer.group == "tag:customer" and per_customer.period == "month"
    slack, hook, email = config.channels
    assert isinstance(slack, SlackChannel) and slack.url.endswith("/secret") and "secret" not in repr(slack)
    assert isinstance(hook, WebhookChannel) and hook.headers == {"Authorization": "Bearer x"}
    assert isinstance(email, EmailChannel) and (email.port, email.starttls, email.password) == (587, True, "pw")

    with Monitor(tmp_path / "m.db") as monitor:
        monitor.alerts.load(path)
        assert [r.name for r in monitor.alerts.rules] == ["high error rate", "slow"]
        assert monitor.alerts.interval == 15.0 and len(monitor.alerts.channels) == 3
        with pytest.raises(ValueError, match="name: already defined: high error rate, slow, daily, per customer"):
            monitor.alerts.load(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rules]]\nname = 'r'\nmetric = 'error_rate'\n", r"rule 'r': threshold: required field is missing"),
        ("[[rules]]\nname = 'r'\nmetric = 'requests'\nthreshold = 1\nwindwo = '5m'\n", r"rule 'r': windwo: unknown"),
        ("[[budgets]]\nname = 'b'\nperiod = 'day'\n", r"budget 'b': limit: required field is missing"),
        ("[[budgets]]\nname = 'b'\nlimit = 1\nlimit_usd = 2\n", r"budget 'b': limit_usd: unknown or repeated field"),
        ("[[channels]]\ntype = 'pager'\n", r"channel 'pager': type: expected one of webhook, slack, email"),
        ("[[channels]]\ntype = 'slack'\n", r"channel 'slack': url: required field is missing"),
        ("[[channels]]\ntype = 'slack'\nurl = 'ftp://x'\n", r"url: expected an http:// or https:// URL"),
        ("[[channels]]\ntype = 'slack'\nurl_env = 'NOPE_NOT_SET'\n", r"url_env: environment variable NOPE_NOT_SET"),
        (
            "[[channels]]\ntype = 'email'\nhost = 'h'\nsender = 'a@b'\nto = 'c@d'\nusername = 'u'\n",
            r"username and password: give both or neither",
        ),
        ("[alerts]\ninterval = 0\n", r"alerts.interval: must be more than 0"),
        ("[alert]\ninterval = 1\n", r"alert: unknown section"),
        ("rules = 'x'\n", r"rules: expected a list of tables"),
        ("[[rules]\n", r"not valid TOML"),
    ],
)
def test_bad_files_name_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load(path)
    assert str(info.value).startswith(str(path))


def test_other_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expected a \.toml, \.yaml or \.yml file"):
        load(tmp_path / "alerts.json")
    yaml_file = tmp_path / "alerts.yaml"
    yaml_file.write_text("rules:\n  - {name: r, metric: requests, threshold: 10}\n")
    if importlib.util.find_spec("yaml") is None:
        with pytest.raises(ValueError, match="YAML needs PyYAML"):
            load(yaml_file)
    else:
        assert [r.name for r in load(yaml_file).rules] == ["r"]
    assert parse({"rules": [{"name": "r", "metric": "requests", "threshold": 1}]}).rules[0].metric == "requests"


def test_manager_rejects_duplicates_and_wrong_types(tmp_path: Path) -> None:
    with Monitor(tmp_path / "m.db") as monitor:
        monitor.alerts.add_rule(name="r", metric="requests", threshold=1)
        with pytest.raises(ValueError, match="rule 'r': name: a rule with this name exists already"):
            monitor.alerts.add_rule(Rule("r", "requests", 2))
        monitor.alerts.add_budget(name="b", limit_usd=1)
        with pytest.raises(ValueError, match="budget 'b': name"):
            monitor.alerts.add_budget(Budget("b", 2))
        with pytest.raises(TypeError):
            monitor.alerts.add_channel("http://example.com")  # type: ignore[arg-type]
