"""httpx2 is optional: with it unimportable, capture over plain httpx still records calls."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from llm_monitor_mw.fake_llm import FakeLLMServer


def test_capture_works_when_httpx2_cannot_be_imported(fake_llm: FakeLLMServer, tmp_path: object) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["httpx2"] = None  # any `import httpx2` now raises ImportError
        import httpx
        from llm_monitor_mw import Monitor
        from llm_monitor_mw.capture.httplibs import LIBRARIES
        from llm_monitor_mw.store.queries import Filters
        assert LIBRARIES == (httpx,), LIBRARIES
        monitor = Monitor({str(tmp_path)!r} + "/no-httpx2.db")
        monitor.instrument_httpx()
        with httpx.Client() as client:
            client.post({fake_llm.base_url!r} + "/v1/chat/completions", json={{"model": "gpt-4o-mini", "messages": []}})
        monitor.flush()
        items, total = monitor.store.queries.requests(Filters())
        assert total == 1 and items[0]["total_tokens"] == 15, items
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
