"""Identity-disjoint private/public split with a per-identity train/test split, all seeded."""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from ..params import Param, ParamSet
from ..progress import NULL, Reporter
from ._errors import DataError
from ._lazy import LazyImages, is_lazy, to_float


DATA_PARAMS = ParamSet([
    Param("dataset", str, "orl", "face data: the embedded ORL faces, your own folder, or a synthetic test set",
          choices=("orl", "folder", "synthetic")),
    Param("data_dir", str, None, "folder with one sub-folder of images per identity (dataset=folder)",
          optional=True),
    Param("private_list", str, None, "file listing private identities, one per line (else a seeded split)",
          optional=True),
    Param("public_list", str, None, "file listing public identities (else all non-private ones)",
          optional=True),
    Param("n_private", int, 20, "number of private identities (the target's classes)", min=2, max=100000),
    Param("split_seed", int, 0, "seed of the identity split and of each identity's train/test split",
          min=0, max=2**31 - 1),
    Param("test_per_identity", int, 3, "held-out test images per private identity", min=1, max=1000),
    Param("image_size", int, 64, "side of the square images in pixels", min=16, max=256),
    Param("channels", int, 1, "1 = grayscale, 3 = RGB", choices=(1, 3)),
])


@dataclass
class Subset:
    x: torch.Tensor | LazyImages  # float32 (N, C, H, W) in [-1, 1]; folder data: read per batch from disk
    y: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def streamed(self) -> bool:
        return is_lazy(self.x)

    def take(self, idx) -> "Subset":
        """The selected images (index tensor, bool mask or slice); lazy images stay lazy."""
        return Subset(self.x.view(idx) if self.streamed else self.x[idx], self.y[idx])


