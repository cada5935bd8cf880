"""Issue 14's scripted corpus of bad inputs: every case damages a private copy of the tiny UI world (or
sends a hostile URL / command line), then drives the CLI in-process and the pages through AppTest.

Asserted for every case: no traceback reaches the user (the CLI returns 0 or 2 with at most one line
on stderr per command; no exception element on any page), and zero data lost (every file that existed
before, other than the one the case damaged, is byte-identical afterwards; no run was created)."""
from __future__ import annotations

import json
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


def _digest(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("mivis.sqlite") and "/jobs/" not in f"/{p.relative_to(root)}"}


# --- damage functions: (world dict) -> the relative paths they changed -------------------------------------------
def _run_file(w, key, name):
    return Path(w["path"]) / "runs" / w[key] / name


def _write(w, key, name, data: bytes):
    p = _run_file(w, key, name)
    p.write_bytes(data)
    return [p.relative_to(w["path"]).as_posix()]


def _sql(w, statement, *args):
    with sqlite3.connect(Path(w["path"]) / "mivis.sqlite") as con:
        con.execute(statement, args)
    return []


def _remove_registry(w, garbage: bool):
    db = Path(w["path"]) / "mivis.sqlite"
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)
    if garbage:
        db.write_bytes(b"not a database at all " * 200)
    return []


