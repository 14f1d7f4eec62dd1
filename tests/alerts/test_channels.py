"""Channels against real local receivers (a loopback HTTP server, aiosmtpd), and a failing or hanging channel
that never blocks the caller, the evaluator or the other channels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from llm_monitor_mw import EmailChannel, Monitor, Rule, SlackChannel, WebhookChannel
from llm_monitor_mw.alerts.channels import Dispatcher
from llm_monitor_mw.alerts.events import AlertEvent
from llm_monitor_mw.record import CallRecord
from tests.alerts.receivers import HTTPReceiver, Trickler, client_tls_context, free_port, smtp_server, wait_until
from tests.seed import insert as seed


def event(**kw: object) -> AlertEvent:
    fields: dict = {
        "at": 1_780_000_000.0,
        "key": "rule:errors",
        "source": "rule",
        "name": "errors <&> everywhere",
        "event": "fired",
        "severity": "critical",
        "metric": "error_rate",
        "value": 0.25,
        "threshold": 0.05,
        "summary": "error_rate > 0.05 over 5m (provider=openai)",
        "scope": {"provider": "openai"},
        "id": 7,
    }
    fields.update(kw)
    return AlertEvent(**fields)


def test_webhook_posts_the_event_as_json() -> None:
    with HTTPReceiver() as hook:
        WebhookChannel(hook.url, headers={"Authorization": "Bearer t"}).send(event())
        (request,) = hook.requests
        assert request["path"] == "/hook" and request["headers"]["Content-Type"] == "application/json"
        assert request["headers"]["Authorization"] == "Bearer t"
        body = hook.json()
        assert (body["event"], body["name"], body["value"], body["threshold"]) == (
            "fired",
            "errors <&> everywhere",
            0.25,
            0.05,
        )
        assert body["scope"] == {"provider": "openai"} and body["id"] == 7
        assert body["title"] == "[critical] FIRED errors <&> everywhere"
        assert body["text"].startswith("[critical] FIRED errors <&> everywhere: error_rate = 0.25 (threshold 0.05)")


def test_webhook_error_status_raises() -> None:
    with HTTPReceiver(mode="fail") as hook, pytest.raises(OSError, match="500"):
        WebhookChannel(hook.url).send(event())


def test_slack_payload_has_text_and_blocks_with_mrkdwn_escaped() -> None:
    with HTTPReceiver() as hook:
        SlackChannel(hook.url).send(event())
        body = hook.json()
    assert body["text"].startswith(":rotating_light: [critical] FIRED errors <&> everywhere")
    header, section, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[critical] FIRED errors <&> everywhere"},
    }
    texts = [f["text"] for f in section["fields"]]
    assert texts[0] == "*Severity*\ncritical" and "*error_rate*\n0.25" in texts and "*Threshold*\n0.05" in texts
    assert "errors &lt;&amp;&gt; everywhere" in context["elements"][0]["text"]  # Slack's three control characters
    assert SlackChannel(hook.url).payload(event(event="resolved"))["text"].startswith(":white_check_mark:")


def test_email_over_plain_smtp() -> None:
    with smtp_server() as (smtp, port):
        EmailChannel("127.0.0.1", port=port, sender="alerts@example.com", to="oncall@example.com").send(event())
        smtp.wait_for(1)
    (mail_from, rcpt, message) = smtp.messages[0]
    assert (mail_from, rcpt) == ("alerts@example.com", ["oncall@example.com"])
    assert message["Subject"] == "[critical] FIRED errors <&> everywhere"
    assert message["To"] == "oncall@example.com"
    body = message.get_payload(decode=True).decode()
    assert "error_rate = 0.25 (threshold 0.05)" in body and '"scope": {' in body


def test_email_with_starttls_and_login() -> None:
    with smtp_server(tls=True, auth=lambda user, password: (user, password) == ("alerts", "s3cret")) as (smtp, port):
        channel = EmailChannel(
            "127.0.0.1",
            port=port,
            sender="alerts@example.com",
            to=["a@example.com", "b@example.com"],
            username="alerts",
            password="s3cret",
            starttls=True,
            ssl_context=client_tls_context(),
        )
        channel.send(event())
        smtp.wait_for(1)
        assert smtp.messages[0][1] == ["a@example.com", "b@example.com"]
        assert smtp.logins == [("alerts", "s3cret")]
        wrong = EmailChannel(
            "127.0.0.1",
            port=port,
            sender="alerts@example.com",
            to="a@example.com",
            username="alerts",
            password="wrong",
            starttls=True,
            ssl_context=client_tls_context(),
        )
        with pytest.raises(Exception, match=r"535"):
            wrong.send(event())
        plain = EmailChannel("127.0.0.1", port=port, sender="alerts@example.com", to="a@example.com")
        with pytest.raises(Exception, match="STARTTLS"):  # the server requires it
            plain.send(event())
        assert len(smtp.messages) == 1


def test_failing_and_unreachable_channels_are_counted_and_do_not_stop_the_others() -> None:
    dispatcher = Dispatcher()
    with HTTPReceiver(mode="fail") as failing, HTTPReceiver() as good:
        dispatcher.add(WebhookChannel(failing.url, name="failing"))
        dispatcher.add(WebhookChannel(f"http://127.0.0.1:{free_port()}/nothing-listens", timeout=2, name="refused"))
        dispatcher.add(SlackChannel(good.url, name="good"))
        dispatcher.dispatch(event())
        dispatcher.dispatch(event(event="resolved"))
        assert dispatcher.flush(10)
        assert len(good.requests) == 2
    stats = {s["name"]: s for s in dispatcher.stats()}
    assert (stats["failing"]["sent"], stats["failing"]["failed"]) == (0, 2) and "500" in stats["failing"]["last_error"]
    assert stats["refused"]["failed"] == 2 and "refused" in stats["refused"]["last_error"].lower()
    assert (stats["good"]["sent"], stats["good"]["failed"]) == (2, 0)


def test_a_hanging_channel_blocks_nobody(tmp_path: Path) -> None:
    with HTTPReceiver(mode="hang") as hanging, HTTPReceiver() as good, Monitor(tmp_path / "m.db") as monitor:
        seed(
            monitor,
            [CallRecord(started_at=time.time() - 1, provider="p", operation="chat", endpoint="/", status_code=500)],
        )
        alerts = monitor.alerts
        alerts.add_rule(Rule("errors", "error_rate", 0.5, cooldown=0))
        alerts.add_channel(WebhookChannel(hanging.url, timeout=1.0, name="hanging"))
        alerts.add_channel(WebhookChannel(good.url, name="good"))
        started = time.monotonic()
        assert [e.event for e in alerts.evaluate_now()] == ["fired"]
        assert time.monotonic() - started < 0.5  # the evaluator only queues; the hanging channel holds for 1 s
        good.wait_for(1, timeout=5)  # the other channel delivers while the hanging one still waits
        hanging.wait_for(1, timeout=5)
        slow = alerts.stats()["channels"][0]
        assert (slow["name"], slow["sent"], slow["failed"], slow["queued"]) == ("hanging", 0, 0, 0)
        assert wait_until(lambda: alerts.stats()["channels"][0]["failed"] == 1, timeout=10)
        assert "timed out" in alerts.stats()["channels"][0]["last_error"]


def test_a_backed_up_channel_drops_and_counts() -> None:
    dispatcher = Dispatcher(max_queue=2)
    with HTTPReceiver(mode="hang") as hanging:
        dispatcher.add(WebhookChannel(hanging.url, timeout=5, name="slow"))
        for i in range(6):
            dispatcher.dispatch(event(id=i))  # one in flight, two queued, the rest dropped
        hanging.wait_for(1)
        stats = dispatcher.stats()[0]
        assert stats["dropped"] >= 3 and stats["queued"] <= 2
        hanging.release()
        assert dispatcher.flush(10)
        assert dispatcher.stats()[0]["sent"] + dispatcher.stats()[0]["dropped"] == 6


def test_channel_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="url: expected an http"):
        WebhookChannel("hooks.slack.com/x")
    with pytest.raises(ValueError, match="sender: expected an e-mail address"):
        EmailChannel("h", sender="nobody", to="a@b")
    with pytest.raises(ValueError, match="to: expected one or more e-mail addresses"):
        EmailChannel("h", sender="a@b", to=[])
    with pytest.raises(ValueError, match="starttls and ssl: choose one"):
        EmailChannel("h", sender="a@b", to="c@d", starttls=True, ssl=True)


# ---- a total deadline per send --------------------------------------------------------------------------------

SLACK = 0.5
"""How much longer than its timeout a send may take (thread wake-ups, closing the socket)."""
HTTP_ANSWER = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda port: WebhookChannel(f"http://127.0.0.1:{port}/hook", timeout=1.0), id="webhook"),
        pytest.param(lambda port: SlackChannel(f"http://127.0.0.1:{port}/hook", timeout=1.0), id="slack"),
    ],
)
def test_a_trickling_http_receiver_cannot_hold_a_send_past_its_timeout(make: Any) -> None:
    # a byte every 0.2 s: every read returns well within 1 s, the whole answer would take 45 s
    with Trickler(HTTP_ANSWER, 0.2) as trickler:
        channel = make(trickler.port)
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="timed out after 1 s"):
            channel.send(event())
        elapsed = time.monotonic() - started
    assert trickler.sent >= 3  # the receiver did trickle (the timeout is not a connect failure)
    print(f"\n{channel.name}: trickled {trickler.sent} bytes; send ended after {elapsed:.2f} s (timeout 1 s)")
    assert 1.0 <= elapsed < 1.0 + SLACK


@pytest.mark.parametrize("mode", ["plain", "ssl"])
def test_a_trickling_smtp_server_cannot_hold_a_send_past_its_timeout(mode: str) -> None:
    greeting = b"220 " + b"slow" * 50 + b"\r\n"
    with Trickler(greeting, 0.2, tls=mode == "ssl") as trickler:
        channel = EmailChannel(
            "127.0.0.1",
            port=trickler.port,
            sender="a@example.com",
            to="b@example.com",
            ssl=mode == "ssl",
            ssl_context=client_tls_context(),
            timeout=1.0,
        )
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="timed out after 1 s"):
            channel.send(event())
        elapsed = time.monotonic() - started
    assert trickler.sent >= 3
    print(f"\nemail ({mode}): trickled {trickler.sent} bytes; send ended after {elapsed:.2f} s (timeout 1 s)")
    assert 1.0 <= elapsed < 1.0 + SLACK
