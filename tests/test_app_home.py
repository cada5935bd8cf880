"""AppTest, Home (issue 17): the demo shows the same identities reconstructed under the full model and under
RoLSS side by side (real face | full model | RoLSS per identity, each labelled), every verdict in colour and
words, the face of the identity a wrong verdict names, both models' attack accuracies with intervals and the
paired difference in words; all without importing torch. Runs on the shipped demo (assets/demo/) and on a
small demo folder written here (MIVIS_DEMO), so the page's logic is pinned whatever the shipped numbers are."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from test_app import APP, ROOT, assert_clean, texts  # noqa: E402

SHIPPED = ROOT / "assets" / "demo"
needs_demo = pytest.mark.skipif(not (SHIPPED / "demo.json").exists(), reason="assets/demo/ is not in this checkout")


def _png(path, value: int) -> None:
    from PIL import Image
    a = np.full((32, 32), value, np.uint8)
    a[8:24, 8:24] = 255 - value  # not flat: a face-sized picture with a square in it
    Image.fromarray(a).save(path)


def small_demo(folder, resolved: bool = False):
    """Three identities: a right/wrong, wrong/right and wrong/wrong under full/RoLSS; s3 is judged as s1."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i, (who, full, rolss) in enumerate([("s1", (True, "s1"), (False, "s9")), ("s2", (False, "s1"), (True, "s2")),
                                           ("s3", (False, "s1"), (False, "s1"))]):
        _png(folder / f"real_{i}.png", 10 + 40 * i)
        _png(folder / f"recon_{i}.png", 20 + 40 * i)
        _png(folder / f"recon_defended_{i}.png", 30 + 40 * i)
        pair = {"identity": who, "real": f"real_{i}.png", "recon": f"recon_{i}.png", "correct": full[0],
                "predicted": full[1], "likelihood": 0.9 + i / 100,
                "defended": {"recon": f"recon_defended_{i}.png", "correct": rolss[0], "predicted": rolss[1],
                             "likelihood": 0.8 + i / 100}}
        for v, (ok, pred) in ((pair, full), (pair["defended"], rolss)):
            if not ok:
                v["predicted_real"] = f"judged_{pred}.png"
        pairs.append(pair)
    _png(folder / "judged_s1.png", 10)   # s1's real face (the same picture as real_0.png)
    _png(folder / "judged_s9.png", 200)
    m = lambda v, lo, hi: {"value": v, "lo": lo, "hi": hi, "n": 3}  # noqa: E731
    spec = {"title": "GMI against a test model: full model vs RoLSS", "caption": "A small test demo.",
            "metrics": [{"label": "Natural acc. (full)", "value": {"value": 0.9, "lo": None, "hi": None}},
                        {"label": "Attack acc. top-1 (full)", "value": m(0.6, 0.4, 0.8)},
                        {"label": "Natural acc. (RoLSS)", "value": {"value": 0.88, "lo": None, "hi": None}},
                        {"label": "Attack acc. top-1 (RoLSS)", "value": m(0.35, 0.2, 0.5)}],
            "paired": {"metric": "attack_acc_top1", "a": "full", "b": "RoLSS", "n": 3, "resolved": resolved,
                       "same_starting_latents": True, "value": 0.25, "lo": 0.05 if resolved else -0.05, "hi": 0.45},
            "pairs": pairs, "credit": "test faces"}
    (folder / "demo.json").write_text(json.dumps(spec))
    return spec


def home(monkeypatch, tmp_path, demo=None) -> AppTest:
    monkeypatch.setenv("MIVIS_WORKSPACE", str(tmp_path / "ws"))
    if demo is None:
        monkeypatch.delenv("MIVIS_DEMO", raising=False)
    else:
        monkeypatch.setenv("MIVIS_DEMO", str(demo))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert_clean(at)
    return at


def _flat(node) -> list:
    """The elements under a block in page order."""
    kids = getattr(node, "children", None)
    if isinstance(kids, dict):
        return [e for k in sorted(kids) for e in _flat(kids[k])]
    return [node]


