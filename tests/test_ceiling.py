"""A prior's ceiling per judge (issue 28, item 1): the generic projection, a prior that can express the private
images against one that cannot, every prior type through load_prior, the CLI, the job, the comparison with an
attack, and the refusals. Synthetic 32 px faces; CPU seconds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import KNOWING_JUDGE
from mivis.params import ParamError

pytest.importorskip("streamlit")
from test_app import world  # noqa: E402,F401  (the tiny UI world, copied per test)

ROOT = Path(__file__).resolve().parent.parent
DATA = {"dataset": "synthetic", "n_private": 6, "image_size": 32, "test_per_identity": 2}
SMOKE = {"device": "cpu", "iterations": 6, "batch_size": 8}
FAST = {"starts": 2, "steps": 3, "device": "cpu"}


def _dlib() -> bool:
    from mivis.evaluation import dlib_judge
    return dlib_judge.available()


@pytest.fixture
def judge_run(ws):
    from mivis.train import train_run
    return train_run("eval", {"arch": "vgg11", "epochs": 6, "lr": 1e-3, "batch_size": 8, "augment": "none",
                              "device": "cpu"}, DATA, workspace=ws, name="tiny judge")


@pytest.fixture
def strong_judge(ws):
    """A judge right on about 90% of held-out images (6 epochs give 40-60%, too close to what a judge reads
    off one grey level, since the synthetic identities differ in brightness)."""
    from mivis.train import train_run
    return train_run("eval", KNOWING_JUDGE, DATA, workspace=ws, name="strong judge")


@pytest.fixture
def gmi_prior(ws):
    from mivis.priors import train_prior
    return train_prior("gmi", SMOKE, DATA, workspace=ws)


# --- the generic projection ------------------------------------------------------------------------------
def test_project_is_generic_over_a_function_of_z_and_keeps_the_best_start():
    from mivis.analysis.ceiling import project, start_latents
    x = torch.rand(5, 1, 4, 4) * 2 - 1
    z0 = start_latents(5, 16, 3, seed=1)
    img, mse, start = project(lambda z: z.view(-1, 1, 4, 4), x, z0, steps=300, lr=0.05)
    assert img.shape == x.shape and torch.allclose(img, x, atol=2e-2) and float(mse.max()) < 1e-3
    assert start.shape == (5,) and int(start.max()) < 3
    # a function that ignores most of z cannot express the images: its best is the images' mean pixel
    img, mse, _ = project(lambda z: z[:, :1, None, None].expand(-1, 1, 4, 4), x, z0, steps=300, lr=0.05)
    assert torch.allclose(img[:, 0, 0, 0], x.flatten(1).mean(1), atol=2e-2) and float(mse.min()) > 0.05
    # starts are per (image, start): the same whatever the batch an image falls in
    a = start_latents(5, 16, 2, seed=7)
    b = start_latents(2, 16, 2, seed=7, first=3)
    assert torch.equal(a[[3, 4, 8, 9]], b)


def test_project_keeps_the_bound_and_says_when_shapes_differ():
    from mivis.analysis.ceiling import project, start_latents
    x = torch.ones(2, 1, 2, 2)
    img, _, _ = project(lambda z: z.view(-1, 1, 2, 2), x * 0.9, start_latents(2, 4, 1, 0) * 0, 100, 0.1,
                        bound=0.5)
    assert float(img.max()) <= 0.5 + 1e-6
    with pytest.raises(ValueError, match="shape"):
        project(lambda z: z.view(-1, 1, 1, 4), x, start_latents(2, 4, 1, 0), 2, 0.1)


# --- the effect: a prior that can express the private images vs one that cannot ----------------------------
class _Pixels(torch.nn.Module):
    """A 'prior' whose z IS the image (z_dim = C*H*W): it can express any private image exactly."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, z, y=None):
        return torch.tanh(z).view(-1, *self.shape)


