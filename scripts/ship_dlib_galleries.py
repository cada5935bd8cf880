"""Write assets/dlib/<name>.npy: dlib's embeddings of the private training images of the default ORL splits
(32 and 64 px), so the first attack judged by dlib does not embed 140 gallery images first.

  python scripts/ship_dlib_galleries.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from mivis.data import load_split
    from mivis.evaluation.dlib_judge import SHIPPED_GALLERIES, embed, gallery_name
    SHIPPED_GALLERIES.mkdir(parents=True, exist_ok=True)
    for size in (32, 64):
        split = load_split({"dataset": "orl", "image_size": size})
        path = SHIPPED_GALLERIES / gallery_name(split)
        arr = embed(split.train.x)
        with open(path, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        print(f"ORL {size} px: {arr.shape[0]} embeddings -> {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
