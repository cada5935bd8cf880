"""A sweep grid that names an existing (here: imported) run as its target: the attack runs on exactly that
run, nothing is trained (the estimate counts no training step), and a grid naming a missing run, a run that
is not a target or a run on other data is refused in one line before anything runs."""
from __future__ import annotations

import copy

import pytest

from mivis.params import ParamError

TINY = {"dataset": "synthetic", "n_private": 4, "image_size": 32, "test_per_identity": 2}
EVAL = {"arch": "timm:resnet10t", "epochs": 1, "batch_size": 16, "lr": 0.001, "device": "cpu"}
ATTACK = {"name": "whitebox", "iterations": 3, "restarts": 1, "identities": [0, 1], "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A workspace with an imported target (random timm weights: only its identity matters here) and the
    evaluation model the grid asks for, already trained (so the sweep has nothing to train)."""
    import timm
    import torch
    from safetensors.torch import save_file

    from mivis.importing import import_model
    from mivis.runs import Workspace
    from mivis.train import train_run
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    torch.manual_seed(0)
    m = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=4, in_chans=1)
    f = tmp_path_factory.mktemp("files") / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(f))
    target = import_model(f, "timm:mobilenetv3_small_050", TINY, mean=[0.5], std=[0.5], workspace=ws,
                          keep_flagged=True)  # random weights: near chance, stored on request
    ev = train_run("eval", EVAL, TINY, workspace=ws)
    return {"ws": ws, "target": target, "eval": ev}


def _grid(run_id: str, **data) -> dict:
    return {"name": "on-run", "base": {"data": {**TINY, **data}, "target": {"run": run_id}, "eval": dict(EVAL),
                                       "attack": dict(ATTACK)}}


def _kinds(ws) -> dict:
    out = {}
    for r in ws.list():
        out[r.kind] = out.get(r.kind, 0) + 1
    return out


def test_a_grid_attacks_the_named_run_and_trains_nothing(world, tmp_path):
    from mivis.cli import main
    from mivis.sweep import estimate, plan_sweep, run_sweep
    ws, target = world["ws"], world["target"]
    # the TOML syntax, through the CLI's --estimate: the target is reused, only the attack is left to run
    toml = tmp_path / "on-run.toml"
    toml.write_text(f'name = "on-run"\n[base]\ndata = {{ dataset = "synthetic", n_private = 4, image_size = 32, '
                    f'test_per_identity = 2 }}\ntarget = {{ run = "{target.id}" }}\n'
                    f'eval = {{ arch = "timm:resnet10t", epochs = 1, batch_size = 16, lr = 0.001, device = "cpu" }}\n'
                    f'attack = {{ name = "whitebox", iterations = 3, restarts = 1, identities = [0, 1], seed = 0, '
                    f'device = "cpu" }}\n')
    assert main(["--workspace", str(ws.path), "sweep", str(toml), "--estimate"]) == 0
    plan = plan_sweep(toml, ws)
    assert sorted(s.kind for s in plan.steps.values()) == ["attack", "existing", "train"]  # train: the eval model
    est = estimate(plan, ws, "cpu")
    assert est["reused"] == 2 and est["to_run"] == 1 and set(est["by_kind"]) == {"attack"}
    info = plan.trials[0]["info"]
    assert info["target_run"] == target.id and info["arch"] == "timm:mobilenetv3_small_050" and info["defense"] == "none"

    before = _kinds(ws)
    summary = run_sweep(plan, ws)
    assert not summary["failed"] and summary["ran"] == 1 and summary["reused"] == 2
    after = _kinds(ws)
    assert after.pop("attack") == before.pop("attack", 0) + 1 and after == before  # no classifier trained
    t = summary["trials"][0]
    assert t["complete"] and t["runs"]["target"] == target.id and t["runs"]["eval"] == world["eval"].id
    attack = ws.get(t["runs"]["attack"])
    assert attack.config["target_run"] == target.id and target.id in attack.parents
    # resumable like any sweep: a second run reuses everything
    assert run_sweep(plan_sweep(_grid(target.id), ws), ws)["ran"] == 0


def test_a_grid_naming_a_missing_or_unsuitable_run_is_refused_before_anything_runs(world, capsys, tmp_path):
    from mivis.cli import main
    from mivis.sweep import plan_sweep
    ws, target = world["ws"], world["target"]
    n = len(ws.list())
    with pytest.raises(ParamError, match=r"target.run 'nosuchrun1234': no such run in the workspace"):
        plan_sweep(_grid("nosuchrun1234"), ws)
    with pytest.raises(ParamError, match=r"not a classifier target \(it is an? eval run\)"):
        plan_sweep(_grid(world["eval"].id), ws)
    with pytest.raises(ParamError, match=r"takes 32 px images but the grid's data are 16 px; set data.image_size = 32"):
        plan_sweep(_grid(target.id, image_size=16), ws)
    with pytest.raises(ParamError, match=r"another data split than the grid's: n_private 4 \(grid: 5\)"):
        plan_sweep(_grid(target.id, n_private=5), ws)
    mixed = _grid(target.id)
    mixed["base"]["target"]["arch"] = "resnet18"
    with pytest.raises(ParamError, match=r"target.arch cannot be set with it"):
        plan_sweep(mixed, ws)
    # the CLI: one line, exit 2, nothing run
    import json
    f = tmp_path / "missing.json"
    f.write_text(json.dumps(_grid("nosuchrun1234")))
    assert main(["--workspace", str(ws.path), "sweep", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such run" in err[0]
    assert len(ws.list()) == n


def test_a_run_target_replaces_the_whole_target_table_in_variants_and_dotted_keys(world):
    from mivis.sweep import expand
    base = {"target": {"arch": "resnet18", "epochs": 1}}
    grid = {"base": copy.deepcopy(base), "grids": [{"variant": [{}, {"target": {"run": "abc"}}]},
                                                    {"target.run": ["xyz"]}]}
    assert [t["target"] for t in expand(grid)] == [base["target"], {"run": "abc"}, {"run": "xyz"}]
