"""Real-browser tests: a `streamlit run` server on a temp workspace, driven by Debian's chromium
through Playwright. Screenshots of the key states go to test-artifacts/ (gitignored).

They skip themselves, with the reason, where chromium or playwright is missing.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]
TINY = "dataset=synthetic&image_size=32&n_private=6&test_per_identity=2&batch_size=16"

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover
    sync_playwright = None

if sync_playwright is None:
    pytest.skip("playwright is not installed (pip install -r requirements-test.txt)", allow_module_level=True)
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); browser tests skipped",
                allow_module_level=True)


expect.set_options(timeout=30_000)  # a page's first run imports torch and timm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ui_world import world_copy
    return world_copy(tmp_path_factory.mktemp("browser") / "ws")


def start_server(ws, log_path):
    """`streamlit run app.py` on a free port with MIVIS_WORKSPACE=ws; returns (process, url, log file)."""
    port = _free_port()
    log = open(log_path, "w+")
    env = {**os.environ, "MIVIS_WORKSPACE": str(ws), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url, log
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            proc.kill()
            pytest.fail("streamlit did not start:\n" + log.read()[-3000:])
        time.sleep(0.2)


def stop_server(proc, log) -> str:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.seek(0)
    return log.read()


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    proc, url, log = start_server(world["path"], tmp_path_factory.mktemp("log") / "streamlit.log")
    yield {"url": url, "ws": world["path"], "proc": proc}
    tail = stop_server(proc, log)
    assert "Traceback" not in tail, tail[-3000:]


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        yield b
        b.close()


def new_page(browser, height=1000):
    ctx = browser.new_context(viewport={"width": 1400, "height": height})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    return ctx, page


def idle(page, timeout=60_000):
    app = page.locator("[data-testid='stApp']")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=timeout)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=timeout)


def progress(page):
    """The page's own progress bar (the sidebar's shared queue shows every job's bar too)."""
    return page.get_by_test_id("stMainBlockContainer").get_by_test_id("stProgress")


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_home_shows_a_result_at_once(server, browser):
    ctx, page = new_page(browser)
    t0 = time.monotonic()
    page.goto(server["url"])
    expect(page.get_by_text("model-inversion attack").first).to_be_visible(timeout=30_000)
    idle(page)
    elapsed = time.monotonic() - t0
    nav = page.get_by_test_id("stSidebarNav")
    for name in ("Home", "Architecture", "Runs"):
        expect(nav).to_contain_text(name)
    if (ROOT / "assets" / "demo" / "demo.json").exists():  # the shipped demo: faces, metrics, histogram, FI
        expect(page.get_by_text("Attack accuracy, top-1").first).to_be_visible()
        expect(page.get_by_test_id("stImage").first).to_be_visible()
        expect(page.get_by_test_id("stPlotlyChart").locator(".main-svg").first).to_be_visible()
        expect(page.get_by_text("AT&T Laboratories Cambridge").first).to_be_visible()
        elapsed = time.monotonic() - t0
    shot(page, "01_home")
    print(f"home with its demo rendered in {elapsed:.1f} s")
    ctx.close()


def test_toggle_last_stage_skip_changes_the_count(server, browser):
    ctx, page = new_page(browser, height=1700)
    page.goto(f"{server['url']}/architecture?{TINY}")
    idle(page)
    count = page.get_by_test_id("stMetricValue").first
    expect(count).to_have_text("11,173,318")
    toggles = page.get_by_role("switch", name="skips", exact=True)
    expect(toggles).to_have_count(4)
    toggles.nth(3).locator("xpath=ancestor::label").click()  # layer4: RoLSS
    expect(count).to_have_text("11,041,222")  # the projection shortcut is removed with the skip
    expect(page).to_have_url(re.compile(r"skip4=false"))
    idle(page)
    expect(page.get_by_test_id("stGraphVizChart").locator("svg")).to_be_visible()
    shot(page, "05_architecture_rolss")
    ctx.close()


def test_two_sessions_queue_cancel_and_reload(server, browser):
    """A's long job runs; B's is queued with its position; A reloads and finds its job; A cancels;
    B's job then runs to the end undisturbed."""
    ctx_a, a = new_page(browser)
    ctx_b, b = new_page(browser)
    try:
        a.goto(f"{server['url']}/architecture?{TINY}&epochs=400")
        idle(a)
        a.get_by_role("button", name="Train", exact=True).click()
        expect(progress(a)).to_be_visible(timeout=60_000)

        b.goto(f"{server['url']}/architecture?{TINY}&epochs=1")
        idle(b)
        b.get_by_role("button", name="Train", exact=True).click()
        expect(b.get_by_text("position 1 in the queue")).to_be_visible(timeout=30_000)
        shot(b, "02_second_session_queued")

        # a reload during the job finds it again (job id in the URL)
        assert "job=" in a.url
        a.reload()
        expect(progress(a)).to_be_visible(timeout=60_000)
        expect(progress(a)).to_contain_text("epoch", timeout=60_000)
        shot(a, "03_reloaded_job_running")

        a.get_by_role("button", name="Cancel", exact=True).click()
        expect(a.get_by_text("was cancelled")).to_be_visible(timeout=60_000)
        expect(b.get_by_text("finished in")).to_be_visible(timeout=120_000)
        expect(b.get_by_test_id("stMetricValue").filter(has_text="%").first).to_be_visible()
        shot(b, "04_queued_job_finished")
    finally:  # a failure must not leave the 400-epoch job blocking the next tests' jobs
        cancel = a.get_by_role("button", name="Cancel", exact=True)
        if cancel.count():
            cancel.click()
            expect(a.get_by_text("was cancelled")).to_be_visible(timeout=60_000)
        ctx_a.close()
        ctx_b.close()


