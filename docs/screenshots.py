"""The README's screenshots, from the demo: ``python docs/screenshots.py`` regenerates every docs/*.png.

    .venv/bin/python docs/screenshots.py [--out docs] [--port 8765]

Starts ``llm-monitor demo`` (``python -m llm_monitor_mw.demo``) on 127.0.0.1 with a fresh database in a temporary
directory, waits until it has seeded its week of history, and drives Debian's Chromium through Playwright
(``apt-get install chromium``; ``pip install playwright``; no browser download) over every page, light and dark
(the dashboard follows ``prefers-color-scheme``), 1280 px wide:

* ``overview``, ``requests``, ``detail`` (a call with tool calls and captured content), ``traces``, ``trace`` (a
  trace of several calls with a retry), ``session``, ``costs``, ``errors``, ``alerts``: ``<page>.png`` and
  ``<page>-dark.png``;
* a phone (390 px): ``requests-phone.png`` (the log's cards, scrolled past the filters) and
  ``overview-phone.png``.

Other ``*.png`` files in ``--out`` are deleted (screenshots of pages that no longer exist). The demo keeps making
live calls while the screenshots are taken, so two runs never give the same pixels.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1280, 900
PHONE = {"width": 390, "height": 844}
PAGES = ("overview", "requests", "detail", "traces", "trace", "session", "costs", "errors", "alerts")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def demo(port: int, db: Path) -> Iterator[str]:
    """The demo on ``port`` with the database ``db``, once seeded; yields the dashboard's base URL."""
    proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "llm_monitor_mw.demo", "--port", str(port), "--db", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # "seeded: ..." comes once the week is stored, "monitoring: ..." last
            print("demo |", line.rstrip(), flush=True)
            if line.startswith("monitoring:"):
                break
        base = f"http://127.0.0.1:{port}/monitoring"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the demo did not start")
            time.sleep(0.2)
        time.sleep(12)  # a few live calls, and the first evaluation of the alert rules (every 10 s)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pick(db: Path) -> dict[str, Any]:
    """The call, trace and session to show: read from the demo's database (``sqlite3``, read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        detail = one(
            "SELECT id FROM calls WHERE tool_call_count >= 2 AND request_content IS NOT NULL AND ok = 1"
            " AND route IS NOT NULL ORDER BY started_at DESC LIMIT 1"
        )
        # several calls, a retry, tool calls if there is such a trace: the agent route's traces have them
        trace = one(
            "SELECT trace_id FROM calls WHERE route IS NOT NULL GROUP BY trace_id"
            " HAVING count(DISTINCT call_id) >= 3 AND max(attempt) > 1"
            " ORDER BY max(coalesce(tool_call_count, 0)) > 0 DESC, count(*) DESC, max(started_at) DESC LIMIT 1"
        )
        session = one(
            "SELECT json_extract(tags, '$.session') AS s FROM calls WHERE s IS NOT NULL GROUP BY s"
            " HAVING count(DISTINCT trace_id) >= 4 ORDER BY max(started_at) DESC LIMIT 1"
        )
    return {"detail": detail, "trace": trace, "session": session}


def paths(chosen: dict[str, Any]) -> dict[str, str]:
    """Each page's path under the dashboard."""
    return {
        "overview": "/?range=7d",
        "requests": "/requests?range=7d",
        "detail": f"/requests/{chosen['detail']}",
        "traces": "/traces?range=7d",
        "trace": f"/traces/{chosen['trace']}",
        "session": f"/sessions/{chosen['session']}",
        "costs": "/costs?range=7d",
        "errors": "/errors?range=7d",
        "alerts": "/alerts",
    }


def shoot(page: Page, url: str, out: Path, top: str | None = None) -> None:
    """Open ``url``, wait for the charts and fragments, save a screenshot of the viewport to ``out`` (scrolled so
    that the element ``top`` selects is at the top, if given)."""
    page.goto(url, wait_until="networkidle")
    page.wait_for_timeout(400)  # charts are drawn after load
    if top is not None:
        page.locator(top).first.evaluate("element => element.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(100)
    page.screenshot(path=str(out))
    print("wrote", out.relative_to(ROOT) if out.is_relative_to(ROOT) else out, flush=True)


def main() -> None:
    """Start the demo, take every screenshot, delete stale ones."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--port", type=int, default=0, help="the demo's port (default: a free one)")
    args = parser.parse_args()
    out: Path = args.out
    written: set[Path] = set()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.db"
        with demo(args.port or free_port(), db) as base, sync_playwright() as pw:
            where = paths(pick(db))
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for scheme in ("light", "dark"):
                context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, color_scheme=scheme)
                page = context.new_page()
                for name in PAGES:
                    target = out / (f"{name}.png" if scheme == "light" else f"{name}-dark.png")
                    shoot(page, base + where[name], target)
                    written.add(target)
                context.close()
            phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            page = phone.new_page()
            # the log itself (its cards), below the filters; the overview from its top bar
            for name, top in (("requests", ".table-bar"), ("overview", None)):
                target = out / f"{name}-phone.png"
                shoot(page, base + where[name], target, top)
                written.add(target)
            phone.close()
            browser.close()
    for stale in sorted(set(out.glob("*.png")) - written):
        stale.unlink()
        print("deleted", stale.name)


if __name__ == "__main__":
    main()
