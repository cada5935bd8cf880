"""Images that stay on disk: a uint8 .npy memmap plus row indices, converted to float per batch.

`LazyImages` stands in for a float32 (N, C, H, W) tensor in [-1, 1]: len, .shape, and indexing by
int / slice / index tensor / bool mask return float tensors of just those rows. `view` and `map`
give another lazy set without reading anything. `batches` and `sequential` feed loops through a
DataLoader with worker processes (pinned memory on CUDA) when the images are lazy, and slice plain
tensors exactly as before, so in-memory data sets keep their numbers.
"""
from __future__ import annotations

import itertools
import os
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

ENV_WORKERS = "MIVIS_DATA_WORKERS"
READ_AHEAD_BYTES = 1 << 30


def to_float(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8.astype(np.float32) / 127.5 - 1.0)


def data_workers() -> int:
    """Worker processes for decoding and batch loading: MIVIS_DATA_WORKERS, else up to 8 cores."""
    env = os.environ.get(ENV_WORKERS)
    if env is not None and env.strip().isdigit():
        return int(env)
    return min(8, os.cpu_count() or 1)


class LazyImages:
    dtype = torch.float32
    ndim = 4

    def __init__(self, path: str | os.PathLike, rows: np.ndarray,
                 transforms: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (), store=None):
        self.path = str(path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.transforms = tuple(transforms)
        self._store = store

    @property
    def store(self) -> np.ndarray:
        if self._store is None:
            self._store = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self._store

    def __getstate__(self) -> dict:  # worker processes reopen the memmap instead of copying it
        return {**self.__dict__, "_store": None}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.store.shape[1:]))

    def dim(self) -> int:
        return 4

    def __repr__(self) -> str:
        return f"LazyImages({tuple(self.shape)}, {self.path})"

    def _select(self, key) -> np.ndarray:
        if isinstance(key, torch.Tensor):
            key = key.detach().cpu().numpy()
        if isinstance(key, (list, tuple)):
            key = np.asarray(key)
        if isinstance(key, np.ndarray) and key.dtype == bool and len(key) != len(self.rows):
            raise IndexError(f"boolean index of length {len(key)} for {len(self.rows)} images")
        return np.atleast_1d(self.rows[key])

    def view(self, key) -> "LazyImages":
        """The selected rows as another lazy set (nothing is read)."""
        return LazyImages(self.path, self._select(key), self.transforms, self._store)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "LazyImages":
        """Apply `fn` to every float batch read (a picklable, per-image function such as histeq)."""
        return LazyImages(self.path, self.rows, self.transforms + (fn,), self._store)

    def __getitem__(self, key) -> torch.Tensor:
        single = isinstance(key, (int, np.integer)) or (isinstance(key, torch.Tensor) and key.dim() == 0)
        rows = self._select(key)
        # sorted reads touch the file in order; the result keeps the requested order
        order = np.argsort(rows, kind="stable")
        u8 = np.empty((len(rows), *self.store.shape[1:]), np.uint8)
        if len(rows):
            u8[order] = self.store[rows[order]]
        x = to_float(u8)
        for fn in self.transforms:
            x = fn(x)
        return x[0] if single else x


def is_lazy(x) -> bool:
    return isinstance(x, LazyImages)


class _Gather(torch.utils.data.Dataset):
    """A batch per index tensor: (images, labels) or (images, the indices) when there are no labels."""

    def __init__(self, x: LazyImages, y: torch.Tensor | None, rows: torch.Tensor | None = None):
        self.x, self.y, self.rows = x, y, rows

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: torch.Tensor):
        img = idx if self.rows is None else self.rows[idx]
        return self.x[img], (idx if self.y is None else self.y[idx])


def batches(x, y: torch.Tensor | None, index_batches: Iterable[torch.Tensor], device: torch.device,
            rows: torch.Tensor | None = None, workers: int | None = None) -> Iterator[tuple]:
    """(images, labels) per index batch, in the order given; labels are the indices when y is None and
    `rows` maps an index to an image (GAN pseudo-label pairs). Plain tensors are indexed in this process
    exactly as before; lazy images are read ahead by worker processes into pinned memory on CUDA."""
    if not is_lazy(x):
        for idx in index_batches:
            img = idx if rows is None else rows[idx]
            yield x[img], (idx if y is None else y[idx])
        return
    it = iter(index_batches)
    first = next(it, None)
    if first is None:
        return
    w = data_workers() if workers is None else workers
    # batches in flight (workers x prefetch) stay under READ_AHEAD_BYTES: 512-image judge batches at
    # 224 px are 300 MB each
    batch_bytes = len(first) * 4 * int(np.prod(x.shape[1:]))
    w = min(w, max(1, READ_AHEAD_BYTES // (2 * batch_bytes))) if w else 0
    prefetch = max(2, min(4, READ_AHEAD_BYTES // max(1, w * batch_bytes))) if w else None
    loader = torch.utils.data.DataLoader(
        _Gather(x, y, rows), sampler=itertools.chain([first], it), batch_size=None, num_workers=w,
        pin_memory=device.type == "cuda", prefetch_factor=prefetch, persistent_workers=False)
    yield from loader


def sequential(x, batch: int, device: torch.device | None = None) -> Iterator[torch.Tensor]:
    """Float batches of x in order: slices of a tensor, or lazy images read ahead by workers."""
    n = len(x)
    if not is_lazy(x):
        for i in range(0, n, batch):
            yield x[i:i + batch]
        return
    idx = (torch.arange(i, min(i + batch, n)) for i in range(0, n, batch))
    # below a few batches a worker pool costs more than it saves
    w = 0 if n <= 4 * batch else None
    for xb, _ in batches(x, None, idx, device or torch.device("cpu"), workers=w):
        yield xb