def test_attack_live_then_results_with_histograms(server, browser, world):
    from ui_world import ATTACK_URL
    ctx, page = new_page(browser, height=1400)
    url = ATTACK_URL.replace("gmi.iterations=8", "gmi.iterations=60")
    page.goto(f"{server['url']}/attack?target={world['full']}&{url}")
    idle(page)
    expect(page.get_by_text("3 identities x 2 restarts")).to_be_visible()
    page.get_by_role("button", name="Launch attack", exact=True).click()
    expect(progress(page)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("current reconstructions, iteration")).to_be_visible(timeout=90_000)
    expect(page.get_by_test_id("stPlotlyChart").locator(".main-svg").first).to_be_visible()
    shot(page, "06_attack_running")
    expect(page.get_by_text("finished in")).to_be_visible(timeout=300_000)
    expect(page.get_by_text("Attack accuracy top-1")).to_be_visible()
    shot(page, "07_attack_finished")
    # no face grid is blown up past its own pixels: a long caption inside st.image once stretched a narrow
    # grid to the column's width
    sizes = page.locator('[data-testid="stImage"] img').evaluate_all(
        "imgs => imgs.map(i => [i.clientWidth, i.naturalWidth])")
    assert sizes and all(shown <= natural + 1 for shown, natural in sizes), sizes
    page.get_by_role("link", name="Open in Results").click()
    expect(page).to_have_url(re.compile(r"/results\?run=attack-"))
    idle(page)
    page.get_by_role("tab", name="Likelihood histograms").click()
    hist = page.get_by_test_id("stPlotlyChart").locator(".main-svg").first
    expect(hist).to_be_visible()
    # the histogram's own title (the words also occur in the hidden tabs' captions)
    expect(page.locator(".gtitle", has_text="Target's confidence in the attacked identity").first).to_be_visible()
    shot(page, "08_results_histograms")
    page.get_by_role("tab", name="Reconstructions").click()
    expect(page.get_by_text("real: synth0").first).to_be_visible()
    shot(page, "09_results_reconstructions")
    ctx.close()


def test_layers_and_tradeoff_pages(server, browser, world):
    ctx, page = new_page(browser, height=1500)
    page.goto(f"{server['url']}/layers?target={world['full']}")
    idle(page)
    expect(page.get_by_text("Fisher information per layer").first).to_be_visible()
    expect(page.get_by_test_id("stPlotlyChart").locator(".main-svg").first).to_be_visible()
    shot(page, "10_layers")
    page.goto(f"{server['url']}/tradeoff")
    idle(page)
    expect(page.get_by_text("natural accuracy vs attack accuracy").first).to_be_visible()
    expect(page.get_by_text("Reference: the RoLSS paper")).to_be_visible()
    points = page.locator(".scatterlayer .trace .points path")
    expect(points.first).to_be_visible()
    shot(page, "11_tradeoff")
    points.first.click(force=True)  # a click on a point opens its run
    expect(page).to_have_url(re.compile(r"/results\?run=attack-"), timeout=30_000)
    idle(page)
    expect(page.get_by_text("Top-1 judged by").first).to_be_visible()
    ctx.close()


def test_job_of_a_killed_server_shows_as_interrupted(browser, tmp_path):
    """The server dies (SIGKILL) during a training job; after a restart the reloaded page says so."""
    ws = tmp_path / "ws"
    proc, url, log = start_server(ws, tmp_path / "a.log")
    ctx, page = new_page(browser)
    try:
        page.goto(f"{url}/architecture?{TINY}&epochs=400")
        idle(page)
        page.get_by_role("button", name="Train", exact=True).click()
        expect(progress(page)).to_contain_text("epoch", timeout=60_000)
        job_url = page.url
        assert "job=" in job_url
    finally:
        proc.kill()
        proc.wait()
    proc, url2, log2 = start_server(ws, tmp_path / "b.log")
    try:
        page.goto(job_url.replace(url, url2))
        expect(page.get_by_text("was interrupted")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("the server stopped while it was running")).to_be_visible()
        idle(page)
        page.get_by_text("was interrupted").scroll_into_view_if_needed()
        shot(page, "12_interrupted_after_restart")
    finally:
        ctx.close()
        stop_server(proc, log2)
    from mivis.runs import Workspace
    (run,) = Workspace(ws).list()
    assert run.status == "interrupted"
