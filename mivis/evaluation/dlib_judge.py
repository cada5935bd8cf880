"""The independent judge: dlib's pretrained 128-d face-recognition embedding, 1-NN identity verdict.

It never saw the private data as a classifier (E and the target learned the same features from it, so a
reconstruction can fool both): the private training images are only its 1-NN gallery. Installed by
requirements-judge.txt (included in requirements.txt; `dlib-bin` and `face-recognition-models`, loads offline);
everything works without it and `available()` says whether it is there. No gradients: it only scores
reconstructions. Faces are upscaled to 150 px, the
whole image is taken as the face box, aligned with dlib's 5-point landmarks, embedded, and
matched to the nearest private training image of any identity.
"""
from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path

import numpy as np
import torch

from ..params import ParamError

SIZE = 150
INSTALL = "pip install -r requirements-judge.txt"
_LOCK = threading.Lock()
NAME = "dlib"  # its key in an evaluation's extra_judges and per-reconstruction rows (top1@dlib)


def _models_dir() -> Path | None:
    spec = importlib.util.find_spec("face_recognition_models")  # located, never imported (pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def available() -> bool:
    d = _models_dir()
    return importlib.util.find_spec("dlib") is not None and d is not None and \
        (d / "dlib_face_recognition_resnet_model_v1.dat").exists()


def check_available() -> None:
    if not available():
        raise ParamError(f"the dlib judge is not installed; add it with `{INSTALL}`")


@functools.lru_cache(maxsize=1)
def _models():
    """The 5-point landmark model and the embedding network, read once per process (about 30 MB)."""
    import dlib
    d = _models_dir()
    return (dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat")))


def embed(x: torch.Tensor) -> np.ndarray:
    import dlib
    from PIL import Image
    from ..data import to_uint8
    check_available()
    sp, rec = _models()
    out = []
    for img in (im for i in range(0, len(x), 256) for im in to_uint8(x[i:i + 256])):
        pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).convert("RGB").resize((SIZE, SIZE),
                                                                                               Image.BICUBIC)
        arr = np.ascontiguousarray(np.asarray(pil))
        with _LOCK:  # the app's job workers share one copy of the models
            shape = sp(arr, dlib.rectangle(0, 0, SIZE - 1, SIZE - 1))
            out.append(np.asarray(rec.compute_face_descriptor(arr, shape), np.float32))
    return np.stack(out)


_GALLERY: dict[str, np.ndarray] = {}  # split -> embeddings of its private training images (this process)


def gallery(split) -> np.ndarray:
    """Embeddings of the split's private training images, computed once per split and process (the app's
    server judges many attacks on the same data; about 0.1-0.6 s per image on one CPU core)."""
    import json
    key = json.dumps([split.config, split.private_names, list(split.image_shape), len(split.train)],
                     sort_keys=True, default=str)
    if key not in _GALLERY:
        _GALLERY.clear()  # one split at a time: a large data set's gallery is not kept twice
        _GALLERY[key] = embed(split.train.x)
    return _GALLERY[key]


def dlib_verdicts(x: torch.Tensor, y: torch.Tensor, split) -> dict:
    check_available()
    ref = gallery(split)
    ref_y = split.train.y.numpy()
    e = embed(x)
    d = ((e[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
    pred = ref_y[d.argmin(1)]
    return {"top1": pred == y.numpy(), "pred": pred,
            "info": {"judge": "dlib 128-d face embedding, 1-NN over private training images"}}


def heldout_accuracy(split, n_boot: int = 2000, seed: int = 0) -> dict:
    """The judge's own check: 1-NN identity of every held-out private image (split.test) against the private
    training images, top-1 with a 95% bootstrap over identities (compare with E's natural accuracy)."""
    from .bootstrap import bootstrap_mean
    v = dlib_verdicts(split.test.x, split.test.y, split)
    return bootstrap_mean(v["top1"], split.test.y.numpy(), n_boot, seed)


def has_verdicts(evaluation: dict) -> bool:
    rows = evaluation.get("per_reconstruction") or []
    return NAME in (evaluation.get("extra_judges") or {}) and bool(rows) and all(f"top1@{NAME}" in r for r in rows)


def add_to_run(ws, run_id: str, n_boot: int = 2000, force: bool = False) -> dict:
    """Judge a finished attack run's stored reconstructions with dlib and store the verdicts with its evaluation
    (extra_judges["dlib"] and top1@dlib per reconstruction); E's verdicts are left as they are. Returns dlib's
    top-1 metric. No model is retrained or reloaded except dlib's: judging is cheap."""
    from ..data import load_split
    from ..runs import Run
    from .bootstrap import bootstrap_mean
    from .compare import load_evaluation
    check_available()
    rec, ev = load_evaluation(ws, run_id)
    if has_verdicts(ev) and not force:
        return ev["extra_judges"][NAME]["attack_acc_top1"]
    t = rec.read_tensors("reconstructions.safetensors")  # DamagedRun: named, one line
    rows = ev["per_reconstruction"]
    if len(rows) != len(t["y"]) or any(int(r["identity"]) != int(c) for r, c in zip(rows, t["y"].tolist())):
        raise ParamError(f"attack run {run_id}: its evaluation rows do not match its stored reconstructions")
    v = dlib_verdicts(t["x"].float(), t["y"], load_split(rec.config["data"]))
    seed = ev.get("bootstrap_seed", rec.config["attack"]["params"].get("seed", 0))
    m = bootstrap_mean(v["top1"], t["y"].numpy(), n_boot, seed)
    ev["extra_judges"][NAME] = {**v["info"], "attack_acc_top1": m}
    for r, ok in zip(rows, v["top1"]):
        r[f"top1@{NAME}"] = bool(ok)
    run = Run(ws, rec.id)
    run.write_json("evaluation.json", ev)
    run.update_metrics({"extra_judges": ev["extra_judges"]})
    return m
