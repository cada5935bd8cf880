"""The classroom default: a ResNet-18 target and a VGG-11 judge on ORL 32 px, shipped with the app.

Training both takes minutes on a laptop CPU (38 s + the judge on a quiet 2-core machine, and 20-30x
longer on a busy one), so the project ships their weights the way it ships its priors:
`python -m mivis classroom export` trains them with the settings below (or reuses matching runs) and
writes assets/classroom/: each model's weights (float16 safetensors, half the size; they are
loaded back into float32) and classroom.json with the exact run configuration, the training
metrics, the split's fingerprint and each file's sha256. `import_classroom` checks all of that,
registers the two models as ordinary finished runs with the configuration they were trained under,
and measures their held-out accuracy now, after the float16 rounding. Nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .data import DataError, load_split
from .params import ParamError
from .progress import NULL, Reporter
from .runs import RunError, RunRecord, Workspace
from .weights import WeightsError, load_into, load_tensors, save_weights

from .paths import assets_dir
ASSETS = assets_dir() / "classroom"
FORMAT = "mivis-classroom-1"
EXPORT_COMMAND = "python -m mivis classroom export"

CLASSROOM_DATA = {"dataset": "orl", "image_size": 32}
CLASSROOM_TARGET = {"arch": "resnet18", "epochs": 30, "seed": 0}
CLASSROOM_JUDGE = {"arch": "vgg11", "epochs": 30, "lr": 1e-3, "seed": 0}
# (role, training settings, run name, words for the progress bar, shipped file)
STEPS = (("target", CLASSROOM_TARGET, "ResNet-18 ORL 32 px (classroom)", "the target", "target.safetensors"),
         ("eval", CLASSROOM_JUDGE, "VGG-11 judge ORL 32 px (classroom)", "the judge", "judge.safetensors"))


def find_trained(ws: Workspace, role: str, train: dict, data: dict) -> str | None:
    """A finished, undefended run of this role trained with these settings on this data, if any."""
    for r in ws.list(kind=role, status="done"):
        c = r.config
        try:
            if (c["data"] == data and not c["model"].get("defenses") and c["model"]["arch"] == train["arch"]
                    and all(c["train"].get(k) == v for k, v in train.items())):
                return r.id
        except (KeyError, TypeError, AttributeError):
            continue  # a damaged registry row is not a match
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_classroom(out: str | Path = ASSETS, ws: Workspace | None = None, reporter: Reporter = NULL,
                     device: str = "cpu") -> dict:
    """Train (or reuse) the classroom target and judge and write their weights and description to `out`."""
    from .train import train_run
    ws = ws or Workspace()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_split(CLASSROOM_DATA).config
    models = []
    for i, (role, train, name, label, fname) in enumerate(STEPS, 1):
        rid = find_trained(ws, role, train, data)
        if rid is None:
            rid = train_run(role, {**train, "device": device}, data, workspace=ws, name=name,
                            reporter=reporter.child(part=role, part_index=i, parts=len(STEPS), part_label=label)).id
        rec = ws.get(rid)
        tensors, _ = load_tensors(rec.file("weights.safetensors"))
        half = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}
        save_weights(out / fname, half, {"arch": rec.config["model"]["arch"], "format": FORMAT, "dtype": "float16"})
        models.append({"role": role, "name": name, "file": fname, "sha256": _sha256(out / fname),
                       "config": rec.config, "seed": rec.seed, "data_fingerprint": rec.data_fingerprint,
                       "trained_metrics": rec.metrics, "versions": rec.versions, "source_run": rec.id})
    info = {"format": FORMAT, "command": EXPORT_COMMAND, "dtype": "float16", "data": CLASSROOM_DATA,
            "models": models}
    (out / "classroom.json").write_text(json.dumps(info, indent=1, default=str))
    return info


def shipped(src: str | Path = ASSETS) -> dict | None:
    """The shipped description, checked for shape; None when nothing is shipped."""
    p = Path(src) / "classroom.json"
    if not p.is_file():
        return None
    try:
        info = json.loads(p.read_text())
        ok = (info.get("format") == FORMAT and isinstance(info.get("models"), list)
              and {m["role"] for m in info["models"]} == {s[0] for s in STEPS}
              and all(isinstance(m["config"], dict) and isinstance(m["file"], str) and "/" not in m["file"]
                      and len(m["sha256"]) == 64 for m in info["models"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise WeightsError(f"{p}: not a mivis classroom description ({FORMAT}); rebuild it with {EXPORT_COMMAND}")
    return info


def import_classroom(ws: Workspace, src: str | Path = ASSETS) -> dict[str, str]:
    """Register the shipped target and judge as finished runs; returns {role: run id}.

    Each file must match its recorded sha256 and the split its model was trained on; importing twice
    returns the runs already registered."""
    from .models import model_from_config
    from .train import accuracy
    src = Path(src)
    info = shipped(src)
    if info is None:
        raise RunError(f"no shipped classroom models in {src}; make them with {EXPORT_COMMAND}")
    split = load_split(CLASSROOM_DATA)
    out = {}
    for m in info["models"]:
        role, cfg, path = m["role"], m["config"], src / m["file"]
        if not path.is_file():
            raise WeightsError(f"{path}: missing; rebuild the classroom models with {EXPORT_COMMAND}")
        digest = _sha256(path)
        if digest != m["sha256"]:
            raise WeightsError(f"{path}: sha256 {digest[:12]}... differs from the recorded {m['sha256'][:12]}...; "
                               f"the file changed since export")
        if m.get("data_fingerprint") != split.fingerprint or cfg.get("data") != split.config:
            raise DataError(f"{path}: trained on another ORL split than this installation reads "
                            f"(fingerprint {str(m.get('data_fingerprint'))[:12]} vs {split.fingerprint[:12]})")
        for r in ws.list(kind=role, status="done"):
            if r.metrics.get("shipped_sha256") == digest:
                out[role] = r.id
                break
        else:
            out[role] = _register(ws, m, path, digest, split, model_from_config, accuracy).id
    return out


def _register(ws: Workspace, m: dict, path: Path, digest: str, split, model_from_config, accuracy) -> RunRecord:
    cfg = m["config"]
    try:
        model = model_from_config(cfg["model"], phase="final")
    except (KeyError, TypeError, ParamError) as e:
        raise WeightsError(f"{path}: its recorded model configuration does not build ({e})") from None
    tensors, _ = load_tensors(path)
    full = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
    tmp = ws.path / ".classroom-import.safetensors"
    save_weights(tmp, full, {"arch": cfg["model"]["arch"]})
    try:
        load_into(model, tmp, expect={"arch": cfg["model"]["arch"]})  # every key and shape checked
    finally:
        tmp.unlink(missing_ok=True)
    model.eval()
    with torch.no_grad():
        acc = accuracy(model, split.test, torch.device("cpu"))
    run = ws.create(m["role"], cfg, seed=m.get("seed"), data_fingerprint=split.fingerprint,
                    name=f"{m['name']} (shipped)")
    try:
        run.save_weights(model.state_dict(), {"arch": cfg["model"]["arch"], "model_config": cfg["model"],
                                              "run": run.id})
        run.write_json("split.json", split.record())
        run.write_json("shipped.json", {k: v for k, v in m.items() if k != "config"})
        trained = {k: v for k, v in (m.get("trained_metrics") or {}).items()
                   if k in ("train_acc", "train_seconds", "params", "trainable_params", "device")}
        run.finish({**trained, "natural_acc": acc, "natural_acc_as_trained": m.get("trained_metrics", {}).get(
            "natural_acc"), "shipped_sha256": digest, "imported_from": "assets/classroom"})
    except BaseException as e:
        run.fail_from(e)
        raise
    return run.record()
