"""Folder data through the on-disk cache: built once, reused, rebuilt on change, never taken half-written;
lazy subsets equal to the in-memory path; streamed training equal to in-memory training; 224 px end to end."""
import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from mivis.data import LazyImages, load_split
from mivis.data import _cache, _split
from mivis.progress import Cancelled, Reporter


def _make_folder(root, n_ids=12, per_id=25, size=(24, 20), seed=0):
    """n_ids x per_id RGB PNGs of a few pixels each, with identity-dependent colours."""
    rng = np.random.default_rng(seed)
    for k in range(n_ids):
        d = root / f"id{k:02d}"
        d.mkdir(parents=True)
        base = rng.integers(0, 256, 3)
        for i in range(per_id):
            img = np.clip(base + rng.normal(0, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIVIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MIVIS_DATA_WORKERS", "2")
    _split._cache.clear()
    yield tmp_path / "cache" / "data"
    _split._cache.clear()


def _cfg(root, **kw):
    return {"dataset": "folder", "data_dir": str(root), "n_private": 5, "test_per_identity": 3,
            "image_size": 16, "channels": 3, **kw}


def _full(x):
    return x[:] if isinstance(x, LazyImages) else x


def test_cache_is_built_once_reused_and_rebuilt_on_change(tmp_path, cache, monkeypatch):
    root = _make_folder(tmp_path / "faces")
    first = _cache.load_folder(root, 16, 3)
    assert first.built and first.store.shape == (300, 3, 16, 16) and len(first.names) == 12
    npy = first.path
    mtime = npy.stat().st_mtime_ns
    a = load_split(_cfg(root))
    assert isinstance(a.train.x, LazyImages) and isinstance(a.public.x, LazyImages)
    assert a.cache == str(npy) and a.image_shape == (3, 16, 16)

    def no_decode(*args, **kw):
        raise AssertionError("the cache was rebuilt although the folder did not change")
    monkeypatch.setattr(_cache, "_build", no_decode)
    _split._cache.clear()
    b = load_split(_cfg(root))
    assert npy.stat().st_mtime_ns == mtime and b.fingerprint == a.fingerprint
    for s in ("train", "test", "public"):
        assert torch.equal(getattr(a, s).x[:], getattr(b, s).x[:]) and torch.equal(getattr(a, s).y, getattr(b, s).y)
    monkeypatch.undo()
    monkeypatch.setenv("MIVIS_CACHE", str(cache.parent))

    # one changed image: a new entry, and the new pixels show up
    victim = root / "id03" / "007.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(victim)
    os.utime(victim, ns=(mtime + 10**9, mtime + 10**9))
    again = _cache.load_folder(root, 16, 3)
    assert again.built and again.path != npy
    assert not npy.exists() and not npy.with_suffix(".json").exists()  # the superseded copy is gone
    row = again.rows[again.names.index("id03")][7]
    assert again.store[row].max() == 0 and first.store[row].max() > 0
    # another size or channel count is another entry
    assert _cache.load_folder(root, 8, 1).store.shape == (300, 1, 8, 8)


def test_partial_or_interrupted_cache_is_never_used(tmp_path, cache):
    root = _make_folder(tmp_path / "faces", n_ids=6, per_id=30)
    ref = _cache.load_folder(root, 16, 3)
    want = np.array(ref.store)
    npy, meta = ref.path, ref.path.with_suffix(".json")
    del ref
    # a truncated array (e.g. disk full) is rebuilt
    with open(npy, "r+b") as f:
        f.truncate(npy.stat().st_size - 500)
    got = _cache.load_folder(root, 16, 3)
    assert got.built and np.array_equal(np.array(got.store), want)
    del got
    # an array without its JSON (killed between the two renames) is rebuilt
    meta.unlink()
    assert _cache.load_folder(root, 16, 3).built and meta.exists()
    # a build cancelled half-way leaves nothing that looks complete, and no temporary file
    npy.unlink(), meta.unlink()
    rep = Reporter(lambda ev: rep.cancel.set() if ev.get("images", 0) >= 32 else None)
    with pytest.raises(Cancelled):
        _cache.load_folder(root, 16, 3, reporter=rep)
    assert sorted(p.name for p in cache.iterdir()) == []
    assert _cache.load_folder(root, 16, 3).built


def test_stale_temporary_files_of_dead_builds_are_removed(tmp_path, cache):
    import socket
    root = _make_folder(tmp_path / "faces", n_ids=3, per_id=4)
    key_file = _cache.load_folder(root, 16, 3).path
    dead = key_file.with_name(f"{key_file.stem}.npy.tmp-{socket.gethostname()}-999999999-abcd1234")
    dead.write_bytes(b"half")
    alive = key_file.with_name(f"{key_file.stem}.npy.tmp-{socket.gethostname()}-{os.getpid()}-abcd1234")
    alive.write_bytes(b"busy")
    key_file.unlink()
    _cache.load_folder(root, 16, 3)
    assert not dead.exists() and alive.exists()


def test_corrupt_images_are_reported_and_skipped_also_on_reuse(tmp_path, cache):
    root = _make_folder(tmp_path / "faces", n_ids=6, per_id=6)
    (root / "id01" / "broken.jpg").write_bytes(b"not an image at all")
    good = (root / "id02" / "000.png").read_bytes()
    (root / "id02" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "id05" / ".hidden.png").write_bytes(b"ignored")
    for attempt in range(2):  # the second load comes from the cache and still reports them
        _split._cache.clear()
        s = load_split(_cfg(root, n_private=3, test_per_identity=2))
        bad = [p for p in s.problems if "unreadable" in p]
        assert len(bad) == 2 and any("broken.jpg" in p for p in bad) and any("truncated.png" in p for p in bad)
        assert len(s.train) + len(s.test) + len(s.public) == 36


def _in_memory(cfg):
    """The old reader: every readable image of the folder in memory, split by the same code."""
    from pathlib import Path
    from mivis.data._images import read_image
    root = Path(cfg["data_dir"])
    names, per = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        faces = []
        for f in sorted(sub.iterdir()):
            try:
                faces.append(read_image(f, cfg["image_size"], cfg["channels"]))
            except Exception:
                pass
        if faces:
            names.append(sub.name)
            per.append(np.stack(faces))
    full = _split.DATA_PARAMS.validate(cfg, context="data")
    return _split._assemble(full, names, per, [])


def test_lazy_split_equals_the_in_memory_path(tmp_path, cache):
    root = _make_folder(tmp_path / "faces")
    (root / "id04" / "zz-broken.png").write_bytes(b"junk")
    cfg = _cfg(root, split_seed=3)
    lazy, mem = load_split(cfg), _in_memory(cfg)
    assert lazy.private_names == mem.private_names and lazy.public_names == mem.public_names
    assert lazy.fingerprint == mem.fingerprint  # runs made before the cache keep matching
    for s in ("train", "test", "public"):
        lx, mx = getattr(lazy, s).x, getattr(mem, s).x
        assert isinstance(lx, LazyImages) and isinstance(mx, torch.Tensor)
        assert lx.shape == mx.shape and len(lx) == len(mx) and lx.dtype == mx.dtype
        assert torch.equal(lx[:], mx) and torch.equal(getattr(lazy, s).y, getattr(mem, s).y)
    x, m = lazy.train.x, mem.train.x
    idx = torch.tensor([5, 0, 17, 5])
    assert torch.equal(x[3], m[3]) and torch.equal(x[-1], m[-1]) and torch.equal(x[2:9], m[2:9])
    assert torch.equal(x[idx], m[idx]) and torch.equal(x[idx.numpy()], m[idx])
    mask = lazy.train.y == 2
    assert torch.equal(x[mask], m[mask]) and torch.equal(lazy.private_images(2), mem.private_images(2))
    assert torch.equal(lazy.private_images(1, "test"), mem.private_images(1, "test"))
    part = lazy.train.take(mask)
    assert isinstance(part.x, LazyImages) and torch.equal(part.x[:], m[mask])
    assert torch.equal(x.view(slice(4, 8)).map(lambda t: t * 0)[:], torch.zeros(4, 3, 16, 16))
    from mivis.evaluation.judges import histeq  # the lighting judge's equalisation, applied per batch
    assert torch.equal(x.map(histeq)[idx], histeq(m[idx]))
    head = lazy.train.take(slice(0, 6))  # the layers analysis' Fisher sample selection
    assert isinstance(head.x, LazyImages) and torch.equal(head.x[:], m[:6]) and len(head) == 6
    # worker processes get the path, not a copy of the array
    import pickle
    assert len(pickle.dumps(x)) < 4 * len(x) * 8 + 1000
    with pytest.raises(IndexError):
        x[len(x)]
    # the fingerprint is memoised next to the cache entry: a fresh process gets it without hashing
    memo = json.loads(open(lazy.cache[:-len(".npy")] + ".fingerprints.json").read())
    assert lazy.fingerprint in memo.values()


def test_streamed_training_equals_in_memory_training(tmp_path, cache):
    from torch import nn
    from mivis.data import Subset
    from mivis.models import Classifier
    from mivis.train import TRAIN_PARAMS, Trainer
    root = _make_folder(tmp_path / "faces", n_ids=8, per_id=12)
    split = load_split(_cfg(root, n_private=4, test_per_identity=2))
    lazy = split.train
    mem = Subset(lazy.x[:], lazy.y)
    cfg = TRAIN_PARAMS.validate({"epochs": 2, "batch_size": 8, "device": "cpu", "augment": "standard"})
    hist = []
    for subset, test in ((lazy, split.test), (mem, Subset(split.test.x[:], split.test.y))):
        torch.manual_seed(0)
        body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        hist.append(Trainer(Classifier(body, 8, 4), subset, cfg, test=test).fit())
    assert len(hist[0]) == 2
    for a, b in zip(*hist):  # same seeded order and augmentation, batch for batch
        assert a["loss"] == b["loss"] and a["train_acc"] == b["train_acc"] and a["test_acc"] == b["test_acc"]


def test_224px_folder_end_to_end_train_prior_attack_evaluate(tmp_path, cache, ws):
    from mivis.attacks import attack_run
    from mivis.priors import train_prior
    from mivis.train import train_run
    root = _make_folder(tmp_path / "faces", n_ids=4, per_id=2, size=(40, 40))
    data = {"dataset": "folder", "data_dir": str(root), "n_private": 2, "test_per_identity": 1,
            "image_size": 224, "channels": 3}
    # ResNets are the fastest timm families at 224 px on a CPU (depthwise convolutions are slow there)
    quick = {"device": "cpu", "epochs": 1, "batch_size": 2, "augment": "light"}
    t0 = time.monotonic()
    target = train_run("target", {**quick, "arch": "resnet18"}, data, workspace=ws)
    t1 = time.monotonic()
    judge = train_run("eval", {**quick, "arch": "resnet34"}, data, workspace=ws)
    t2 = time.monotonic()
    assert target.config["model"]["img_size"] == 224 and target.status == judge.status == "done"
    prior = train_prior("gmi", {"device": "cpu", "iterations": 1, "batch_size": 2, "g_width": 4, "d_width": 4},
                        data, workspace=ws)
    assert prior.config["net"]["img_size"] == 224
    t3 = time.monotonic()
    rec = attack_run("gmi", target.id, prior.id, [0, 1], 1, {"iterations": 2, "device": "cpu"},
                     eval_run=judge.id, workspace=ws, n_boot=50)
    assert rec.status == "done" and rec.metrics["attack_acc_top1"]["n"] == 2
    from mivis.weights import load_tensors
    x = load_tensors(rec.file("reconstructions.safetensors"))[0]["x"]
    assert x.shape == (2, 3, 224, 224)
    print(f"target {t1 - t0:.1f}s eval {t2 - t1:.1f}s prior {t3 - t2:.1f}s attack+eval {time.monotonic() - t3:.1f}s")


@pytest.mark.parametrize("size", [128, 224, 256])
def test_prior_nets_at_large_sizes(size):
    from mivis.priors.nets import Discriminator, Generator, fold_batchnorm
    G, D = Generator(16, size, 3, 4).eval(), Discriminator(size, 3, 4, 5, "classes").eval()
    for bn in G.norms:
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    z = torch.randn(2, 16)
    x = G(z)
    assert x.shape == (2, 3, size, size) and D(x).shape == (2,)
    assert G.s0 == (7 if size == 224 else 4)
    assert torch.allclose(fold_batchnorm(G)(z), x, atol=1e-5)


def test_gan_batches_follow_pseudo_label_rows_with_workers(tmp_path, cache):
    from mivis.data import batches
    root = _make_folder(tmp_path / "faces", n_ids=4, per_id=10)
    x = load_split(_cfg(root, n_private=2, test_per_identity=2)).public.x
    rows = torch.tensor([3, 3, 0, 7, 19])  # pair index -> image index, as PLG-MI's (image, label) pairs
    draws = [torch.tensor([0, 4, 2]), torch.tensor([1, 3])]
    got = list(batches(x, None, iter(draws), torch.device("cpu"), rows=rows, workers=2))
    assert len(got) == 2
    for (xb, idx), d in zip(got, draws):
        assert torch.equal(idx, d) and torch.equal(xb, x[rows[d]])