def _registry_deleted_under_the_app(w):
    """A page opens (the app's job manager holds the workspace), then mivis.sqlite is deleted."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.switch_page("pages/runs.py")
    at.run()
    assert not at.exception
    return _remove_registry(w, garbage=False)


def _no_xy(w):
    from safetensors.torch import save_file
    import torch
    p = _run_file(w, "attack_full", "reconstructions.safetensors")
    save_file({"z": torch.zeros(2, 3)}, str(p))
    return [p.relative_to(w["path"]).as_posix()]


def _tamper_id(w):
    victim = Path(w["path"]).parent / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "precious.txt").write_text("keep me")
    _sql(w, "UPDATE runs SET id = '../../victim' WHERE id = ?", w["layers"])
    return []


def _nan_judge(w):
    import torch
    from mivis.weights import load_tensors, save_weights
    p = _run_file(w, "eval", "weights.safetensors")
    t, meta = load_tensors(p)
    k = next(k for k, v in t.items() if v.is_floating_point())
    t[k] = torch.full_like(t[k], float("nan"))
    save_weights(p, t, meta)
    return [p.relative_to(w["path"]).as_posix()]


def _truncated_target(w):
    return _write(w, "full", "weights.safetensors", struct.pack("<Q", 0x180) + b'{"a": {"dtype": "F32"')


A, B, T, P, E, L = "{attack_full}", "{attack_rolss}", "{full}", "{prior}", "{eval}", "{layers}"
ATTACK_CLI = ["attack", "--target", T, "--prior", P, "--eval", E, "--iterations", "2", "--restarts", "1",
              "--identities", "0", "--device", "cpu", "--no-dlib"]

# name: (damage, CLI commands, pages as (page, query params))
CORPUS = {
    "junk history.json": (lambda w: _write(w, "full", "history.json", b"[{]"),
                          [["runs", "show", T], ["runs", "list"]], [("runs", {"run": T})]),
    "junk reconstructions.png": (lambda w: _write(w, "attack_full", "reconstructions.png", b"\x89PNG\r\n junk"),
                                 [["runs", "show", A]], [("runs", {"run": A}), ("results", {"run": A})]),
    "junk prior.json": (lambda w: _write(w, "prior", "prior.json", b"{junk"),
                        [ATTACK_CLI + ["--estimate"], ATTACK_CLI, ["prior", "export", P, "{tmp}/out"]],
                        [("attack", {"target": T})]),
    "deleted prior folder": (lambda w: shutil.rmtree(_run_file(w, "prior", "")) or [],
                             [ATTACK_CLI], [("attack", {"target": T})]),
    "evaluation.json {metrics: 5}": (lambda w: _write(w, "attack_full", "evaluation.json", b'{"metrics": 5}'),
                                     [["evaluate", "show", A], ["evaluate", "compare", A, B],
                                      ["evaluate", "rejudge", A]],
                                     [("results", {"run": A}), ("runs", {"run": A, "vs": B})]),
    "metrics column 'x'": (lambda w: _sql(w, "UPDATE runs SET metrics = 'x'"),
                           [["runs", "list"], ["runs", "show", T]],
                           [("runs", {}), ("results", {"run": A}), ("tradeoff", {}), ("layers", {"target": T})]),
    "garbage mivis.sqlite": (lambda w: _remove_registry(w, garbage=True),
                             [["runs", "list"], ["evaluate", "show", A]],
                             [("runs", {}), ("attack", {}), ("results", {}), ("tradeoff", {})]),
    "deleted mivis.sqlite": (lambda w: _remove_registry(w, garbage=False),
                             [["runs", "list"]],
                             [("attack", {"job": "job-20260101-000000-abcdef"}), ("runs", {})]),
    "mivis.sqlite deleted while the app runs": (_registry_deleted_under_the_app, [],
                                                [("attack", {"job": "job-20260101-000000-abcdef"}),
                                                 ("results", {"run": A}), ("runs", {})]),
    "markdown in a run name": (lambda w: _sql(w, "UPDATE runs SET name = '![](http://host/x.png) **x**'"),
                               [["runs", "list"]], [("runs", {"run": T}), ("results", {"run": A}),
                                                   ("attack", {"target": T})]),
    "reconstructions without x/y": (_no_xy, [["analyze", "attributions", "--attack", A, "--identity", "0"],
                                             ["evaluate", "rejudge", A]], [("results", {"run": A})]),
    "tampered run id": (_tamper_id, [["runs", "list"], ["runs", "delete", "../../victim"]], [("runs", {})]),
    "NaN judge weights": (_nan_judge, [ATTACK_CLI], []),
    "truncated target weights (0x80 header)": (_truncated_target, [ATTACK_CLI], []),
    "a 144-megapixel image in a data folder": (lambda w: [], [
        ["data", "--dataset", "folder", "--data-dir", "{tmp}/faces", "--image-size", "32", "--n-private", "2",
         "--test-per-identity", "1"]], []),
    "hostile URLs and command lines": (lambda w: [], [
        ["runs", "list", "--status", "foo"], ["evaluate", "compare", A, A],
        ["prior", "export", P, "/proc/x"], ["data", "--dataset", "synthetic", "--private-list", "{tmp}/binary"],
        ["data", "--dataset", "folder", "--data-dir", "/etc"],
        ATTACK_CLI[:-5] + ["--identities", "0-999999", "--device", "cpu", "--no-dlib"],
        ATTACK_CLI[:-5] + ["--identities", "0-99999", "--device", "cpu", "--no-dlib"]],
        [("architecture", {"dataset": "folder", "data_dir": "/etc"}),
         ("architecture", {"dataset": "folder", "data_dir": "/usr/include", "image_size": "256", "channels": "3"}),
         ("attack", {"target": T, "attack": "gmi", "gmi.identities": "0-999999"})]),
}


@pytest.fixture
def world(tmp_path, monkeypatch):
    from ui_world import world_copy

    from mivis import ui
    w = world_copy(tmp_path / "ws")
    monkeypatch.setenv("MIVIS_WORKSPACE", str(w["path"]))
    monkeypatch.setenv("MIVIS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "binary").write_bytes(bytes(range(256)) * 8)
    from PIL import Image
    for i in range(4):  # a small face folder (inside the tests' allowed data root) with one image bomb
        (tmp_path / "faces" / f"p{i}").mkdir(parents=True)
        for j in range(3):
            Image.new("L", (24, 24), 40 * j).save(tmp_path / "faces" / f"p{i}" / f"{j}.png")
    Image.new("1", (12_000, 12_000)).save(tmp_path / "faces" / "p0" / "bomb.png")  # 144 MP, a small file
    ui.shutdown_managers()
    yield w
    ui.shutdown_managers()


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_input_corpus_no_traceback_no_loss(world, case, tmp_path, capsys):
    from mivis import ui
    from mivis.cli import main
    damage, commands, pages = CORPUS[case]
    changed = set(damage(world))
    before = {k: v for k, v in _digest(Path(world["path"])).items() if k not in changed}
    n_dirs = sum(1 for _ in (Path(world["path"]) / "runs").iterdir()) if (Path(world["path"]) / "runs").is_dir() else 0
    db_existed = (Path(world["path"]) / "mivis.sqlite").exists()
    fill = {**{k: v for k, v in world.items() if isinstance(v, str)}, "tmp": str(tmp_path)}

    for cmd in commands:
        argv = ["--workspace", str(world["path"])] + [a.format(**fill) for a in cmd]
        rc = main(argv)  # an exception escaping here is a traceback the user would see
        out = capsys.readouterr()
        assert rc in (0, 2), (cmd, rc, out.err)
        assert "Traceback" not in out.err + out.out, cmd
        assert out.err.strip().count("\n") == 0, (cmd, out.err)  # at most one line
        if rc == 2:
            assert len(out.err) < 1000, (cmd, len(out.err))

    for page, params in pages:
        at = AppTest.from_file(APP, default_timeout=180)
        for k, v in params.items():
            at.query_params[k] = v.format(**fill)
        at.switch_page(f"pages/{page}.py")
        at.run()
        assert not at.exception, (case, page, [e.value for e in at.exception])
        assert sum(len(str(v)) for v in at.query_params.values()) < 10_000, (page, "URL grew")
        shown = " ".join(str(getattr(e, "value", "")) for e in at.markdown) + " ".join(
            str(getattr(e, "value", "")) for e in at.caption)
        assert "![](" not in shown, (case, page, "user text rendered as markdown")

    after = _digest(Path(world["path"]))
    lost = [k for k, v in before.items() if after.get(k) != v]
    assert not lost, (case, "files changed or lost", lost[:5])
    runs = Path(world["path"]) / "runs"
    assert (sum(1 for _ in runs.iterdir()) if runs.is_dir() else 0) <= n_dirs, "a run was created"
    assert (Path(world["path"]) / "mivis.sqlite").exists() == db_existed, "the registry was recreated"
    victim = Path(world["path"]).parent / "victim" / "precious.txt"
    assert not victim.parent.exists() or victim.read_text() == "keep me"
    if "data folder" not in case:
        assert not list((tmp_path / "cache").rglob("*.npy")), "the URL made the server cache a folder"


def test_the_attack_page_refuses_unloadable_weights_at_launch_and_leaves_no_run(world):
    """Cause 6 in the app: the launch validates every input run's weights before a job or run exists."""
    from ui_world import ATTACK

    from mivis.jobs import JobManager
    from mivis.runs import Workspace
    _truncated_target(world)
    ws = Workspace(world["path"])
    n_runs = len(ws.list())
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["target"] = world["full"]
    at.query_params["attack"] = "gmi"
    for k, v in ATTACK.items():
        at.query_params[f"gmi.{k}"] = ",".join(map(str, v)) if isinstance(v, list) else str(v)
    at.switch_page("pages/attack.py")
    at.run()
    assert not at.exception
    at.button(key="attack:launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    said = " ".join(e.value for e in at.error)
    assert world["full"] in said and "damaged" in said and "truncated" in said
    assert len(ws.list()) == n_runs and JobManager(ws, devices=["cpu"]).list() == []
