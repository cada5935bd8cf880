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


BATCH = 32  # images per call: dlib's batch call is ~1.5x faster than one image at a time, same numbers
SHIPPED_GALLERIES = Path(__file__).resolve().parents[2] / "assets" / "dlib"


def embed(x: torch.Tensor) -> np.ndarray:
    import dlib
    from PIL import Image
    from ..data import to_uint8
    check_available()
    sp, rec = _models()
    out = []
    for i in range(0, len(x), BATCH):
        arrs = []
        for img in to_uint8(x[i:i + BATCH]):
            pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).convert("RGB").resize(
                (SIZE, SIZE), Image.BICUBIC)
            arrs.append(np.ascontiguousarray(np.asarray(pil)))
        with _LOCK:  # the app's job workers share one copy of the models
            faces = [dlib.full_object_detections([sp(a, dlib.rectangle(0, 0, SIZE - 1, SIZE - 1))]) for a in arrs]
            out += [np.asarray(d[0], np.float32) for d in rec.compute_face_descriptor(arrs, faces)]
    return np.stack(out)


_GALLERY: dict[str, np.ndarray] = {}  # gallery file name -> embeddings (this process)


def gallery_name(split) -> str:
    """A file name that changes with the split's images (fingerprint), their size and dlib's model file."""
    import hashlib
    import json
    model = _models_dir() / "dlib_face_recognition_resnet_model_v1.dat"
    key = json.dumps([split.fingerprint, split.private_names, list(split.image_shape), len(split.train), SIZE,
                      model.stat().st_size], default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:24] + ".npy"


def _read_gallery(path: Path, n: int) -> np.ndarray | None:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    ok = a.dtype == np.float32 and a.shape == (n, 128) and bool(np.isfinite(a).all())
    return a if ok else None


def gallery(split) -> np.ndarray:
    """Embeddings of the split's private training images (about 0.1-0.6 s an image on one CPU core):
    computed once per split and kept in memory and in $MIVIS_CACHE/dlib/ (so every CLI call and server
    reuses them); galleries of the default ORL splits ship in assets/dlib/. A damaged file is recomputed."""
    name = gallery_name(split)
    if name not in _GALLERY:
        from ..data._cache import cache_root
        folder = cache_root() / "dlib"
        arr = next((a for a in (_read_gallery(d / name, len(split.train)) for d in (folder, SHIPPED_GALLERIES))
                    if a is not None), None)
        if arr is None:
            arr = embed(split.train.x)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{name}.{threading.get_ident()}.tmp"
                with open(tmp, "wb") as f:
                    np.save(f, arr, allow_pickle=False)
                tmp.replace(folder / name)
            except OSError:  # a read-only cache: judged all the same, recomputed next time
                pass
        _GALLERY.clear()  # one split at a time: a large data set's gallery is not kept twice
        _GALLERY[name] = arr
    return _GALLERY[name]


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
