"""Real browser: a teacher's round of "Be the judge" on the shipped demo, at 1024 x 768. Two student browsers
(separate contexts: separate cookies) and a teacher's. Students wait until the teacher opens the round, see the
reconstruction, the faces and the vote buttons above the fold with nothing cut, and no answer after voting; a
student's reload and new tab stay the same voter (one vote per item); a student's guessed key is refused and
changes nothing; the teacher's reveal reaches the students by itself. Needs no models: the demo's reconstructions
(assets/demo/) are all a classroom needs. Uses tests/test_browser.py's server and chromium set-up (and skips
where it does)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "assets" / "demo" / "demo.json").exists():
    pytest.skip("assets/demo/ is not in this checkout", allow_module_level=True)

from test_browser import CHROME_ARGS, CHROMIUM, idle, shot, start_server, stop_server  # noqa: E402

W, H = 1024, 768
KEY = "teach-5f3a"


def tally_text(page, pattern: str):
    return page.get_by_test_id("stMarkdownContainer").filter(has_text=re.compile(pattern))


def small_page(browser):
    ctx = browser.new_context(viewport={"width": W, "height": H})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    return ctx, page


def above_the_fold_and_uncut(page) -> None:
    """The reconstruction, every candidate face and every vote button lie inside the 1024 x 768 window, and no
    element of the main block is wider than the block."""
    main = page.get_by_test_id("stMainBlockContainer")
    boxes = [page.get_by_test_id("stImage").first] + \
        [page.get_by_role("button", name=str(i), exact=True) for i in range(1, 6)] + \
        [page.get_by_role("button", name="None of them")]
    for el in boxes:
        b = el.bounding_box()
        assert b is not None and b["y"] >= 0 and b["y"] + b["height"] <= H and b["x"] + b["width"] <= W, b
    over = main.evaluate("m => [...m.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1 && "
                         "getComputedStyle(e).overflowX !== 'visible').map(e => e.getAttribute('data-testid') || "
                         "e.tagName).slice(0, 5)")
    assert main.evaluate("m => m.scrollWidth <= m.clientWidth + 1"), over
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_a_teachers_round_with_two_students_at_1024(tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    from mivis import votes as V
    from mivis.runs import Workspace
    monkeypatch.setenv(V.TEACHER_ENV, KEY)  # the server's environment: the teacher key
    ws = Workspace(tmp_path / "ws")
    proc, url, log = start_server(ws.path, tmp_path / "streamlit.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
            ctx_a, a = small_page(browser)
            ctx_b, b = small_page(browser)
            ctx_t, t = small_page(browser)
            for page in (a, b, t):
                page.goto(f"{url}/judge")
                idle(page)
                expect(page.get_by_text("Waiting for the teacher to open a round")).to_be_visible()
            # a student tries to take over: no control without the key, a guessed key is refused
            a.get_by_text("Teacher", exact=True).click()
            expect(a.get_by_role("button", name="Reveal the answers")).to_have_count(0)
            expect(a.get_by_role("button", name=re.compile(r"^(Reset round|Open the round|Open a new round)$"))).to_have_count(0)
            a.get_by_label("Teacher key").fill("0000-0000-0000")
            a.get_by_role("button", name=re.compile("Unlock")).click()
            expect(a.get_by_text(re.compile("wrong teacher key"))).to_be_visible()
            expect(a.get_by_role("button", name="Reveal the answers")).to_have_count(0)
            shot(a, "judge_01_student_guesses_the_key")
            assert V.round_info(ws, V.DEMO)["state"] == V.WAITING
            # the teacher opens the round (5 faces); the students' pages follow without a click
            t.get_by_text("Teacher", exact=True).click()
            t.get_by_label("Teacher key").fill(KEY)
            t.get_by_role("button", name=re.compile("Unlock")).click()
            t.get_by_role("button", name="Open the round").click()
            expect(t.get_by_text(re.compile("Round 1 is open with 5 faces"))).to_be_visible()
            a.reload()  # the guessed-key form is gone; the page is as a student opens it
            idle(a)
            for page in (a, b):
                expect(page.get_by_text(re.compile(r"Round 1 · who is this\? \(1 of 10\)"))).to_be_visible(
                    timeout=20_000)
            idle(a)
            a.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
            above_the_fold_and_uncut(a)
            shot(a, "judge_02_student_question_1024x768")
            a.get_by_role("button", name="1", exact=True).click()
            expect(a.get_by_text(re.compile(r"who is this\? \(2 of 10\)"))).to_be_visible()
            expect(a.get_by_text(re.compile(r"it was|Right|Not quite"))).to_have_count(0)  # no answer yet
            expect(tally_text(a, r"votes: 1 · voters: 1")).to_be_visible()
            # a reload and a new tab of the same browser are the same voter: item 1 stays voted
            a.reload()
            idle(a)
            expect(a.get_by_text(re.compile(r"who is this\? \(2 of 10\)"))).to_be_visible()
            a2 = ctx_a.new_page()
            a2.goto(f"{url}/judge")
            idle(a2)
            expect(a2.get_by_text(re.compile(r"who is this\? \(2 of 10\)"))).to_be_visible()
            a2.close()
            # the other student votes; both tallies show two voters
            b.get_by_role("button", name="None of them").click()
            expect(b.get_by_text(re.compile(r"who is this\? \(2 of 10\)"))).to_be_visible()
            expect(tally_text(a, r"votes: 2 · voters: 2")).to_be_visible(timeout=20_000)
            expect(a.get_by_text("Class top-1")).to_have_count(0)  # the score waits for the reveal
            # the teacher sees the live score and reveals; the students see the answers by themselves
            expect(t.get_by_text(re.compile("Class top-1"))).to_be_visible(timeout=20_000)
            t.get_by_role("button", name="Reveal the answers").click()
            expect(a.get_by_text(re.compile(r"Round 1 revealed: you named the right person in [01] of your 1 "
                                            r"votes"))).to_be_visible(timeout=20_000)
            expect(a.get_by_text(re.compile("Same line-up: 5 faces, chance 20%"))).to_be_visible()
            idle(a)
            a.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
            shot(a, "judge_03_revealed_1024x768")
            shot(t, "judge_04_teacher_1024x768")
            for c in (ctx_a, ctx_b, ctx_t):
                c.close()
            browser.close()
    finally:
        tail = stop_server(proc, log)
    assert "Traceback" not in tail, tail[-3000:]
    tv = V.tally(ws, V.DEMO)
    assert (tv["votes"], tv["voters"], tv["state"]) == (2, 2, V.REVEALED)
    assert all(v["session"].startswith("v-") for v in V.votes(ws, V.DEMO))  # browser ids, not session ids


def test_a_run_deleted_under_an_open_page_is_one_line_and_its_votes_go_with_the_cascade(tmp_path, monkeypatch):
    """A round on an attack run (hand-made: no training): the teacher's reveal shows the class beside the machine
    judges on the same line-up; then the run is deleted with its votes (the cascade) while a student's page is
    open: the page says so in one line, no exception box."""
    from playwright.sync_api import expect, sync_playwright
    from test_votes import fake_attack

    from mivis import votes as V
    from mivis.runs import RunError, Workspace
    monkeypatch.setenv(V.TEACHER_ENV, KEY)
    ws = Workspace(tmp_path / "ws")
    rid, _ = fake_attack(ws)
    b = V.load_ballot(ws, rid)
    V.open_round(ws, b, 3, V.Teacher.owner())
    V.lineup(ws, b, n_boot=10, compute=True)  # what the teacher's 'Open' does
    proc, url, log = start_server(ws.path, tmp_path / "streamlit.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
            ctx, a = small_page(browser)
            a.goto(f"{url}/judge?run={rid}")
            idle(a)
            expect(a.get_by_text(re.compile(r"Round 1 · who is this\? \(1 of 3\)"))).to_be_visible()
            a.get_by_role("button", name="None of them").click()
            expect(a.get_by_text(re.compile(r"who is this\? \(2 of 3\)"))).to_be_visible()
            V.reveal_round(ws, rid, V.Teacher.owner())
            expect(a.get_by_text(re.compile("Same line-up: 3 faces, chance 33%"))).to_be_visible(timeout=20_000)
            expect(a.get_by_text(re.compile(r"Another question: which of all 6 private identities"))).to_be_visible()
            idle(a)
            a.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
            shot(a, "judge_05_run_revealed_with_the_machine_judges")
            with pytest.raises(RunError, match="class vote"):
                ws.delete(rid)  # asks first: the cascade deletes the votes too
            ws.delete(rid, cascade=True)
            expect(a.get_by_text(re.compile("This attack run was deleted"))).to_be_visible(timeout=20_000)
            expect(a.get_by_test_id("stException")).to_have_count(0)
            shot(a, "judge_06_run_deleted_under_the_page")
            ctx.close()
            browser.close()
    finally:
        tail = stop_server(proc, log)
    assert "Traceback" not in tail, tail[-3000:]
    assert V.vote_counts(ws, [rid]) == {}