def cards(at) -> dict[str, list[tuple[str, str]]]:
    """Each identity's card: [(kind, text)] in order: labels (markdown), captions, and images as
    ("image", alt | caption | url)."""
    out = {}

    def visit(node):
        kids = getattr(node, "children", None)
        if not isinstance(kids, dict):
            return
        items = _flat(node)
        heads = [e for e in items if getattr(e, "type", None) == "markdown" and e.value.startswith("**Identity ")]
        if len(heads) == 1 and items[0] is heads[0]:
            who = heads[0].value.removeprefix("**Identity ").removesuffix("**")
            row = []
            for e in items:
                if e.type == "image":
                    img = e.proto.imgs[0]
                    row.append(("image", f"{img.alt} | {img.caption} | {img.url}"))
                elif e.type in ("markdown", "caption"):
                    row.append((e.type, e.value))
            out[who] = row
            return
        for k in sorted(kids):
            visit(kids[k])
    visit(at.main)
    return out


def _labels(card) -> list[str]:
    return [t.strip("*") for k, t in card if k == "markdown"]


def _url(card, alt_start: str) -> str:
    return next(t.rsplit(" | ", 1)[1] for k, t in card if k == "image" and t.startswith(alt_start))


def test_small_demo_side_by_side_verdicts_judged_faces_and_paired_words(monkeypatch, tmp_path):
    spec = small_demo(tmp_path / "demo")
    at = home(monkeypatch, tmp_path, tmp_path / "demo")
    page = texts(at)
    # both models' attack accuracies with their intervals, one row per model
    assert "| Full model (no defense) | 90% | 60% [40, 80] |" in page
    assert "| RoLSS: last stage's skip connections removed | 88% | 35% [20, 50] |" in page
    # the paired difference in words (here its interval contains 0)
    assert "Paired difference in top-1 attack accuracy, the full model − RoLSS: **+25.0 pp** [-5.0, +45.0] over " \
           "3 identities" in page
    assert "**not resolved**" in page and "neither the full model nor RoLSS is shown to leak less" in page
    assert "recognises **1 under the full model** and **1 under RoLSS**" in page
    got = cards(at)
    assert list(got) == ["s1", "s2", "s3"]
    for pair in spec["pairs"]:
        card = got[pair["identity"]]
        # real face | full model | RoLSS, each labelled, in that order
        assert _labels(card) == [f"Identity {pair['identity']}", "Real face", "Full model", "RoLSS"]
        imgs = [t for k, t in card if k == "image"]
        assert imgs[0].startswith(f"a real private training face of {pair['identity']}")
        assert any(t.startswith(f"the attack's reconstruction of {pair['identity']} under Full model") for t in imgs)
        assert any(t.startswith(f"the attack's reconstruction of {pair['identity']} under RoLSS") for t in imgs)
        # each verdict in words (the frame's colour is not the only signal), with the target's confidence
        caps = [t for k, t in card if k == "caption"]
        for v in (pair, pair["defended"]):
            words = "✓ right" if v["correct"] else f"✗ wrong: judged as {v['predicted']}"
            assert any(c.startswith(words) and f"confidence {v['likelihood']:.1%}" in c for c in caps), (words, caps)
        # a wrong verdict shows the face of the identity the judge named, captioned with its name
        judged = [t for t in imgs if "the identity the judge picked" in t]
        wrong = [v["predicted"] for v in (pair, pair["defended"]) if not v["correct"]]
        assert [t.split(" | ")[1] for t in judged] == [f"this is {w}" for w in wrong]
    # "judged as s1" shows s1's real face: the same picture as s1's own real face in the first card
    s1 = _url(got["s1"], "a real private training face of s1")
    assert [t.rsplit(" | ", 1)[1] for k, t in got["s2"] if k == "image" and "judge picked" in t] == [s1]
    assert _url(got["s1"], "a real face of s9") != s1


