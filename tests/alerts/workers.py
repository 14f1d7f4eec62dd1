"""Process entry points for the multi-process tests (importable, so they run under the ``spawn`` start method)."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from llm_monitor_mw import Budget, BudgetExceeded, Monitor, Rule, WebhookChannel

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"x-fake-chunk-delay": "0.01"}
"""Each call takes at least 10 ms at the fake server, like a (very fast) real model."""


def evaluate_once(db: str, hook_url: str, barrier: Any, now: float, out: Any) -> None:
    """Configure the same rule and channel as every other worker and evaluate once. Every worker reads the alert's
    state before any of them claims the change (``barrier``), so all of them try to claim the same transition."""
    monitor = Monitor(db)
    monitor.alerts.add_rule(Rule("errors", "error_rate", 0.5, window="10m"))
    monitor.alerts.add_channel(WebhookChannel(hook_url, timeout=5))
    store = monitor.alerts.store
    store.ensure()
    claim = store.claim

    def claim_together(*args: Any, **kwargs: Any) -> bool:
        barrier.wait(30)
        return claim(*args, **kwargs)

    store.claim = claim_together  # type: ignore[method-assign]
    events = monitor.alerts.evaluate_now(now=now)
    monitor.alerts.flush(10)
    out.put([e.event for e in events])
    monitor.close()


def spend_until_refused(db: str, base_url: str, limit: float, threads: int, ready: Any, start: Any, out: Any) -> None:
    """Call the fake LLM from ``threads`` threads until the shared hard budget refuses; report counts."""
    monitor = Monitor(db)
    monitor.alerts.add_budget(Budget("shared", limit, hard=True))
    monitor.alerts.store.ensure()
    ready.put(True)
    ok = [0] * threads
    refused = [0] * threads
    errors: list[str] = []

    def run(i: int) -> None:
        with httpx.Client(transport=monitor.transport(), timeout=30) as client:
            while True:
                try:
                    response = client.post(f"{base_url}/v1/chat/completions", json=CHAT, headers=HEADERS)
                    response.raise_for_status()
                    ok[i] += 1
                except BudgetExceeded:
                    refused[i] += 1
                    return
                except Exception as exc:  # reported to the test, which fails on it
                    errors.append(repr(exc))
                    return

    start.wait(30)
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    monitor.flush(10)
    out.put({"ok": sum(ok), "refused": sum(refused), "errors": errors})
    monitor.close()


def evaluate_rounds(target: str, hook_url: str, instance: str, barrier: Any, rounds: list[float], out: Any) -> None:
    """One instance of a fleet: the same rule and channel as every other, evaluated once at each time in ``rounds``.
    Before each claim every instance waits for the others (``barrier``), so all of them read the alert's state
    before any of them claims the change, and all try to claim the same transition."""
    monitor = Monitor(target, instance=instance)
    monitor.alerts.add_rule(Rule("errors", "error_rate", 0.5, window="10m", cooldown=0))
    monitor.alerts.add_channel(WebhookChannel(hook_url, timeout=5))
    store = monitor.alerts.store
    claim = store.claim

    def claim_together(*args: Any, **kwargs: Any) -> bool:
        barrier.wait(30)
        return claim(*args, **kwargs)

    store.claim = claim_together  # type: ignore[method-assign]
    won = []
    for now in rounds:
        won.append([e.event for e in monitor.alerts.evaluate_now(now=now)])
    monitor.alerts.flush(10)
    out.put({"instance": instance, "won": won, "errors": monitor.alerts.stats()["errors"]})
    monitor.close()


def sdk_spend_until_refused(
    target: str, base_url: str, instance: str, limit: float, threads: int, ready: Any, start: Any, out: Any
) -> None:
    """One instance of a fleet: ``threads`` threads call the fake LLM through the real openai SDK until the shared
    hard budget refuses each of them; reports counts."""
    import openai

    monitor = Monitor(target, instance=instance)
    monitor.alerts.add_budget(Budget("fleet", limit, hard=True))
    ready.put(True)
    ok = [0] * threads
    refused = [0] * threads
    errors: list[str] = []

    def run(i: int) -> None:
        client = openai.OpenAI(
            base_url=base_url + "/v1",
            api_key="sk-test",
            http_client=httpx.Client(transport=monitor.transport(), timeout=30),
            max_retries=0,
        )
        while True:
            try:
                client.chat.completions.create(model=CHAT["model"], messages=CHAT["messages"], extra_headers=HEADERS)
                ok[i] += 1
            except Exception as exc:
                refusal = exc if isinstance(exc, BudgetExceeded) else exc.__cause__
                if isinstance(refusal, BudgetExceeded):
                    refused[i] += 1
                else:  # reported to the test, which fails on it
                    errors.append(repr(exc))
                return

    start.wait(30)
    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    monitor.flush(10)
    out.put({"instance": instance, "ok": sum(ok), "refused": sum(refused), "errors": errors})
    monitor.close()
