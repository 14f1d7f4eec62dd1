"""Durations and times on the command line."""

from __future__ import annotations

import argparse
import time

import pytest

from llm_monitor_mw.cli.timespec import format_duration, parse_duration, parse_moment


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("15m", 900), ("15min", 900), ("90s", 90), ("2w", 1209600),
     ("1.5h", 5400), (" 7D ", 7 * 86400)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "30x", "-1d", "0h", "1e3d", "30 days", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(30 * 86400, "30d"), (1209600, "2w"), (5400, "90m"), (90, "90s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_parse_moment() -> None:
    assert parse_moment("2026-01-31T12:00:00Z") == 1769860800
    assert parse_moment("2026-01-31T12:00:00") == 1769860800  # naive = UTC
    assert parse_moment("1769860800") == 1769860800
    assert abs(parse_moment("2h") - (time.time() - 7200)) < 5
    with pytest.raises(argparse.ArgumentTypeError, match="ISO-8601"):
        parse_moment("yesterday")


def test_one_duration_grammar_for_api_cli_and_alerts() -> None:
    """The API's spans, the CLI's ages and alert windows read durations alike (llm_monitor_mw.timespec)."""
    from llm_monitor_mw.alerts.rules import parse_duration as rule_duration
    from llm_monitor_mw.cli.timespec import parse_duration as cli_duration
    from llm_monitor_mw.web.params import ParamError, parse_time

    for text, seconds in (("30d", 2592000.0), ("12H", 43200.0), ("5 min", 300.0), ("1.5h", 5400.0), ("250ms", 0.25)):
        assert cli_duration(text) == seconds
        assert rule_duration(text, "window") == seconds
        assert parse_time("since", text, now=10**9) == 10**9 - seconds
    for bad in ("5 fortnights", "-5s", "1e3s", "٣d", "5", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            cli_duration(bad)
        if bad not in ("5", ""):  # rules take a bare number of seconds; the API reads "5" as a Unix time
            with pytest.raises(ValueError):
                rule_duration(bad, "window")
            with pytest.raises(ParamError):
                parse_time("since", bad, now=10**9)
