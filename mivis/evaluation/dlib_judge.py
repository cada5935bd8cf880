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

import atexit
import functools
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import torch

from ..params import ParamError
from .dlib_worker import SIZE, embed_chips, load_models, receive, send

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
    """The models for judging in this process, read once per process (about 30 MB)."""
    return load_models(_models_dir())


from ..paths import assets_dir
SHIPPED_GALLERIES = assets_dir() / "dlib"
MIN_PER_WORKER = 16  # fewer images than this per worker: the pipe round trip is not worth it
BLOCK = 512  # images turned into chips (150 x 150 x 3 bytes each) and embedded at a time


def chips(x: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] -> RGB uint8 chips (N, 150, 150, 3), upscaled bicubically as dlib expects."""
    from PIL import Image
    from ..data import to_uint8
    out = np.zeros((len(x), SIZE, SIZE, 3), np.uint8)
    for i, img in enumerate(to_uint8(x)):
        pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).convert("RGB")
        out[i] = np.asarray(pil.resize((SIZE, SIZE), Image.BICUBIC))
    return out


class _Workers:
    """Worker processes (dlib_worker.py run as a script), started on first need and kept for the process's
    life: dlib computes on one core, so a batch split over k workers takes ~1/k of the time on k free
    cores, and this process's GIL stays free for the app meanwhile."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def start(self, n: int) -> None:
        """Have at least n workers running (they load dlib's models while the caller goes on)."""
        with self.lock:
            self.procs = [p for p in self.procs if p.poll() is None]
            while len(self.procs) < n:
                self.procs.append(subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("dlib_worker.py")), str(_models_dir())],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))

    def embed(self, parts: list[np.ndarray]) -> np.ndarray:
        self.start(len(parts))
        with self.lock:
            procs = self.procs[:len(parts)]
            try:
                for p, part in zip(procs, parts):  # each worker reads all of its part before it computes
                    send(p.stdin, part)
                out = [receive(p.stdout) for p in procs]
                if any(o.shape != (len(part), 128) or o.dtype != np.float32 for o, part in zip(out, parts)):
                    raise ValueError("a dlib worker returned embeddings of the wrong shape")
            except (OSError, ValueError, EOFError):
                self._stop_locked()  # whatever went wrong, the next batch starts fresh workers
                raise
        return np.concatenate(out)

    def _stop_locked(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []

    def stop(self) -> None:
        with self.lock:
            self._stop_locked()


WORKERS = _Workers()
atexit.register(WORKERS.stop)


def worker_count(n_images: int) -> int:
    """Workers for a batch: one per thread the current job may use (torch's thread count, chosen for the
    free cores by mivis.threads), none (this process) for a small batch or a single core."""
    return max(1, min(torch.get_num_threads(), n_images // MIN_PER_WORKER))


def embed(x, workers: int | None = None) -> np.ndarray:
    """128-d dlib embeddings of images in [-1, 1] (a tensor or a data set's lazily read images), BLOCK at a
    time (a large gallery's chips are never all in memory); `workers` > 1 splits each block over worker
    processes (same numbers as one process; a failed worker falls back to this process)."""
    check_available()
    out = []
    for start in range(0, len(x), BLOCK):
        c = chips(x[start:start + BLOCK])  # slicing a lazily read data set reads that block as a tensor
        n = worker_count(len(c)) if workers is None else max(1, min(workers, len(c)))
        if n > 1:
            try:
                out.append(WORKERS.embed(np.array_split(c, n)))
                continue
            except (OSError, ValueError, EOFError):
                pass
        with _LOCK:  # the app's job workers share one copy of the models
            out.append(embed_chips(_models(), c))
    return np.concatenate(out) if out else np.zeros((0, 128), np.float32)


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
