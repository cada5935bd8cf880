"""A tiny deterministic synthetic face set for tests: identity = face geometry, image = nuisance."""
from __future__ import annotations

import numpy as np


def synthetic_identities(n_ids: int, per_id: int, size: int, channels: int,
                         seed: int = 1234) -> tuple[list[str], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    names, per = [], []
    for k in range(n_ids):
        # identity traits: face width/height, eye spacing and height, mouth width, skin tone
        fw, fh = rng.uniform(0.28, 0.4), rng.uniform(0.35, 0.45)
        eye_dx, eye_y = rng.uniform(0.1, 0.18), rng.uniform(0.38, 0.46)
        mouth_w, tone = rng.uniform(0.06, 0.16), rng.uniform(0.55, 0.85)
        faces = []
        for _ in range(per_id):
            cx, cy = 0.5 + rng.normal(0, 0.02), 0.52 + rng.normal(0, 0.02)
            light = rng.uniform(0.8, 1.1)
            img = np.full((size, size), 0.15, np.float32)
            face = ((xx - cx) / fw) ** 2 + ((yy - cy) / fh) ** 2 < 1
            img[face] = tone * light
            for ex in (cx - eye_dx, cx + eye_dx):
                img[((xx - ex) ** 2 + (yy - (cy - 0.5 + eye_y)) ** 2) < 0.0025] = 0.1
            mouth = (np.abs(xx - cx) < mouth_w) & (np.abs(yy - (cy + 0.18)) < 0.02)
            img[mouth] = 0.25
            img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
            u8 = (img * 255).astype(np.uint8)[None]
            faces.append(np.repeat(u8, channels, 0) if channels > 1 else u8)
        names.append(f"synth{k}")
        per.append(np.stack(faces))
    return names, per
