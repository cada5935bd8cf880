"""Every command's every flag (read from the argparse parsers, so a new flag is walked without editing this
file) with hostile values: the answer is a result or a one-line refusal, never a traceback.

Nothing trains or attacks for real: the entry points of compute (training epochs, the attack loop, the GAN
loop, Fisher information, dlib, timed size checks, Ray) raise `ReachedCompute` here. A value that reaches
one of them passed validation (allowed); one that fails inside validation with anything but a user error
is a traceback the user would see. Runs the commands in-process on a workspace of hand-made runs."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os

import pytest

from test_damage_round3 import classifier_run

HOSTILE = ["", "nan", "-1e999", "-1", "../../../" + "x" * 250, "0-999999999"]
TINY = {"--dataset": "synthetic", "--n-private": "4", "--image-size": "32", "--test-per-identity": "1"}


class ReachedCompute(Exception):
    """Validation let the value through to real compute (stopped here; the walk must stay fast)."""


def _stop(*args, **kwargs):
    raise ReachedCompute()


def leaves(parser: argparse.ArgumentParser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield list(path), parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaves(sub, (*path, name))


@pytest.fixture
def world(tmp_path, monkeypatch):
    from mivis.priors import import_prior
    from mivis.runs import Workspace
    ws = Workspace(tmp_path / "ws")
    target, ev = classifier_run(ws), classifier_run(ws, "eval", "vgg11")
    prior = import_prior("orl32-gmi", ws)
    attack = ws.create("attack", {"target_run": target.id}, parents=[target.id], name="hand-made attack")
    attack.finish({})  # no files: anything that reads them is refused as a damaged run
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"name": "walk", "base": {
        "data": {"dataset": "synthetic", "n_private": 4, "image_size": 32, "test_per_identity": 1},
        "target": {"arch": "resnet18", "epochs": 1}, "eval": {"arch": "vgg11", "epochs": 1},
        "prior": {"shipped": "orl32-gmi"}, "attack": {"name": "gmi", "iterations": 2, "restarts": 1}}}))
    for target_name in ("mivis.train.Trainer.fit", "mivis.sizing.estimate", "mivis.attacks.run.invert",
                        "mivis.attacks.estimate_seconds", "mivis.priors.gan_train.train_gan",
                        "mivis.analysis.layers.fisher_per_layer", "mivis.evaluation.dlib_judge.heldout_accuracy",
                        "mivis.evaluation.dlib_judge.add_to_run", "mivis.sweep.run_sweep",
                        "mivis.sweep.ray_executor.RayExecutor.__init__", "mivis.celeba.arrange_celeba",
                        "mivis.cli.classroom.export_classroom", "mivis.analysis.ceiling.project"):
        monkeypatch.setattr(target_name, _stop)
    # a sweep's estimate times steps, and its reuse lookup builds each step's model: nothing to reuse here
    import importlib
    monkeypatch.setattr(importlib.import_module("mivis.sweep.estimate"), "estimate_step", lambda *a, **k: 1.0)
    monkeypatch.setattr("mivis.sweep.runner.find_existing", lambda *a, **k: None)
    from mivis.checks import check_run_weights
    loaded: dict = {}

    def once(ws_, rid):  # the hand-made runs' weights do not change during the walk: load each once
        if rid not in loaded:
            loaded[rid] = check_run_weights(ws_, rid)
    monkeypatch.setattr("mivis.checks.check_run_weights", once)
    cwd = tmp_path / "a" / "b" / "c"  # ../../../ stays inside the test's own folder
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return {"ws": ws, "target": target.id, "eval": ev.id, "prior": prior.id, "attack": attack.id,
            "grid": str(grid), "tmp": tmp_path}


def _positional(w, path: list[str], dest: str) -> str:
    """A value for a required argument that lets validation go on (the flag under test is the hostile part)."""
    if path == ["runs", "delete"]:
        return "target-20260101-000000-abcdef"  # never delete the walk's own runs
    return {"target": w["target"], "run": w["target"], "run_id": w["prior"] if path[0] == "prior" else w["attack"],
            "attack": w["attack"], "attack_runs": w["attack"], "run_ids": w["attack"], "run_a": w["attack"],
            "run_b": w["attack"], "defended_run": w["attack"], "reference_run": w["attack"], "identity": "0",
            "grid_file": w["grid"], "sweeps": "walk", "arch": "resnet18", "weights": str(w["tmp"] / "none.st"),
            "source": "orl32-gmi", "dest": str(w["tmp"] / "dest"), "out": str(w["tmp"] / "out.safetensors"),
            "report": str(w["tmp"] / "none.md"), "reruns": str(w["tmp"] / "none.json"),
            "images": str(w["tmp"] / "none"), "identities": str(w["tmp"] / "none.txt"), "prior": w["prior"]}[dest]


def _required(w, path, parser) -> tuple[list[str], list[str]]:
    """(positionals, required options) with working values, and the data flags that keep data tiny."""
    pos, opts = [], []
    for a in parser._actions:
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction):
            pos.append(_positional(w, path, a.dest))
        elif a.required:
            opts += [a.option_strings[0], _positional(w, path, a.dest)]
    flags = {s for a in parser._actions for s in a.option_strings}
    for f, v in TINY.items():
        if f in flags:
            opts += [f, v]
    if "--no-dlib" in flags:
        opts.append("--no-dlib")
    if "--no-size-check" in flags:
        opts.append("--no-size-check")
    return pos, opts


def _call(main, argv) -> tuple[str, int | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except ReachedCompute:
            return "compute", None, err.getvalue()
        except SystemExit as e:  # argparse's own refusal (usage + one error line)
            return "argparse", e.code, err.getvalue()
        except Exception as e:  # a traceback the user would see
            return f"TRACEBACK {type(e).__name__}: {str(e)[:200]}", None, err.getvalue()
    return "returned", rc, err.getvalue() + out.getvalue()


def test_every_flag_of_every_command_with_hostile_values_gives_a_result_or_one_line(world, monkeypatch):
    import time

    import mivis.cli as cli
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)  # built once: the walk makes ~1,500 calls
    monkeypatch.setenv("MIVIS_THREADS", "1")
    monkeypatch.setenv("MIVIS_WORKSPACE", str(world["ws"].path))  # `--workspace ""` must not reach ./workspace
    t0 = time.monotonic()
    problems, outcomes, calls, per_command = [], {}, 0, {}
    cpu0 = time.process_time()
    for v in HOSTILE:  # the global flag
        kind, rc, err = _call(cli.main, ["--workspace", v, "runs", "list"])
        if kind.startswith("TRACEBACK") or "Traceback" in err or (kind == "returned" and rc not in (0, 2)):
            problems.append(f"--workspace {v[:20]!r}: {kind} {rc} {err[:200]!r}")
    for path, sub in leaves(parser):
        pos, base = _required(world, path, sub)
        cases = []
        for a in sub._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not a.option_strings:  # a positional: hostile in its place, the others as they are
                i = [x for x in sub._actions if not x.option_strings].index(a)
                cases += [(pos[:i] + [v] + pos[i + 1:], base, f"{a.dest}={v[:20]!r}") for v in HOSTILE]
            elif a.nargs == 0:
                cases.append((pos, base + [a.option_strings[0]], a.option_strings[0]))
            else:
                cases += [(pos, base + [a.option_strings[0], v], f"{a.option_strings[0]} {v[:20]!r}") for v in HOSTILE]
        t_cmd = time.monotonic()
        for p, opts, what in cases:
            argv = ["--workspace", str(world["ws"].path), *path, *opts, *p]
            kind, rc, err = _call(cli.main, argv)
            calls += 1
            outcomes.setdefault(" ".join(path), set()).add(kind)
            lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("busy machine", "size check"))]
            if kind.startswith("TRACEBACK") or "Traceback" in err:
                problems.append(f"{' '.join(path)} {what}: {kind}")
            elif kind == "returned" and rc == 2 and len([ln for ln in lines if not ln.startswith("warning")]) > 1:
                problems.append(f"{' '.join(path)} {what}: {len(lines)} lines: {err[:200]!r}")
            elif kind == "returned" and rc not in (0, 1, 2):
                problems.append(f"{' '.join(path)} {what}: exit {rc}")
        per_command[" ".join(path)] = time.monotonic() - t_cmd
    seconds = time.monotonic() - t0
    assert not problems, f"{len(problems)} of {calls} calls:\n" + "\n".join(problems[:40])
    # the harness reached real validation: defaults train and attack (stopped at compute), refusals happen
    assert "compute" in outcomes["train"] and "compute" in outcomes["attack"], outcomes
    assert all("returned" in kinds or "argparse" in kinds for kinds in outcomes.values()), outcomes
    assert calls > 1000 and len(outcomes) >= 25, (calls, len(outcomes))
    slow = ", ".join(f"{c} {t:.1f} s" for c, t in sorted(per_command.items(), key=lambda kv: -kv[1])[:5])
    print(f"{calls} calls over {len(outcomes)} commands in {seconds:.0f} s wall, {time.process_time() - cpu0:.0f} s "
          f"CPU ({os.cpu_count()} cores); slowest: {slow}")
