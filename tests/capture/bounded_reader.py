"""A proxy-like consumer, run in its own process: reads a response with ``iter_raw()`` (no decoding) and reports the
wall time of the read and the process's peak RSS, with or without a Monitor on its client.

    python -m tests.capture.bounded_reader BASE_URL plain|monitored DB_PATH
"""

from __future__ import annotations

import json
import resource
import sys
import time

import httpx

from llm_monitor_mw import Monitor

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def main() -> None:
    base_url, mode, db = sys.argv[1:4]
    monitor = Monitor(db, flush_interval=0.05)  # built in both modes, so both processes hold the same code
    client = httpx.Client(transport=monitor.transport() if mode == "monitored" else None, timeout=60)
    with client.stream("POST", base_url + "/small/v1/chat/completions", json=BODY) as warm:
        for _ in warm.iter_raw():
            pass
    start = time.perf_counter()
    size = 0
    with client.stream("POST", base_url + "/bomb/v1/chat/completions", json=BODY) as response:
        for chunk in response.iter_raw():
            size += len(chunk)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client.close()
    flushed = monitor.flush(timeout=30)
    monitor.close()
    print(json.dumps({"seconds": seconds, "peak_kib": peak_kib, "raw_bytes": size, "flushed": flushed}))


if __name__ == "__main__":
    main()