def test_small_demo_resolved_says_which_model_leaks_less(monkeypatch, tmp_path):
    small_demo(tmp_path / "demo", resolved=True)
    page = texts(home(monkeypatch, tmp_path, tmp_path / "demo"))
    assert "[+5.0, +45.0] over 3 identities: **resolved: RoLSS leaks 25 pp less than the full model**" in page
    assert "same identities from the same starting latents" in page


def test_demo_without_the_defended_faces_says_so(monkeypatch, tmp_path):
    spec = small_demo(tmp_path / "demo")
    for p in spec["pairs"]:
        del p["defended"]
    del spec["paired"]
    (tmp_path / "demo" / "demo.json").write_text(json.dumps(spec))
    at = home(monkeypatch, tmp_path, tmp_path / "demo")
    assert "only** (this demo does not ship the RoLSS run's reconstructions" in texts(at)
    assert all(_labels(c)[1:] == ["Real face", "Full model"] for c in cards(at).values())
    assert "Paired difference" not in texts(at)


@needs_demo
def test_shipped_demo_shows_both_models_and_the_paired_difference(monkeypatch, tmp_path):
    from mivis.ui.words import paired_words
    spec = json.loads((SHIPPED / "demo.json").read_text())
    at = home(monkeypatch, tmp_path)
    page = texts(at)
    assert "full model vs RoLSS" in spec["title"]
    d = spec["paired"]
    assert {"value", "lo", "hi", "n", "resolved"} <= set(d) and d["n"] >= 10
    assert paired_words(d, "the full model", "RoLSS") in page
    top1 = {m["label"]: m["value"] for m in spec["metrics"]}
    for who in ("full", "RoLSS"):
        m = top1[f"Attack acc. top-1 ({who})"]
        assert m["lo"] <= m["value"] <= m["hi"]
        assert f"{100 * m['value']:.0f}% [{100 * m['lo']:.0f}, {100 * m['hi']:.0f}]" in page
    # the paired difference agrees with the two accuracies (same identities, same judge)
    diff = top1["Attack acc. top-1 (full)"]["value"] - top1["Attack acc. top-1 (RoLSS)"]["value"]
    assert d["value"] == pytest.approx(diff, abs=0.011)
    got = cards(at)
    assert list(got) == [p["identity"] for p in spec["pairs"]] and len(got) == 10
    real = {p["identity"]: _url(got[p["identity"]], f"a real private training face of {p['identity']}")
            for p in spec["pairs"]}
    n_wrong = 0
    for p in spec["pairs"]:
        card = got[p["identity"]]
        assert _labels(card) == [f"Identity {p['identity']}", "Real face", "Full model", "RoLSS"]
        caps = [t for k, t in card if k == "caption"]
        for v in (p, p["defended"]):
            assert (SHIPPED / v["recon"]).exists()
            words = "✓ right" if v["correct"] else f"✗ wrong: judged as {v['predicted']}"
            assert any(c.startswith(words) for c in caps)
            if not v["correct"]:
                n_wrong += 1
                assert (SHIPPED / v["predicted_real"]).exists()
                assert f"this is {v['predicted']}" in [t.split(" | ")[1] for k, t in card if k == "image"]
                if v["predicted"] in real:  # the named identity is shown too: the same real face
                    assert _url(card, f"a real face of {v['predicted']}") == real[v["predicted"]]
    assert n_wrong > 0
    assert "Traceback" not in page


def test_home_imports_no_torch(tmp_path):
    """Home renders the demo from files: a fresh process shows it without torch (or timm) loaded."""
    small_demo(tmp_path / "demo")
    code = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
            f"at = AppTest.from_file({APP!r}, default_timeout=120)\nat.run()\n"
            "assert not at.exception, [e.value for e in at.exception]\n"
            "assert any('Identity s1' in m.value for m in at.markdown)\n"
            "print('torch' in sys.modules, 'timm' in sys.modules)\n")
    for demo in (tmp_path / "demo", None):
        env = {**os.environ, "MIVIS_WORKSPACE": str(tmp_path / "ws")}
        env.pop("MIVIS_DEMO", None)
        if demo is not None:
            env["MIVIS_DEMO"] = str(demo)
        elif not (SHIPPED / "demo.json").exists():
            continue
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout
