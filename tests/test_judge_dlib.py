"""The independent judge (dlib's face embedding, 1-NN over the private training images) on real ORL faces.

Requirements-test.txt installs it (requirements-judge.txt); these tests skip only where the packages are
genuinely absent. Kept small: 4 private ORL identities (28 gallery images), a handful of probes; dlib's
network costs 0.1-0.6 s per image on one busy CPU core.
"""
from __future__ import annotations

import json

import pytest
import torch

from mivis.evaluation import dlib_judge

pytestmark = pytest.mark.skipif(not dlib_judge.available(),
                                reason=f"the dlib judge is not installed ({dlib_judge.INSTALL})")

ORL = {"dataset": "orl", "image_size": 32, "n_private": 4, "test_per_identity": 3}


@pytest.fixture(scope="module")
def orl():
    from mivis.data import load_split
    return load_split(ORL)


def test_dlib_judges_a_real_private_face_correct_and_another_identity_wrong(orl):
    t = orl.test
    first = [int((t.y == c).nonzero()[0]) for c in range(4)]  # one held-out image per identity
    x = t.x[first + first]
    # as 'reconstructions': each identity's own held-out face, then the same faces claimed for the next identity
    y = torch.tensor([0, 1, 2, 3, 1, 2, 3, 0])
    v = dlib_judge.dlib_verdicts(x, y, orl)
    assert v["top1"].tolist() == [True] * 4 + [False] * 4
    assert v["pred"].tolist()[4:] == [0, 1, 2, 3]  # it names the person actually shown
    assert "never" not in v["info"]["judge"] and "1-NN" in v["info"]["judge"]


def test_dlib_heldout_accuracy_on_orl(orl):
    m = dlib_judge.heldout_accuracy(orl, n_boot=200)
    # the judge's own check: every held-out private image of the 4 identities is recognised
    assert m == {"value": 1.0, "lo": 1.0, "hi": 1.0, "n": 4}


def test_rejudge_adds_dlib_to_stored_runs_keeping_E_and_compares_under_dlib(ws, orl):
    """An attack run whose 'reconstructions' are real faces: E (stored) calls all 8 right, dlib only the 4
    that are shown with their own label. `evaluate rejudge --dlib` stores dlib's verdicts next to E's."""
    from mivis.cli import main
    from mivis.evaluation.agreement import e_false_positive
    from mivis.evaluation.compare import compare_runs
    from mivis.votes import judges
    t = orl.test
    first = [int((t.y == c).nonzero()[0]) for c in range(4)]  # one held-out face per identity
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    shown = {"a": [0, 1, 2, 3, 1, 2, 3, 0],  # a: rows 4..7 show another person's face
             "b": [0, 1, 2, 3, 0, 1, 2, 3]}  # b: every row shows the claimed person
    ids = []
    for name, faces in shown.items():
        run = ws.create("attack", {"attack": {"name": "gmi", "params": {"seed": 0, "identities": [0, 1, 2, 3],
                                                                         "restarts": 2}},
                                   "data": ORL, "target_run": None, "eval_run": "eval-x"}, name=name)
        run.save_weights({"x": t.x[[first[f] for f in faces]].half(), "y": y.clone(),
                          "restart": torch.tensor([0] * 4 + [1] * 4), "p_target": torch.full((8,), 0.9),
                          "target_pred": y.clone()}, name="reconstructions.safetensors")
        rows = [{"identity": int(y[i]), "restart": i // 4, "p_target": 0.9, "target_pred": int(y[i]),
                 "eval_top1": True, "eval_top5": True, "eval_prob": 0.9, "eval_pred": int(y[i]), "knn_dist": 1.0}
                for i in range(8)]
        run.write_json("evaluation.json", {"judge": {"name": "vgg11:eval-x", "run": "eval-x", "arch": "vgg11"},
                                           "metrics": {}, "extra_judges": {}, "per_reconstruction": rows,
                                           "bootstrap_seed": 0})
        run.finish({"attack_acc_top1": {"value": 1.0, "lo": 1.0, "hi": 1.0, "n": 4}})
        ids.append(run.id)
    a = ws.get(ids[0])
    # a third run whose data folder is gone: reported and skipped, the others are still judged
    lost = ws.create("attack", {"attack": {"name": "gmi", "params": {"seed": 0}}, "target_run": None,
                                "data": {"dataset": "folder", "data_dir": str(ws.path / "gone")}}, name="lost")
    lost.save_weights({"x": t.x[:2].half(), "y": torch.tensor([0, 1]), "restart": torch.tensor([0, 0]),
                       "p_target": torch.full((2,), 0.9), "target_pred": torch.tensor([0, 1])},
                      name="reconstructions.safetensors")
    lost.write_json("evaluation.json", {"judge": {"name": "vgg11:eval-x", "run": "eval-x", "arch": "vgg11"},
                                        "metrics": {}, "extra_judges": {}, "per_reconstruction": [
                                            {"identity": c, "restart": 0, "p_target": 0.9, "eval_top1": True}
                                            for c in (0, 1)]})
    lost.finish({})
    assert main(["--workspace", str(ws.path), "evaluate", "rejudge", "--dlib"]) == 2
    assert "dlib" not in ws.get(lost.id).metrics.get("extra_judges", {})
    ev = json.loads(a.file("evaluation.json").read_text())
    assert [r["top1@dlib"] for r in ev["per_reconstruction"]] == [True] * 4 + [False] * 4
    assert [r["eval_top1"] for r in ev["per_reconstruction"]] == [True] * 8  # E's stored verdicts are kept
    m = ws.get(ids[0]).metrics["extra_judges"]["dlib"]["attack_acc_top1"]
    assert m["value"] == 0.5 and m["n"] == 4
    assert ws.get(ids[1]).metrics["extra_judges"]["dlib"]["attack_acc_top1"]["value"] == 1.0
    fp = e_false_positive(judges(ws, ids[0], ev, n_boot=200))["dlib"]
    assert fp["value"] == 0.5  # half of E's 'correct' verdicts are another person's face
    # judged by dlib, a - b = -50 pp, resolved; under E the two runs are identical
    d = compare_runs(ws, ids[0], ids[1], "attack_acc_top1@dlib", n_boot=500)
    assert d["value"] == -0.5 and d["resolved"]
    assert compare_runs(ws, ids[0], ids[1], n_boot=500)["value"] == 0.0


