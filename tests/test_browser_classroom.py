"""Real browser, the widths a classroom projector and a laptop give: Home (the shipped demo: the same identities
under the full model and RoLSS, the paired difference in words) at 1024 and 1400 px wide, and the Attack page
at 1024 px. Full-page screenshots go to test-artifacts/ (home_1024.png, home_1400.png, attack_1024.png); in the
main block no label, caption, table cell or metric is cut off (scrollWidth > clientWidth). Uses
tests/test_browser.py's server and chromium set-up."""
from __future__ import annotations

import json
import time

import pytest

from test_browser import ARTIFACTS, ROOT, expect, idle, start_server, stop_server

pytestmark = pytest.mark.browser

HAS_DEMO = (ROOT / "assets" / "demo" / "demo.json").exists()

# elements whose text must fit their box: a cut-off metric label or caption reads as a different word
CUT_OFF_JS = """() => {
  const main = document.querySelector("[data-testid='stMainBlockContainer']");
  const sel = ["[data-testid='stMetricLabel']", "[data-testid='stMetricValue']", "[data-testid='stCaptionContainer']",
               "[data-testid='stMarkdownContainer'] p", "[data-testid='stMarkdownContainer'] th",
               "[data-testid='stMarkdownContainer'] td", "[data-testid='stWidgetLabel']",
               "[data-testid='stImageCaption']", "[data-testid='stHeadingWithActionElements']",
               ".stMarkdownEllipsis", "button p", "[data-testid='stExpander'] summary"].join(",");
  const out = [];
  for (const el of main.querySelectorAll(sel)) {
    if (!el.offsetParent) continue;  // hidden (a closed expander, another tab)
    if (el.scrollWidth > el.clientWidth + 1) out.push(`${el.tagName} ${el.scrollWidth}>${el.clientWidth}: ` +
                                                      el.innerText.slice(0, 80));
  }
  // a table wider than the block it sits in scrolls sideways: its right-hand columns are out of sight
  for (const t of main.querySelectorAll("[data-testid='stMarkdownContainer'] table")) {
    const box = t.closest("[data-testid='stMarkdownContainer']");
    if (t.getBoundingClientRect().right > box.getBoundingClientRect().right + 1)
      out.push("TABLE wider than its block: " + t.innerText.slice(0, 80));
  }
  return out;
}"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ui_world import world_copy
    return world_copy(tmp_path_factory.mktemp("browser") / "ws")


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    proc, url, log = start_server(world["path"], tmp_path_factory.mktemp("log") / "streamlit.log")
    yield {"url": url}
    tail = stop_server(proc, log)
    assert "Traceback" not in tail, tail[-3000:]


@pytest.fixture(scope="module")
def browser():
    from test_browser import CHROME_ARGS, CHROMIUM, sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        yield b
        b.close()


def open_at(browser, url: str, width: int, height: int = 900):
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    idle(page)
    return ctx, page


def full_shot(page, name: str) -> None:
    """The whole page: streamlit scrolls inside stMain, so the window is made as tall as its content first
    (a full_page screenshot alone stops at the window's height)."""
    for _ in range(4):  # until the height holds (a chart or an image can still grow once laid out)
        h = page.evaluate("() => document.querySelector(\"[data-testid='stMain']\").scrollHeight")
        if h <= page.viewport_size["height"]:
            break
        page.set_viewport_size({"width": page.viewport_size["width"], "height": h + 40})
        time.sleep(1.0)
    idle(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def assert_nothing_cut_off(page) -> None:
    cut = page.evaluate(CUT_OFF_JS)
    assert not cut, "text cut off in the main block:\n" + "\n".join(cut)


@pytest.mark.parametrize("width", [1024, 1400])
def test_home_demo_shows_both_models_side_by_side(server, browser, width):
    ctx, page = open_at(browser, server["url"], width)
    try:
        main = page.get_by_test_id("stMainBlockContainer")
        expect(main.get_by_text("model-inversion attack").first).to_be_visible()
        if HAS_DEMO:
            expect(page.get_by_test_id("stPlotlyChart").locator(".main-svg").first).to_be_visible()
        full_shot(page, f"home_{width}")  # before the checks: a failure leaves its picture
        if HAS_DEMO:
            expect(main.get_by_text("Attack accuracy, top-1").first).to_be_visible()
            expect(main.get_by_text("Paired difference in top-1 attack accuracy").first).to_be_visible()
            expect(main.get_by_text("leak", exact=False).first).to_be_visible()
            # per identity a card: real face, the full model's and RoLSS's reconstructions, each labelled
            n = len(json.loads((ROOT / "assets" / "demo" / "demo.json").read_text())["pairs"])
            for label in ("Real face", "Full model", "RoLSS"):
                expect(main.get_by_text(label, exact=True)).to_have_count(n)
            expect(main.get_by_test_id("stImage").first).to_be_visible()
            # a wrong verdict says who the judge saw, and shows that person's face
            expect(main.get_by_text("wrong: judged as").first).to_be_visible()
            expect(main.get_by_text("this is s").first).to_be_visible()
            # the cards sit side by side: more than one card in the first row at either width
            tops = page.evaluate("""() => [...document.querySelectorAll("[data-testid='stMainBlockContainer'] p")]
                .filter(p => /^Identity /.test(p.innerText)).map(p => Math.round(p.getBoundingClientRect().top))""")
            assert len(tops) >= 10 and tops.count(tops[0]) >= 2, tops
        assert_nothing_cut_off(page)
    finally:
        ctx.close()


def test_attack_page_at_1024(server, browser, world):
    ctx, page = open_at(browser, f"{server['url']}/attack?target={world['full']}", 1024)
    try:
        main = page.get_by_test_id("stMainBlockContainer")
        expect(main.get_by_role("button", name="Launch attack", exact=True)).to_be_visible()
        full_shot(page, "attack_1024")
        assert_nothing_cut_off(page)
    finally:
        ctx.close()
