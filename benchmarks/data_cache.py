"""Folder data through the on-disk cache: first load (decode + resize in workers) vs reuse, and memory.

Generates N JPEG faces (random noise, --src px) in identity folders under a temporary folder (or uses
--folder), then loads the split three times, each in a fresh process: the first builds the cache, the
second reuses it, the third reads one epoch of training batches through the DataLoader. Prints seconds
and peak resident memory of each, beside the float32 size the old in-memory path needed.

  python benchmarks/data_cache.py --images 10000 --size 224          # ~1.5 GB of cache
  python benchmarks/data_cache.py --folder PATH --size 224 --channels 3

Writes JSON to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_folder(root: Path, n: int, per_id: int, src: int) -> None:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"id{i // per_id:05d}"
        if i % per_id == 0:
            d.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (src // 8, src // 8, 3), dtype=np.uint8)
        Image.fromarray(img).resize((src, src), Image.BILINEAR).save(d / f"{i:06d}.jpg", quality=90)


def phase(args) -> dict:
    """One load in this process: seconds and peak RSS (what a fresh job pays)."""
    import torch
    from mivis.data import batches, load_split
    cfg = {"dataset": "folder", "data_dir": args.folder, "image_size": args.size, "channels": args.channels,
           "n_private": args.private, "test_per_identity": 2}
    t0 = time.monotonic()
    split = load_split(cfg)
    out = {"phase": args.phase, "load_seconds": round(time.monotonic() - t0, 2),
           "n_images": len(split.train) + len(split.test) + len(split.public)}
    if args.phase == "epoch":
        t0, n = time.monotonic(), 0
        pub = split.public
        order = torch.randperm(len(pub))
        bs = 128
        for xb, _ in batches(pub.x, pub.y, (order[i:i + bs] for i in range(0, len(pub), bs)), torch.device("cpu")):
            n += len(xb)
        out.update(epoch_seconds=round(time.monotonic() - t0, 2), epoch_images=n)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--per-id", type=int, default=20)
    ap.add_argument("--src", type=int, default=250, help="side of the generated JPEGs")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--private", type=int, default=100)
    ap.add_argument("--folder", default=None, help="an existing folder instead of generated images")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MIVIS_CACHE": str(Path(tmp) / "cache")}
        if not args.folder:
            t0 = time.monotonic()
            make_folder(Path(tmp) / "faces", args.images, args.per_id, args.src)
            print(f"generated {args.images} JPEGs in {time.monotonic() - t0:.1f} s", file=sys.stderr)
            args.folder = str(Path(tmp) / "faces")
        rows = []
        for ph in ("build", "reuse", "epoch"):
            cmd = [sys.executable, __file__, "--phase", ph, "--folder", args.folder, "--size", str(args.size),
                   "--channels", str(args.channels), "--private", str(args.private)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
        n = rows[0]["n_images"]
        cache_mb = sum(f.stat().st_size for f in (Path(tmp) / "cache").rglob("*")) / 2**20
    result = {"n_images": n, "size": args.size, "channels": args.channels, "workers": os.environ.get(
        "MIVIS_DATA_WORKERS", min(8, os.cpu_count() or 1)), "cpus": os.cpu_count(), "phases": rows,
        "cache_mb": round(cache_mb), "float32_in_memory_mb": round(n * args.channels * args.size ** 2 * 4 / 2**20),
        "build_images_per_second": round(n / max(rows[0]["load_seconds"], 1e-9)),
        "reuse_speedup": round(rows[0]["load_seconds"] / max(rows[1]["load_seconds"], 1e-9), 1),
        "machine": platform.node(), "python": platform.python_version()}
    print(json.dumps(result, indent=1))
    out = ROOT / "benchmarks" / "results" / f"data_cache-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