class _Flat(torch.nn.Module):
    """A 'prior' that makes the same mid-grey image whatever z (z_dim = 2): it cannot express a face, nor even an
    image's brightness (which a judge of the synthetic identities can read: a grey per z got 5 of 18 right)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape

    def forward(self, z, y=None):
        return (0 * z[:, :1, None, None]).expand(-1, *self.shape)  # through z, so the projection's step runs


class _FakePrior:
    conditional = False
    z_bound = None

    def __init__(self, G, z_dim):
        self.G, self.z_dim = G, z_dim


def test_ceiling_is_high_for_a_prior_that_expresses_the_images_and_low_for_one_that_cannot(ws, strong_judge,
                                                                                        gmi_prior, monkeypatch):
    """The whole run through the generic prior interface (G, z_dim): the loaded prior is swapped for a
    pixel-space 'prior' (exact) and a one-grey-image 'prior' (cannot express faces)."""
    from mivis.analysis import ceiling as C
    from mivis.priors import store
    shape = (1, 32, 32)
    results = {}
    for name, prior in (("exact", _FakePrior(_Pixels(shape), 32 * 32)), ("flat", _FakePrior(_Flat(shape), 2))):
        monkeypatch.setattr(store, "load_prior", lambda ws, rid, device, p=prior: p)
        rec = C.ceiling_run(gmi_prior.id, strong_judge.id, {"steps": 150, "starts": 2, "lr": 0.1, "per_identity": 3,
                                                         "device": "cpu"}, workspace=ws, n_boot=300)
        results[name] = rec
    ex, fl = results["exact"].metrics, results["flat"].metrics
    assert ex["pixel_mse"]["value"] < 1e-3 < 0.05 < fl["pixel_mse"]["value"]
    # E judges the exact projections as it judges the real images, image by image, and names the grey ones at
    # chance: one verdict for every image, right on one identity's 3 of 18
    rows = results["exact"].read_json("ceiling.json")["rows"]
    assert np.mean([r["eval_top1"] == r["eval_top1_real"] for r in rows]) >= 0.9
    assert ex["originals_acc_top1"]["value"] >= 0.8  # measured 100% in 3 runs (17 s of training on the 2-core VM)
    assert ex["ceiling_acc_top1"]["value"] - fl["ceiling_acc_top1"]["value"] >= 0.5  # measured 100% vs 17% (chance)
    assert fl["ceiling_acc_top1"]["value"] <= 3 / 18 + 1e-9
    if _dlib():  # the independent judge: ~100% against a low ceiling (it needs no training)
        assert ex["ceiling_acc_top1_dlib"]["value"] >= 0.9 and fl["ceiling_acc_top1_dlib"]["value"] <= 0.4
    for rec in results.values():  # stored as a run the pages can find, with its projections grid
        obj = rec.read_json("ceiling.json")
        assert rec.kind == "ceiling" and rec.parents == [gmi_prior.id, strong_judge.id]
        assert len(obj["rows"]) == rec.metrics["n_images"] == 18 and "not an attack" in obj["diagnostic"]
        assert rec.read_image("projections.png")[:4] == b"\x89PNG"
        t = rec.read_tensors("projections.safetensors")
        assert t["x"].shape == (18, 1, 32, 32) and t["y"].tolist() == [r["identity"] for r in obj["rows"]]
        assert rec.metrics["starts"] == 2 and rec.metrics["steps"] == 150 and rec.metrics["project_seconds"] > 0


# --- every prior type through load_prior ------------------------------------------------------------------
def test_real_gan_priors_unconditional_and_conditional(ws, judge_run, gmi_prior, trained_target):
    from mivis.priors import train_prior
    from mivis.analysis.ceiling import ceiling_run
    plg = train_prior("plgmi", SMOKE, target_run=trained_target.id, workspace=ws)
    ked = train_prior("kedmi", SMOKE, target_run=trained_target.id, workspace=ws)
    for prior in (gmi_prior, ked, plg):
        rec = ceiling_run(prior.id, judge_run.id, {**FAST, "identities": [0, 2], "per_identity": 2}, workspace=ws,
                          dlib=False, n_boot=100)
        m = rec.metrics
        assert m["n_images"] == 4 and m["n_identities"] == 2 and 0 < m["pixel_mse"]["value"] < 4
        assert "ceiling_acc_top1" in m and "ceiling_acc_top1_dlib" not in m
        assert [r["identity"] for r in rec.read_json("ceiling.json")["rows"]] == [0, 0, 2, 2]


def test_conditional_prior_is_given_each_identity_label():
    from mivis.analysis.ceiling import prior_generator
    seen = []

    class G(torch.nn.Module):
        def forward(self, z, y=None):
            seen.append(y.tolist())
            return torch.zeros(len(z), 1, 2, 2)

    prior = _FakePrior(G(), 3)
    prior.conditional = True
    prior_generator(prior, torch.tensor([4, 1]))(torch.zeros(4, 3))  # two starts, start-major
    assert seen == [[4, 1, 4, 1]]


# --- refusals: one line, before any run exists --------------------------------------------------------------
def test_refusals_name_the_problem(ws, judge_run, gmi_prior, trained_target):
    from mivis.analysis.ceiling import ceiling_run, plan_ceiling
    with pytest.raises(ParamError, match="not a prior"):
        plan_ceiling(ws, judge_run.id)
    with pytest.raises(ParamError, match="evaluation model"):
        plan_ceiling(ws, gmi_prior.id, trained_target.id)
    with pytest.raises(ParamError, match="no judge"):
        plan_ceiling(ws, gmi_prior.id, "none", dlib=False)
    with pytest.raises(ParamError, match="steps"):
        plan_ceiling(ws, gmi_prior.id, judge_run.id, {"steps": 0})
    with pytest.raises(ParamError, match="outside"):
        plan_ceiling(ws, gmi_prior.id, judge_run.id, {"identities": [99]})
    with pytest.raises(ParamError):
        ceiling_run(gmi_prior.id, judge_run.id, {"device": "tpu"}, workspace=ws)
    assert ws.list(kind="ceiling") == []
    # the default judge: the newest evaluation model that fits
    assert plan_ceiling(ws, gmi_prior.id, None, FAST, dlib=False).eval.id == judge_run.id


# --- beside an attack ---------------------------------------------------------------------------------------
def test_versus_ceiling_ratio_interval_and_care_near_zero():
    from mivis.analysis.ceiling import describe, versus_ceiling
    ceil = [{"identity": c, "top1@dlib": c < 8, "eval_top1": True} for c in range(10) for _ in range(4)]
    att = [{"identity": c, "top1@dlib": c < 2, "eval_top1": c < 5} for c in range(10) for _ in range(5)]
    v = versus_ceiling(ceil, att, "dlib", chance=0.1, n_boot=500)
    assert v["ceiling"]["value"] == pytest.approx(0.8) and v["attack"]["value"] == pytest.approx(0.2)
    assert v["ratio"]["value"] == pytest.approx(0.25) and v["ratio"]["lo"] < 0.25 < v["ratio"]["hi"]
    text = describe(v, "dlib")
    assert text.startswith("This prior can show dlib at most 80% [") and "reached 25% [" in text
    assert versus_ceiling(ceil, att, "E", chance=0.1)["ratio"]["value"] == pytest.approx(0.5)
    # a ceiling at chance: no ratio, and the sentence says why
    low = [{"identity": c, "top1@dlib": c == 0} for c in range(10) for _ in range(4)]
    v = versus_ceiling(low, att, "dlib", chance=0.1, n_boot=500)
    assert v["ratio"] is None and "chance" in v["why"] and "No share of the ceiling" in describe(v)
    # identities the ceiling did not project: nothing claimed
    v = versus_ceiling(ceil[:8], att, "dlib", chance=0.1)
    assert v["ceiling"] is None and "does not cover" in describe(v)


# --- CLI and job --------------------------------------------------------------------------------------------
def test_cli_prior_ceiling(ws, judge_run, gmi_prior):
    env = {**os.environ, "MIVIS_WORKSPACE": str(ws.path)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mivis", "prior", "ceiling", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
    out = cli(gmi_prior.id, "--eval", judge_run.id, "--steps", "2", "--per-identity", "1", "--device", "cpu",
              "--no-dlib")
    assert out.returncode == 0, out.stderr
    assert "not an attack" in out.stdout and "2 starts x 2 Adam steps, 6 private training images" in out.stdout
    assert "E (" in out.stdout and "pixel MSE" in out.stdout and "projections.png" in out.stdout
    out = cli(gmi_prior.id, "--steps", "2", "--starts", "1", "--identities", "1,3", "--device", "cpu", "--no-dlib",
              "--json")
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)["metrics"]
    assert m["n_identities"] == 2 and m["starts"] == 1 and "ceiling_acc_top1" in m
    out = cli(gmi_prior.id, "--steps", "0")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "steps" in out.stderr
    out = cli(judge_run.id)
    assert out.returncode == 2 and "not a prior" in out.stderr


def test_ceiling_job(ws, judge_run, gmi_prior):
    from mivis.jobs import JobManager
    m = JobManager(ws)
    try:
        with pytest.raises(ParamError, match="unknown ceiling job field"):
            m.submit("ceiling", {"prior_run": gmi_prior.id, "bogus": 1})
        job = m.submit("ceiling", {"prior_run": gmi_prior.id, "eval_run": judge_run.id,
                                   "params": {**FAST, "per_identity": 1}}, session="s")
        assert set(job.params) == {"prior_run", "eval_run", "params", "name"}
        done = m.wait(job.id, timeout=300)
        assert done.status == "done", done.error
        rec = ws.get(done.run_id)
        assert rec.kind == "ceiling" and rec.metrics["n_images"] == 6
    finally:
        m.shutdown()


def test_ceiling_beside_an_attack_on_the_same_prior(ws, judge_run, gmi_prior, trained_target):
    from mivis.attacks import attack_run
    from mivis.analysis.ceiling import ceiling_run, pick_ceiling, read_ceiling, versus_ceiling
    a = attack_run("gmi", trained_target.id, gmi_prior.id, params={"identities": [0, 1, 2], "restarts": 2,
                                                                  "iterations": 2, "device": "cpu"},
                   eval_run=judge_run.id, workspace=ws, dlib=False, n_boot=100)
    assert pick_ceiling(ws, gmi_prior.id, a.data_fingerprint, "E", judge_run.id) is None
    c = ceiling_run(gmi_prior.id, judge_run.id, {**FAST, "per_identity": 1}, workspace=ws, dlib=False, n_boot=100)
    assert pick_ceiling(ws, gmi_prior.id, a.data_fingerprint, "E", judge_run.id).id == c.id
    assert pick_ceiling(ws, gmi_prior.id, a.data_fingerprint, "dlib", judge_run.id) is None  # not judged by dlib
    ev = a.read_json("evaluation.json")
    v = versus_ceiling(read_ceiling(c)["rows"], ev["per_reconstruction"], "E", c.metrics["chance"])
    assert v["identities"] == 3 and v["ceiling"]["n"] == 3
    assert v["attack"]["value"] == pytest.approx(np.mean([r["eval_top1"] for r in ev["per_reconstruction"]]))


# --- the pages (AppTest) ------------------------------------------------------------------------------------
def test_pages_show_the_ceiling_beside_the_attack_and_measure_it_as_a_job(world):
    from streamlit.testing.v1 import AppTest
    from test_app import APP, assert_clean, open_page, poll, texts

    from mivis.runs import Workspace
    ws = Workspace(world["path"])
    # Results before any ceiling: says how to measure it
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "results", run=world["attack_full"])
    assert "No prior ceiling measured for this attack's prior" in texts(at)
    # the Attack page measures it as a job, with the settings from its declared parameters (here from the URL)
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "attack", target=world["full"], **{"ceiling.steps": "2", "ceiling.per_identity": "1",
                                                   "ceiling.device": "cpu"})
    assert "Not measured yet for this prior" in texts(at) and "not an attack" in texts(at)
    at.button(key="attack:ceiling").click().run()
    assert_clean(at)
    poll(at, lambda a: any("ceiling is measured" in s.value for s in a.success), timeout=300)
    rec = ws.list(kind="ceiling", status="done")[0]
    assert rec.config["prior_run"] == world["prior"] and rec.config["eval_run"] == world["eval"]
    assert rec.config["params"]["steps"] == 2 and rec.metrics["n_images"] == 6
    at.run()
    assert "This prior can show" in texts(at) and "2 starts x 2 Adam steps, 6 private training images" in texts(at)
    # Results: the ceiling beside the attack's accuracy, per judge, labelled as a diagnostic
    at = AppTest.from_file(APP, default_timeout=120)
    open_page(at, "results", run=world["attack_full"])
    t = texts(at)
    assert "Prior ceiling (a diagnostic of the prior, not an attack" in t
    assert "This prior can show the evaluation model E at most" in t
    if rec.config["dlib"]:
        assert "This prior can show dlib at most" in t
