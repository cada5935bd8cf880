"""Optional third judge: dlib's pretrained 128-d face embedding, 1-NN identity verdict.

Used only when `dlib` (e.g. the dlib-bin wheel) and `face_recognition_models` are installed; it is
not a requirement. No gradients: it only scores reconstructions. Faces are upscaled to 150 px, the
whole image is taken as the face box, aligned with dlib's 5-point landmarks, embedded, and
matched to the nearest private training image of any identity.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..params import ParamError

SIZE = 150


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
        raise ParamError("the dlib judge needs the optional packages dlib (e.g. dlib-bin) and "
                         "face-recognition-models; they are not installed")


def embed(x: torch.Tensor) -> np.ndarray:
    import dlib
    from PIL import Image
    from ..data import to_uint8
    d = _models_dir()
    sp = dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat"))
    out = []
    for img in (im for i in range(0, len(x), 256) for im in to_uint8(x[i:i + 256])):
        pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).convert("RGB").resize((SIZE, SIZE),
                                                                                               Image.BICUBIC)
        arr = np.ascontiguousarray(np.asarray(pil))
        shape = sp(arr, dlib.rectangle(0, 0, SIZE - 1, SIZE - 1))
        out.append(np.asarray(rec.compute_face_descriptor(arr, shape), np.float32))
    return np.stack(out)


def dlib_verdicts(x: torch.Tensor, y: torch.Tensor, split) -> dict:
    check_available()
    ref = embed(split.train.x)
    ref_y = split.train.y.numpy()
    e = embed(x)
    d = ((e[:, None, :] - ref[None, :, :]) ** 2).sum(-1)
    pred = ref_y[d.argmin(1)]
    return {"top1": pred == y.numpy(), "pred": pred,
            "info": {"judge": "dlib 128-d face embedding, 1-NN over private training images"}}
