"""Folder data decoded and resized once into an on-disk uint8 array, reused while the folder is unchanged.

Location: $MIVIS_CACHE/data, else $XDG_CACHE_HOME/mivis/data, else ~/.cache/mivis/data: outside the
workspace because one resized copy serves every workspace. An entry is <key>.npy (uint8 N x C x H x W,
memory-mapped by readers) and <key>.json (identities, their rows, unreadable files). The key hashes the
folder's file list (relative paths, sizes, mtimes), the image size and channel count, so a changed
folder gets a new entry (and the previous entry of that folder at that size is deleted). Both files
are written to temporary names and renamed; the JSON is renamed last and is the commit marker, so an
interrupted build is never taken for a complete one.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..progress import NULL, Reporter
from ._errors import DataError
from ._lazy import data_workers

FORMAT = 1  # part of the key: bump it when decoding or resizing changes
ENV_CACHE = "MIVIS_CACHE"
DECODE_BATCH = 32
FLUSH_ROWS = 2048  # write back and unmap every ~300 MB (224 px RGB) so the build's memory stays flat


def cache_root() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "mivis"


@dataclass
class CachedFolder:
    path: Path                 # the .npy file
    store: np.ndarray          # read-only memmap (N, C, H, W) uint8
    names: list[str]           # identities with at least one readable image, sorted
    rows: list[np.ndarray]     # per identity: its rows in `store`, in file-name order
    problems: list[str]
    built: bool                # decoded in this call (False: reused)

    def fingerprint(self, groups: list[np.ndarray], tail: bytes) -> str:
        """sha256 of the images of `groups` (rows, in order) then `tail`: the same digest as hashing the
        decoded arrays in memory, memoised per split next to the entry (streaming 30 GB takes a while)."""
        memo_path = self.path.with_suffix(".fingerprints.json")
        mk = hashlib.sha256(tail)
        for g in groups:
            mk.update(np.ascontiguousarray(g, np.int64).tobytes())
        mk = mk.hexdigest()
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        if isinstance(memo, dict) and isinstance(memo.get(mk), str):
            return memo[mk]
        h = hashlib.sha256()
        for g in groups:
            for i in range(0, len(g), 1024):
                h.update(np.ascontiguousarray(self.store[g[i:i + 1024]]).tobytes())
                _release(self.store, write=False)
        h.update(tail)
        memo = {**(memo if isinstance(memo, dict) else {}), mk: h.hexdigest()}
        try:
            _write_atomic(memo_path, json.dumps(memo).encode())
        except OSError:
            pass  # a read-only cache still works, it only recomputes
        return memo[mk]


def scan(root: Path) -> tuple[list[str], list[list[str]], str]:
    """Identity folders and their files (sorted as the in-memory reader did) and a digest of the listing."""
    names, files, listing = [], [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        fs = []
        for f in sorted(sub.iterdir()):
            if not f.is_file() or f.name.startswith("."):
                continue
            st = f.stat()
            fs.append(f.name)
            listing.append([sub.name, f.name, st.st_size, st.st_mtime_ns])
        names.append(sub.name)
        files.append(fs)
    return names, files, hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def load_folder(root: str | Path, size: int, channels: int, reporter: Reporter = NULL,
                workers: int | None = None) -> CachedFolder:
    """The folder's images as a cached uint8 memmap; decoded (in parallel) only when not cached yet."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder")
    names, files, listing = scan(root)
    key = hashlib.sha256(json.dumps([FORMAT, listing, size, channels]).encode()).hexdigest()[:32]
    folder = cache_root() / "data"
    hit = _open(folder, key, root)
    if hit is not None:
        return hit
    if not any(files):
        raise DataError(f"no usable identity in {root}: expected one sub-folder per identity, "
                        "each with at least one readable image")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the data cache folder {folder}: {e}; set {ENV_CACHE} to a "
                        "writable folder") from None
    _remove_stale(folder, key)
    _build(folder, key, root, names, files, size, channels, reporter, workers)
    hit = _open(folder, key, root)
    if hit is None:
        raise DataError(f"the data cache {folder / key}.npy was written but cannot be read back")
    hit.built = True
    return hit


