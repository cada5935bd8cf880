"""Evaluation: constructed cases for the metrics, bootstrap sanity, paired differences, Delta."""
import numpy as np
import pytest
import torch

from conftest import KNOWING_JUDGE
from mivis.evaluation import bootstrap_mean, frechet_distance, histeq, paired_difference
from mivis.params import ParamError

DATA = {"dataset": "synthetic", "n_private": 6, "image_size": 32, "test_per_identity": 2}


def test_bootstrap_keeps_identities_together():
    # 20 identities x 5 reconstructions; half the identities always succeed, half never
    groups = np.repeat(np.arange(20), 5)
    values = (groups < 10).astype(float)
    m = bootstrap_mean(values, groups, n_boot=4000, seed=0)
    assert m["value"] == 0.5 and m["n"] == 20 and m["lo"] < m["value"] < m["hi"]
    # identity-level spread: sd = 0.5 / sqrt(20) ~ 0.11, so the 95% interval is ~ +-0.22 (a
    # sample-level bootstrap over 100 draws would give only ~ +-0.1)
    assert 0.3 < m["hi"] - m["lo"] < 0.55
    const = bootstrap_mean(np.ones(30), np.repeat(np.arange(6), 5))
    assert const["lo"] == const["hi"] == 1.0


def test_paired_difference_resolution():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 4)
    a = rng.random(120)
    same = paired_difference(a, groups, a, groups)
    assert same["value"] == 0 and same["lo"] == same["hi"] == 0 and not same["resolved"]
    shifted = paired_difference(a + 0.2, groups, a, groups)
    assert shifted["resolved"] and shifted["lo"] == pytest.approx(0.2) and shifted["value"] == pytest.approx(0.2)
    noise = paired_difference(rng.random(120), groups, rng.random(120), groups)
    assert noise["lo"] < 0 < noise["hi"] and not noise["resolved"]
    with pytest.raises(ValueError):
        paired_difference(a, groups, a, groups + 1)


def test_frechet_matches_the_closed_form():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    for n1, n2, d in ((40, 50, 6), (6, 8, 12)):  # both code paths (d < n and n < d)
        a, b = rng.normal(size=(n1, d)), rng.normal(0.5, 1.5, size=(n2, d))
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) \
            - 2 * np.trace(scipy_linalg.sqrtm(s1 @ s2)).real
        assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert abs(frechet_distance(a, a)) < 1e-6
    from mivis.evaluation.bootstrap import jackknife_stat
    feats = {c: torch.randn(5, 4, generator=torch.Generator().manual_seed(c)) + c for c in range(8)}
    ref = torch.randn(40, 4, generator=torch.Generator().manual_seed(99)) + 3.5
    m = jackknife_stat(lambda ids: frechet_distance(torch.cat([feats[int(c)] for c in ids]), ref), np.arange(8))
    assert m["n"] == 8 and m["lo"] < m["value"] < m["hi"]


def test_histeq_spreads_a_dark_image():
    x = torch.linspace(-1, -0.5, 64).view(1, 1, 8, 8)
    h = histeq(x)
    assert h.min() == -1 and h.max() == 1 and torch.all(h.flatten().diff() >= 0)


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    from mivis.runs import Workspace
    from mivis.train import train_run
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    cpu = {"device": "cpu", "batch_size": 8, "augment": "light"}
    target = train_run("target", {**cpu, "epochs": 1}, DATA, workspace=ws)
    # a judge right on nearly all training images (6 epochs at lr 1e-3 gave one answer for every image: chance)
    ev = train_run("eval", KNOWING_JUDGE, DATA, workspace=ws)
    return ws, target, ev


def test_private_image_as_reconstruction_has_knn_zero_and_is_judged_correct(judged):
    from mivis.data import load_split
    from mivis.evaluation import evaluate, load_judge
    ws, target, ev = judged
    split = load_split(DATA)
    judge = load_judge(ws, ev.id, ws.get(target.id), "cpu")
    logits, _ = judge.score(split.train.x)
    ok = (logits.argmax(1) == split.train.y).nonzero().flatten()
    assert len(ok) >= 2 * len(split.train.y) // 3, "the judge should know most training images"
    x, y = split.train.x[ok], split.train.y[ok]
    out = evaluate(x, y, torch.zeros_like(y), torch.full((len(y),), 0.5), y.clone(), [judge], split, n_boot=200)
    rows = out["per_reconstruction"]
    assert all(r["knn_dist"] < 1e-6 and r["eval_top1"] and r["eval_top5"] for r in rows)
    m = out["metrics"]
    assert m["attack_acc_top1"]["value"] == 1.0 and m["knn_dist"]["value"] < 1e-6
    assert m["target_success"]["value"] == 1.0 and m["target_likelihood"]["value"] == pytest.approx(0.5)
    assert sum(out["histogram"]["correct"]) == len(y) and sum(out["histogram"]["wrong"]) == 0
    # a reconstruction of identity 0 that is a training image of identity 1: far and judged wrong
    other = split.train.x[split.train.y == 1][:1]
    out2 = evaluate(other, torch.tensor([0]), torch.zeros(1, dtype=torch.long), torch.ones(1), torch.zeros(1, dtype=torch.long),
                    [judge], split, n_boot=50)
    assert out2["per_reconstruction"][0]["knn_dist"] > 1e-3


