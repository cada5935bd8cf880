"""The first live attack as a teacher gets it: `streamlit run app.py` on an empty workspace, one real browser
(Debian's chromium through Playwright), then the clicks the README names, timed from the server's start:

  Attack page -> "Set up the classroom default" (the shipped target, judge and prior: nothing trains)
              -> "Launch attack" (classroom preset: IF-GMI, 20 ORL identities x 5 restarts, 32 px)
              -> the first faces: the attack's final reconstructions, shown while the judges work
                 ("Final reconstructions"; the finished result if judging ended between two polls)
              -> the full result, every judge's verdict ("Attack accuracy top-1").

The baseline, measured in the same run, is the same work without the server and the browser: the README's
CLI commands (`classroom setup`, `attack --attack ifgmi --preset classroom`) in fresh processes on another empty workspace.
The ratio is what the app adds on top of the computation (page runs, polling, rendering); the goal for the
first faces is no more than the CLI's time for the whole first attack (set-up, attack and judging).

  python benchmarks/first_live_attack.py          # needs requirements-test.txt (playwright) and chromium
  python benchmarks/first_live_attack.py --load 1 # ... beside one process spinning a core (a busy laptop)

Writes JSON to benchmarks/results/ with the machine and the other programs' load at the start.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Marks(dict):
    """Milestones, each printed when reached: a run cut short still says how far it got."""

    def __setitem__(self, k, v):
        super().__setitem__(k, v)
        print(f"  browser milestone {k}: {v:.1f} s", flush=True)


def browser_path(ws: Path, wait_s: int = 600) -> dict:
    """Seconds from `streamlit run app.py` to each milestone of the first live attack (each waited for at most
    wait_s: a machine busy with other work needs longer)."""
    from playwright.sync_api import expect, sync_playwright
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Debian's chromium is not installed (apt-get install -y chromium)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    marks: dict[str, float] = _Marks()
    log = open(ws.parent / "streamlit.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1", "--server.port",
         str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"], cwd=ROOT,
        env={**os.environ, "MIVIS_WORKSPACE": str(ws)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 120:
                log.seek(0)
                raise SystemExit("streamlit did not start:\n" + log.read()[-3000:])
            time.sleep(0.1)
        marks["server_up_s"] = time.perf_counter() - t0
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, args=CHROME_ARGS)
            page = b.new_context(viewport={"width": 1400, "height": 1400}).new_page()
            page.set_default_timeout(wait_s * 1000)
            page.goto(f"{url}/attack")
            setup = page.get_by_role("button", name="Set up the classroom default")
            expect(setup).to_be_enabled(timeout=wait_s * 1000)
            marks["attack_page_ready_s"] = time.perf_counter() - t0
            setup.click()
            launch = page.get_by_role("button", name="Launch attack", exact=True)
            expect(launch).to_be_enabled(timeout=wait_s * 1000)  # the page reruns itself when the set-up finishes
            marks["setup_done_s"] = time.perf_counter() - t0
            launch.click()
            full = page.get_by_text("Attack accuracy top-1").first
            expect(page.get_by_text("Final reconstructions").first.or_(full)).to_be_visible(timeout=wait_s * 1000)
            marks["first_faces_s"] = time.perf_counter() - t0
            expect(full).to_be_visible(timeout=wait_s * 1000)
            marks["first_attack_done_s"] = time.perf_counter() - t0
            b.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.seek(0)
        tail = log.read()
    if "Traceback" in tail:
        raise SystemExit("the server printed a traceback:\n" + tail[-3000:])
    return dict(marks)


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--load", type=int, default=0, help="background processes, each spinning one core, during "
                    "both the browser path and the CLI baseline")
    ap.add_argument("--wait", type=int, default=600, help="seconds to wait for each milestone in the browser "
                    "(default 600; a machine busy with other work needs more)")
    a = ap.parse_args()
    from busy_machine import spinning
    from first_attack import shipped
    from machine import cpu_model
    from mivis.evaluation.dlib_judge import available
    from mivis.threads import measure_load
    dlib = available()  # the app's attack judges with dlib when it is installed; the CLI baseline does the same
    before = measure_load(1.0)
    with tempfile.TemporaryDirectory() as tmp, spinning(a.load):
        ui = browser_path(Path(tmp) / "ui-ws", a.wait)
        print("browser: " + ", ".join(f"{k} {v:.1f} s" for k, v in ui.items()), flush=True)
        cli = shipped(Path(tmp) / "cli-ws", dlib)
        print("CLI:     " + ", ".join(f"{k} {v:.1f} s" for k, v in cli.items()), flush=True)
    ratio = ui["first_attack_done_s"] / cli["first_attack_s"]
    faces = ui["first_faces_s"] / cli["first_attack_s"]
    print(f"first faces {ui['first_faces_s']:.1f} s after `streamlit run app.py` ({faces:.2f}x the CLI's whole first "
          f"attack); full result {ui['first_attack_done_s']:.1f} s; the same work from the CLI "
          f"{cli['first_attack_s']:.1f} s; ratio {ratio:.2f}x")
    print(f"other programs' load at the start: {before.others_busy:.2f} core(s) of {before.cores} ({cpu_model()}); "
          f"{a.load} spinning process(es) added; dlib judge: {dlib}")
    out = {"benchmark": "first_live_attack", "dlib": dlib, "cores": before.cores, "spinning_processes": a.load,
           "other_load_at_start_cores": round(before.others_busy, 2), "cpu": cpu_model(), "machine": platform.platform(),
           "python": platform.python_version(), "browser": ui, "cli": cli, "ratio_browser_over_cli": round(ratio, 3),
           "ratio_first_faces_over_cli": round(faces, 3)}
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    path = res / f"first_live_attack{f'-load{a.load}' if a.load else ''}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
