"""A host process for the exit tests: ``python -m tests.e2e.exit_worker DSN FAKE_URL CALLS {exit,close}``.

Records one call (so the database was there), says ``ready`` and waits for a line on stdin (the test cuts the
database meanwhile), makes ``CALLS`` more calls, which can only queue, says ``exiting`` and then returns
(``exit``: the interpreter's exit flush does the rest) or calls ``monitor.close()`` first (``close``).
"""

from __future__ import annotations

import sys

import httpx
import openai

from llm_monitor_mw import Monitor


def main(dsn: str, fake_url: str, calls: int, how: str) -> None:
    monitor = Monitor(dsn, instance="exiting", flush_interval=0.05)
    client = openai.OpenAI(
        base_url=fake_url + "/v1",
        api_key="sk-test",
        http_client=httpx.Client(transport=monitor.transport(), timeout=30),
        max_retries=0,
    )
    messages: list[dict[str, str]] = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    assert monitor.flush(10)
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(calls):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    print("exiting", monitor.stats()["queued"], flush=True)
    if how == "close":
        monitor.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