def test_judge_refusals(judged):
    from mivis.evaluation import check_judge
    ws, target, ev = judged
    t = ws.get(target.id)
    with pytest.raises(ParamError, match="never be the target"):
        check_judge(ws, target.id, t)
    from mivis.train import train_run
    twin = train_run("eval", {"device": "cpu", "epochs": 1, "batch_size": 16}, DATA, workspace=ws)
    with pytest.raises(ParamError, match="different architecture"):
        check_judge(ws, twin.id, t)
    assert check_judge(ws, ev.id, t).id == ev.id


def _fake_attack(ws, target_id, judge_run, hits: dict[int, list[int]], seed=0):
    """An attack run whose evaluation rows are constructed (to test comparisons in isolation)."""
    rows = [{"identity": c, "restart": r, "p_target": 0.9, "target_pred": c, "eval_top1": bool(h),
             "eval_top5": True, "eval_prob": 0.5, "eval_pred": c, "knn_dist": 1.0}
            for c, hs in hits.items() for r, h in enumerate(hs)]
    cfg = {"attack": {"name": "gmi", "params": {"identities": sorted(hits), "seed": seed, "restarts": 2}},
           "target_run": target_id}
    run = ws.create("attack", cfg)
    run.write_json("evaluation.json", {"judge": {"run": judge_run, "arch": "vgg11"}, "metrics": {},
                                       "extra_judges": {}, "per_reconstruction": rows})  # as attack runs write it
    run.finish({})
    return run.id


def test_compare_and_delta(judged):
    from mivis.evaluation import compare_runs, delta
    ws, target, ev = judged
    ref_t = ws.create("target", {"fake": 1}); ref_t.finish({"natural_acc": 0.95})
    def_t = ws.create("target", {"fake": 2}); def_t.finish({"natural_acc": 0.90})
    ids = range(10)
    ref = _fake_attack(ws, ref_t.id, ev.id, {c: [1, 1] if c < 8 else [0, 0] for c in ids})
    dfd = _fake_attack(ws, def_t.id, ev.id, {c: [1, 1] if c < 3 else [0, 0] for c in ids})
    out = compare_runs(ws, ref, dfd)
    assert out["value"] == pytest.approx(0.5) and out["resolved"] and out["verdict"] == "resolved"
    d = delta(ws, dfd, ref)
    assert d["value"] == pytest.approx(0.5 / 0.05) and d["paired"] and d["lo"] <= d["value"] <= d["hi"]
    flat = ws.create("target", {"fake": 3}); flat.finish({"natural_acc": 0.99})
    none = delta(ws, _fake_attack(ws, flat.id, ev.id, {c: [0, 0] for c in ids}), ref)
    assert none["value"] is None and "undefined" in none["note"]
    other = _fake_attack(ws, def_t.id, ev.id, {c: [0, 1] for c in range(5)})
    with pytest.raises(ParamError, match="different identities"):
        compare_runs(ws, ref, other)


def test_lighting_normalised_judge_scores_equalised_images(judged):
    from mivis.evaluation import load_judge
    from mivis.evaluation.lighting import train_lighting_judge
    ws, target, _ = judged
    rec = train_lighting_judge({"arch": "mobilenetv2", "epochs": 1, "batch_size": 16, "device": "cpu"}, DATA,
                               workspace=ws)
    assert rec.kind == "eval" and rec.config["preprocess"] == "histeq"
    j = load_judge(ws, rec.id, ws.get(target.id), "cpu")
    levels = torch.randint(0, 100, (2, 1, 32, 32), generator=torch.Generator().manual_seed(0)).float()
    a, _ = j.score(levels / 127.5 - 1)
    b, _ = j.score((levels + 80) / 127.5 - 1)  # the same face under brighter light: identical once equalised
    assert j.preprocess == "histeq" and torch.allclose(a, b, atol=1e-5)


def test_an_attacks_intervals_depend_on_its_verdicts_not_on_its_seed(ws, tiny_data, tiny_train, trained_target):
    """Two attack seeds: each stored interval is the bootstrap of that run's own verdicts with the one fixed
    bootstrap seed, so runs whose verdicts agree show the same interval (not intervals one step apart)."""
    from mivis.attacks import attack_run
    from mivis.evaluation.bootstrap import BOOTSTRAP_SEED
    from mivis.train import train_run
    ev = train_run("eval", {**tiny_train, "arch": "vgg11", "epochs": 1}, tiny_data, workspace=ws)
    for seed in (3, 11):
        rec = attack_run("whitebox", trained_target.id, None, identities=[0, 1, 2], restarts=2,
                         params={"iterations": 2, "device": "cpu", "seed": seed}, eval_run=ev.id, dlib=False,
                         workspace=ws, n_boot=200)
        stored = rec.read_json("evaluation.json")
        rows = stored["per_reconstruction"]
        again = bootstrap_mean([r["eval_top1"] for r in rows], [r["identity"] for r in rows], 200, BOOTSTRAP_SEED)
        assert stored["bootstrap_seed"] == BOOTSTRAP_SEED
        assert stored["metrics"]["attack_acc_top1"] == again
