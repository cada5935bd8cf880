"""Real browser, every page at the widths a classroom projector and a laptop use (1024 and 1400 px):
nothing is fetched from outside the server (offline: the page icon was a Material icon from a font
host), and each page is screenshotted to test-artifacts/ to be looked at. Skips where chromium or
playwright is missing, like tests/test_browser.py, whose server helpers it uses."""
from __future__ import annotations

from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

tb = pytest.importorskip("test_browser")  # skips the module with test_browser's reason

WIDTHS = (1024, 1400)
LOCAL = ("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def world_server(tmp_path_factory):
    from ui_world import world_copy
    w = world_copy(tmp_path_factory.mktemp("pages") / "ws")
    proc, url, log = tb.start_server(w["path"], tmp_path_factory.mktemp("log") / "streamlit.log")
    yield {**w, "url": url}
    tail = tb.stop_server(proc, log)
    assert "Traceback" not in tail, tail[-3000:]


def test_every_page_at_1024_and_1400_px_fetches_nothing_from_outside(world_server):
    w = world_server
    paths = {"home": "/", "architecture": "/architecture?" + tb.TINY, "attack": "/attack",
             "results": f"/results?run={w['attack_full']}",
             "layers": f"/layers?target={w['full']}&vs={w['rolss']}",
             "tradeoff": "/tradeoff", "runs": f"/runs?run={w['attack_full']}&vs={w['attack_rolss']}"}
    outside: list[str] = []
    tb.ARTIFACTS.mkdir(exist_ok=True)
    with tb.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=tb.CHROMIUM, args=tb.CHROME_ARGS)
        try:
            for width in WIDTHS:
                # tall viewport: Streamlit scrolls inside the page, so a full-page shot needs the height up front
                ctx = browser.new_context(viewport={"width": width, "height": 2600})
                page = ctx.new_page()
                page.set_default_timeout(120_000)
                page.on("request", lambda r: outside.append(r.url)
                        if urlparse(r.url).scheme in ("http", "https", "ws", "wss")
                        and urlparse(r.url).hostname not in LOCAL else None)
                for name, path in paths.items():
                    page.goto(w["url"] + path)
                    tb.idle(page, timeout=120_000)
                    assert not page.get_by_test_id("stException").count(), f"{name} at {width} px raised"
                    page.wait_for_timeout(500)  # plotly draws after the script finishes
                    page.screenshot(path=str(tb.ARTIFACTS / f"width{width}_{name}.png"), full_page=True)
                if width == WIDTHS[0]:
                    icon = page.locator("link[rel*='icon']").first.get_attribute("href") or ""
                    assert urlparse(icon).hostname in (None,) + LOCAL, icon  # served by the app itself
                ctx.close()
        finally:
            browser.close()
    assert outside == [], f"requests left the server: {sorted(set(outside))[:5]}"