@dataclass
class FaceSplit:
    config: dict
    private_names: list[str]
    public_names: list[str]
    train: Subset   # private identities, training images; y in [0, n_private)
    test: Subset    # private identities, held-out images
    public: Subset  # public identities; y in [0, n_public)
    fingerprint: str
    problems: list[str] = field(default_factory=list)
    cache: str | None = None  # folder data: the .npy file the images are read from
    # which images each subset holds: {"train"|"test"|"public": [(identity name, index among that identity's
    # images in file order), ...]} in the subsets' row order (export_split writes them as file lists)
    members: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.private_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    def record(self) -> dict:
        """What every run stores about its data: config, split and a fingerprint."""
        return {"config": self.config, "private": self.private_names, "public": self.public_names,
                "fingerprint": self.fingerprint, "n_train": len(self.train), "n_test": len(self.test),
                "n_public": len(self.public)}

    def private_images(self, identity: int, which: str = "train") -> torch.Tensor:
        sub = self.train if which == "train" else self.test
        return sub.x[sub.y == identity]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] float images (N, C, H, W) -> uint8 (N, H, W, C) for display/saving."""
    arr = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).numpy()


_cache: dict[str, FaceSplit] = {}
_lock = threading.Lock()


def load_split(config: dict | None = None, reporter: Reporter = NULL) -> FaceSplit:
    """Validate the data config, read the faces and split them. Cached per config (read-only).

    Folder data is decoded once into an on-disk cache (see _cache.py; `reporter` sees that build)
    and its subsets are lazy: images are read and converted per batch."""
    cfg = DATA_PARAMS.validate(config, context="data")
    key = json.dumps(cfg, sort_keys=True)
    with _lock:
        if key not in _cache:
            _cache[key] = _build(cfg, reporter)
        return _cache[key]


def _build(cfg: dict, reporter: Reporter = NULL) -> FaceSplit:
    problems: list[str] = []
    size, ch = cfg["image_size"], cfg["channels"]
    store = None
    if cfg["dataset"] == "orl":
        from ._orl import orl_identities
        names, per = orl_identities(size, ch)
    elif cfg["dataset"] == "synthetic":
        from ._synthetic import synthetic_identities
        names, per = synthetic_identities(16, 8, size, ch)
    else:
        if not cfg["data_dir"]:
            raise DataError("dataset=folder needs data_dir: a folder with one sub-folder per identity")
        from ._folder import folder_identities
        names, per, store = folder_identities(cfg["data_dir"], size, ch, problems, reporter)
    return _assemble(cfg, names, per, problems, store)


def _assemble(cfg: dict, names: list[str], per: list[np.ndarray], problems: list[str], store=None) -> FaceSplit:
    """Split identities and images. `per[i]` holds identity i's images (N, C, H, W) uint8, or with a
    cached `store` its row indices there: the same seeded choices index either."""
    min_images = cfg["test_per_identity"] + 1
    rng = np.random.default_rng(cfg["split_seed"])
    index = {n: i for i, n in enumerate(names)}
    if cfg["private_list"]:
        from ._folder import read_identity_list
        private = _resolve(read_identity_list(cfg["private_list"]), index, "private list")
    else:
        eligible = [i for i in range(len(names)) if len(per[i]) >= min_images]
        if len(eligible) < cfg["n_private"] + 1:
            fix = (f"allowed n_private: 2..{len(eligible) - 1}" if len(eligible) >= 3 else
                   f"no n_private works: lower test_per_identity (each private identity needs "
                   f"test_per_identity + 1 images) or add images")
            raise DataError(f"{len(eligible)} identities have at least {min_images} images, but "
                            f"n_private={cfg['n_private']} private plus at least one public identity "
                            f"are needed; {fix}")
        private = sorted(rng.choice(eligible, cfg["n_private"], replace=False).tolist())
    thin = [names[i] for i in private if len(per[i]) < min_images]
    if thin:
        raise DataError(f"private identities need at least {min_images} images "
                        f"(test_per_identity + 1); too few: {', '.join(thin[:10])}")
    if cfg["public_list"]:
        from ._folder import read_identity_list
        public = _resolve(read_identity_list(cfg["public_list"]), index, "public list")
    else:
        public = [i for i in range(len(names)) if i not in set(private)]
    overlap = set(private) & set(public)
    if overlap:
        raise DataError(f"private and public identities overlap: {', '.join(names[i] for i in sorted(overlap))}")
    if not public:
        raise DataError("no public identities are left for the attacker's data")

    tr_x, tr_y, te_x, te_y = [], [], [], []
    members: dict = {"train": [], "test": [], "public": []}
    for cls, i in enumerate(private):
        order = rng.permutation(len(per[i]))
        k = cfg["test_per_identity"]
        te_x.append(per[i][order[:k]]); te_y += [cls] * k
        tr_x.append(per[i][order[k:]]); tr_y += [cls] * (len(order) - k)
        members["test"] += [(names[i], int(j)) for j in order[:k]]
        members["train"] += [(names[i], int(j)) for j in order[k:]]
    members["public"] = [(names[i], j) for i in public for j in range(len(per[i]))]
    pub_x = np.concatenate([per[i] for i in public])
    pub_y = np.concatenate([[c] * len(per[i]) for c, i in enumerate(public)])

    tail = json.dumps([[names[i] for i in private], [names[i] for i in public]]).encode()
    if store is None:
        h = hashlib.sha256()
        for arr in (*tr_x, *te_x, pub_x):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(tail)
        fingerprint, images = h.hexdigest(), to_float
    else:  # the same digest, streamed from the cache (memoised there)
        fingerprint = store.fingerprint([*tr_x, *te_x, pub_x], tail)
        images = lambda rows: LazyImages(store.path, rows, store=store.store)  # noqa: E731
    return FaceSplit(
        config=cfg, private_names=[names[i] for i in private], public_names=[names[i] for i in public],
        train=Subset(images(np.concatenate(tr_x)), torch.tensor(tr_y, dtype=torch.long)),
        test=Subset(images(np.concatenate(te_x)), torch.tensor(te_y, dtype=torch.long)),
        public=Subset(images(pub_x), torch.tensor(pub_y, dtype=torch.long)),
        fingerprint=fingerprint, problems=problems, cache=str(store.path) if store is not None else None,
        members=members)


def _resolve(wanted: list[str], index: dict[str, int], what: str) -> list[int]:
    missing = [w for w in wanted if w not in index]
    if missing:
        raise DataError(f"{what} names identities not in the data folder: {', '.join(missing[:10])}")
    if not wanted:
        raise DataError(f"{what} is empty")
    return [index[w] for w in wanted]
