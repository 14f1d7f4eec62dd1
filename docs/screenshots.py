"""Screenshots of the dashboard for the docs: ``python docs/screenshots.py`` writes docs/*.png (1280x900).

Seeds a temporary database with a week of synthetic traffic, serves the dashboard with uvicorn on 127.0.0.1 and
drives Debian's Chromium through Playwright (``apt-get install chromium``; ``pip install playwright``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from llm_monitor_mw import Monitor  # noqa: E402
from tests.browser.seeding import seed  # noqa: E402
from tests.browser.server import host_app, serve  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]
PAGES = {
    "overview": "/",
    "requests": "/requests",
    "costs": "/costs?range=30d",
    "errors": "/errors?range=7d",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dark", action="store_true", help="also take dark-theme screenshots (*-dark.png)")
    parser.add_argument("--mobile", action="store_true", help="also take a phone-sized overview (overview-mobile.png)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        monitor = Monitor(Path(tmp) / "screens.db", capture_content=True)
        seed(monitor, args.rows, now=time.time(), days=30)
        with serve(host_app(monitor, "/monitoring")) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            schemes = ["light", "dark"] if args.dark else ["light"]
            for scheme in schemes:
                page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
                suffix = "" if scheme == "light" else "-dark"
                for name, path in PAGES.items():
                    page.goto(f"{base}/monitoring{path}")
                    page.screenshot(path=str(args.out / f"{name}{suffix}.png"))
                page.goto(f"{base}/monitoring/requests?range=7d")  # a streamed call that succeeded on its retry
                row = page.locator("table.data tbody tr").filter(has_text="try 2").filter(has_text="stream").first
                row.locator("a.row-link").click()
                page.wait_for_load_state()
                page.screenshot(path=str(args.out / f"detail{suffix}.png"))
                page.close()
            if args.mobile:
                page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
                page.goto(f"{base}/monitoring/")
                page.screenshot(path=str(args.out / "overview-mobile.png"))
            browser.close()
        monitor.close()
    print("wrote", ", ".join(str(p) for p in sorted(args.out.glob("*.png"))))


if __name__ == "__main__":
    main()