def test_verify_dlib_cli_next_to_an_evaluation_model(ws, orl, capsys):
    from mivis.cli import main
    # a complete classifier config (an eval run whose model cannot be rebuilt is damaged, as `runs list` says)
    ev = ws.create("eval", {"data": ORL, "model": {"arch": "vgg11", "num_classes": 4, "in_chans": 1, "img_size": 32}})
    ev.finish({"natural_acc": 0.95})
    assert main(["--workspace", str(ws.path), "evaluate", "verify-dlib", "--eval", ev.id, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["held_out_images"] == 12 and out["dlib_top1"]["value"] == 1.0 and out["eval_natural_acc"] == 0.95
    assert main(["--workspace", str(ws.path), "evaluate", "verify-dlib", "--dataset", "orl", "--n-private", "4",
                 "--image-size", "32"]) == 0
    assert "12 held-out images of 4 private identities (orl, 32 px): dlib 1-NN top-1 100% [100, 100]" in \
        capsys.readouterr().out


def test_every_attack_is_judged_by_dlib_when_installed(tmp_path):
    """attack_run's default (dlib=None) judges with dlib whenever it is installed and stores its verdicts with the
    attack's evaluation. The tiny UI world's attacks (tests/ui_world.py, shared with the page tests) are made
    with that default."""
    from ui_world import world_copy

    from mivis.runs import Workspace
    w = world_copy(tmp_path / "ws")
    ws = Workspace(w["path"])
    for rid in (w["attack_full"], w["attack_rolss"]):
        rec = ws.get(rid)
        assert rec.config["dlib"] is True
        ev = json.loads(rec.file("evaluation.json").read_text())
        m = ev["extra_judges"]["dlib"]["attack_acc_top1"]
        verdicts = [r["top1@dlib"] for r in ev["per_reconstruction"]]
        assert len(verdicts) == 6 and all(isinstance(v, bool) for v in verdicts)  # 3 identities x 2 restarts
        assert m["value"] == pytest.approx(sum(verdicts) / 6) and m["n"] == 3
        assert rec.metrics["extra_judges"]["dlib"]["attack_acc_top1"] == m


def test_galleries_are_kept_on_disk_and_shipped_for_the_default_splits(orl, tmp_path, monkeypatch):
    """A gallery is embedded once and read back from $MIVIS_CACHE/dlib/ (another process reuses it); a
    damaged file is recomputed; the shipped default-split galleries equal what dlib computes now."""
    import numpy as np
    from mivis.data import load_split
    monkeypatch.setenv("MIVIS_CACHE", str(tmp_path))
    dlib_judge._GALLERY.clear()
    first = dlib_judge.gallery(orl)
    path = tmp_path / "dlib" / dlib_judge.gallery_name(orl)
    assert path.is_file() and np.array_equal(np.load(path), first)
    dlib_judge._GALLERY.clear()
    calls = []
    monkeypatch.setattr(dlib_judge, "embed", lambda x: calls.append(len(x)) or np.zeros((len(x), 128), np.float32))
    assert np.array_equal(dlib_judge.gallery(orl), first) and calls == []  # read from disk, not embedded
    path.write_bytes(b"junk")
    dlib_judge._GALLERY.clear()
    assert not dlib_judge.gallery(orl).any() and calls == [len(orl.train)]  # damaged: embedded again
    monkeypatch.undo()
    dlib_judge._GALLERY.clear()
    for size in (32, 64):
        split = load_split({"dataset": "orl", "image_size": size})
        shipped = np.load(dlib_judge.SHIPPED_GALLERIES / dlib_judge.gallery_name(split))
        assert shipped.shape == (len(split.train), 128)
        now = dlib_judge.embed(split.train.x[:4])
        assert np.allclose(shipped[:4], now, atol=1e-5), "rebuild with scripts/ship_dlib_galleries.py"


def test_worker_processes_give_the_same_embeddings_and_a_dead_worker_is_replaced(orl):
    """Large batches are split over worker processes (dlib computes on one core, holding the GIL): the same
    numbers as this process, and a worker that died is started again rather than failing the judging."""
    import numpy as np
    x = orl.train.x[:12]
    here = dlib_judge.embed(x, workers=1)
    assert here.shape == (12, 128)
    try:
        split = dlib_judge.embed(x, workers=3)
        assert np.array_equal(split, here)
        assert len(dlib_judge.WORKERS.procs) >= 3
        for p in dlib_judge.WORKERS.procs:
            p.kill()
            p.wait()
        assert np.array_equal(dlib_judge.embed(x, workers=2), here)
        assert all(p.poll() is None for p in dlib_judge.WORKERS.procs)  # fresh workers answered
    finally:
        dlib_judge.WORKERS.stop()
    assert dlib_judge.WORKERS.procs == []
