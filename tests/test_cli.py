import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, ws):
    env = {**os.environ, "MIVIS_WORKSPACE": str(ws)}
    return subprocess.run([sys.executable, "-m", "mivis", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_data_train_list_show(tmp_path):
    ws = tmp_path / "ws"
    out = cli("data", ws=ws)
    assert out.returncode == 0 and "AT&T" in out.stdout and "20 identities" in out.stdout
    out = cli("train", "--dataset", "synthetic", "--n-private", "6", "--image-size", "32",
              "--test-per-identity", "2", "--epochs", "1", "--device", "cpu", "--json", ws=ws)
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["id"]
    out = cli("runs", "list", ws=ws)
    assert run_id in out.stdout and "done" in out.stdout
    out = cli("runs", "show", run_id, ws=ws)
    assert json.loads(out.stdout)["config"]["train"]["epochs"] == 1


def test_bad_flags_give_one_line_errors(tmp_path):
    out = cli("train", "--epochs", "-3", ws=tmp_path / "ws")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "[1, 1000]" in out.stderr
    out = cli("runs", "show", "nope", ws=tmp_path / "ws")  # the refused train created nothing: no workspace yet
    assert out.returncode == 2 and "no mivis workspace" in out.stderr and not (tmp_path / "ws").exists()
    from mivis.runs import Workspace
    Workspace(tmp_path / "ws")
    out = cli("runs", "show", "nope", ws=tmp_path / "ws")
    assert out.returncode == 2 and "no run" in out.stderr
    out = cli("train", "--patch-size", "8", "--epochs", "1", ws=tmp_path / "ws")
    assert out.returncode == 2 and "does not apply" in out.stderr


def test_help_shows_each_default_once(tmp_path):
    # registry flags default to None (so only given values override) and name their real default in the help
    for cmd in (["train"], ["prior", "train"]):
        out = cli(*cmd, "--help", ws=tmp_path / "ws")
        assert out.returncode == 0
        text = " ".join(out.stdout.split())
        assert "(default: None)" not in text and "(default: )" not in text
        assert "(default: 30;" in text if cmd == ["train"] else "(default: gmi)" in text
