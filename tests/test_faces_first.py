"""Faces first: an attack run writes its final reconstructions before any judge runs, then reports each judge's
top-1 as that judge finishes ('judging' events: E, then dlib where installed), the numbers the finished run
stores. On the tiny UI world (tests/ui_world.py): no extra training."""
from __future__ import annotations


def test_faces_first_then_each_judge_as_it_finishes(tmp_path):
    from ui_world import world_copy

    from mivis.attacks import attack_run
    from mivis.evaluation.dlib_judge import available
    from mivis.progress import Reporter
    from mivis.runs import Workspace
    w = world_copy(tmp_path / "ws")
    ws = Workspace(w["path"])
    seen = []

    def cb(ev):
        if ev.get("phase") == "judging":
            d = ws.run_dir(ev["run"])
            seen.append({**ev, "png": (d / "reconstructions.png").exists(), "eval": (d / "evaluation.json").exists()})
    rec = attack_run("gmi", w["full"], w["prior"], [0, 1], 1, {"iterations": 2, "device": "cpu"}, eval_run=w["eval"],
                     workspace=ws, n_boot=50, reporter=Reporter(cb))
    steps = 1 + available()
    assert [e["done"] for e in seen] == list(range(steps + 1)) and all(e["total"] == steps for e in seen)
    assert all(e["png"] and not e["eval"] for e in seen)  # faces first; the evaluation is written at the end
    assert seen[0]["judging"] == "E" and "top1_E" not in seen[0]
    assert seen[1]["top1_E"] == rec.metrics["attack_acc_top1"]["value"]
    if available():
        assert seen[1]["judging"] == "dlib"
        assert seen[2]["top1_dlib"] == rec.metrics["extra_judges"]["dlib"]["attack_acc_top1"]["value"]