def _open(folder: Path, key: str, root: Path) -> CachedFolder | None:
    npy, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            return None
        store = np.load(npy, mmap_mode="r", allow_pickle=False)
        if store.dtype != np.uint8 or list(store.shape) != meta["shape"]:
            return None
        rows = [np.asarray(r, np.int64) for r in meta["rows"]]
        names = list(meta["names"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, partial or foreign: rebuild
    problems = [f"skipped unreadable image {root / rel}: {msg}" for rel, msg in meta["unreadable"]]
    problems += [f"identity {n!r} has 0 usable image(s), fewer than the 1 needed; left out" for n in meta["empty"]]
    return CachedFolder(npy, store, names, rows, problems, built=False)


class _Decode(torch.utils.data.Dataset):
    def __init__(self, paths: list[str], size: int, channels: int):
        self.paths, self.size, self.channels = paths, size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from ._images import read_image
        try:
            return i, read_image(self.paths[i], self.size, self.channels), None
        except Exception as e:  # PIL raises many types for bad files
            return i, None, f"{type(e).__name__}: {e}"


def _as_list(batch):
    return batch


def _build(folder: Path, key: str, root: Path, names: list[str], files: list[list[str]], size: int,
           channels: int, reporter: Reporter, workers: int | None) -> None:
    rel = [f"{n}/{f}" for n, fs in zip(names, files) for f in fs]
    n = len(rel)
    tmp = folder / f"{key}.npy.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, channels, size, size))
        ok = np.zeros(n, bool)
        unreadable = []
        w = data_workers() if workers is None else workers
        loader = torch.utils.data.DataLoader(
            _Decode([str(root / r) for r in rel], size, channels), batch_size=DECODE_BATCH,
            num_workers=w if n > 4 * DECODE_BATCH else 0, collate_fn=_as_list)
        done, flushed = 0, 0
        for batch in loader:
            reporter.check()
            for i, img, err in batch:
                if err is None:
                    arr[i] = img
                    ok[i] = True
                else:
                    unreadable.append([rel[i], err])
            done += len(batch)
            if done - flushed >= FLUSH_ROWS:
                _release(arr)
                flushed = done
            reporter.report(phase="data cache", images=done, total=n, elapsed=round(time.monotonic() - t0, 1))
        arr.flush()
        del arr
        os.replace(tmp, folder / f"{key}.npy")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    start = np.cumsum([0] + [len(fs) for fs in files])
    kept, rows, empty = [], [], []
    for k, name in enumerate(names):
        r = np.flatnonzero(ok[start[k]:start[k + 1]]) + start[k]
        if len(r):
            kept.append(name)
            rows.append(r.tolist())
        else:
            empty.append(name)
    meta = {"format": FORMAT, "source": str(root), "size": size, "channels": channels,
            "shape": [n, channels, size, size], "names": kept, "rows": rows, "unreadable": unreadable,
            "empty": empty, "seconds": round(time.monotonic() - t0, 2), "workers": w}
    _write_atomic(folder / f"{key}.json", json.dumps(meta).encode())
    _remove_superseded(folder, key, meta)
    reporter.report(force=True, phase="data cached", images=n, total=n, unreadable=len(unreadable),
                    elapsed=meta["seconds"])


def _release(arr: np.memmap, write: bool = True) -> None:
    """Write the pages to the file and drop them from this process (they stay in the page cache)."""
    if write:
        arr.flush()
    m = getattr(arr, "_mmap", None)
    if m is not None and hasattr(mmap, "MADV_DONTNEED"):
        m.madvise(mmap.MADV_DONTNEED)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_superseded(folder: Path, key: str, meta: dict) -> None:
    """Older entries of the same folder, size and channels: each can be 30 GB, and none is reused."""
    for other in folder.glob("*.json"):
        stem = other.name[:-len(".json")]
        if stem == key or "." in stem:
            continue
        try:
            m = json.loads(other.read_text())
            same = (m["source"], m["size"], m["channels"]) == (meta["source"], meta["size"], meta["channels"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if same:
            other.unlink(missing_ok=True)  # the commit marker first: never a half-deleted entry in use
            for suffix in (".npy", ".fingerprints.json"):
                (folder / f"{stem}{suffix}").unlink(missing_ok=True)


def _remove_stale(folder: Path, key: str) -> None:
    """Delete temporary files of this entry left by builds that died (same host, process gone)."""
    host = socket.gethostname()
    for t in folder.glob(f"{key}.*.tmp-*"):
        try:
            t_host, pid = t.name.rsplit(".tmp-", 1)[1].rsplit("-", 2)[:2]
            if t_host != host:
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            t.unlink(missing_ok=True)
        except (ValueError, OSError):
            continue
