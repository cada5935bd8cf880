"""dlib's face embedding of aligned 150 px chips, in this process or as a worker process.

dlib (as `dlib-bin` ships it) computes on one core and holds the GIL while it does: 100 classroom
reconstructions took 9.8 s of one core on a 2-core VM, and the app's page could not run meanwhile.
dlib_judge therefore splits large batches over worker processes, one per core the job may use. A worker
is this file run as a script (`python dlib_worker.py MODELS_DIR`): it imports numpy and dlib only (not
torch, not mivis), reads uint8 arrays (N, 150, 150, 3) on stdin and writes the float32 embeddings (N, 128) on stdout
(each as its .npy bytes after their length), until stdin closes.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

SIZE = 150
BATCH = 32  # images per dlib call: its batch call is ~1.5x faster than one image at a time, same numbers


def load_models(models_dir: str | Path):
    """The 5-point landmark model and the embedding network (about 30 MB)."""
    import dlib
    d = Path(models_dir)
    return (dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat")))


def embed_chips(models, chips: np.ndarray) -> np.ndarray:
    """Embeddings of RGB uint8 chips (N, 150, 150, 3): the whole chip is the face box, aligned with the
    5-point landmarks, then embedded."""
    import dlib
    sp, rec = models
    out = []
    for i in range(0, len(chips), BATCH):
        arrs = [np.ascontiguousarray(c) for c in chips[i:i + BATCH]]
        faces = [dlib.full_object_detections([sp(a, dlib.rectangle(0, 0, SIZE - 1, SIZE - 1))]) for a in arrs]
        out += [np.asarray(d[0], np.float32) for d in rec.compute_face_descriptor(arrs, faces)]  # one face each
    return np.stack(out) if out else np.zeros((0, 128), np.float32)


def send(stream, arr: np.ndarray) -> None:
    """One array on a pipe: its .npy bytes after their length (8 bytes, little-endian); numpy's own
    reader and writer need a seekable file."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    data = buf.getvalue()
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def receive(stream) -> np.ndarray:
    """The next array sent on the pipe; EOFError when it closed."""
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the pipe closed")
    n = int.from_bytes(head, "little")
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("the pipe closed mid-array")
    return np.load(io.BytesIO(data), allow_pickle=False)


def serve(models_dir: str) -> None:
    models = load_models(models_dir)
    while True:
        try:
            chips = receive(sys.stdin.buffer)
        except EOFError:  # stdin closed: the parent is done with this worker
            return
        send(sys.stdout.buffer, embed_chips(models, chips))


if __name__ == "__main__":
    serve(sys.argv[1])
