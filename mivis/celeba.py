"""Arrange a CelebA copy the user has on disk into the folder layout mivis reads, GMI-protocol style.

CelebA ships as one folder of aligned images plus `identity_CelebA.txt` ("000001.jpg 2880" per
line). The MI papers' protocol takes the 1,000 identities with the most images as private and
other identities as public, and crops the aligned 178x218 faces to the central 108x108 before
resizing to 64 px. This writes `OUT/<identity>/<image>` (symbolic links, or centre-cropped copies
with `crop`) and `OUT/private.txt` / `OUT/public.txt` for `--private-list` / `--public-list`.
Nothing downloads: the images and the identity file must already be on disk.
"""
from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .data import DataError
from .progress import NULL, Reporter


def read_identity_file(path: str | Path) -> dict[str, list[str]]:
    """identity -> image file names, from CelebA's `identity_CelebA.txt`."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text().splitlines()
    except OSError as e:
        raise DataError(f"cannot read the identity file {p}: {e.strerror or e}") from None
    out: dict[str, list[str]] = defaultdict(list)
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{p} line {n}: expected 'IMAGE IDENTITY', got {line.strip()!r}")
        out[parts[1]].append(parts[0])
    if not out:
        raise DataError(f"{p}: no 'IMAGE IDENTITY' lines")
    return dict(out)


def _crop_copy(job: tuple[str, str, int]) -> str | None:
    src, dst, crop = job
    from PIL import Image
    from .data._images import centre_square
    try:
        with Image.open(src) as img:
            centre_square(img, crop).save(dst, quality=95)
        return None
    except Exception as e:  # PIL raises many types for bad files: report, go on
        return f"{src}: {type(e).__name__}: {e}"


def arrange_celeba(images: str | Path, identity_file: str | Path, out: str | Path, *, n_private: int = 1000,
                   n_public: int = 1000, crop: int = 0, workers: int | None = None,
                   reporter: Reporter = NULL) -> dict:
    """Private = the n_private identities with most images (ties: smaller id); public = the next
    n_public. Returns counts and problems; refuses to write into a non-empty folder."""
    images, out = Path(images).expanduser(), Path(out).expanduser()
    if not images.is_dir():
        raise DataError(f"image folder {images} does not exist")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"output folder {out} is not empty; choose a new folder (nothing was changed)")
    ids = read_identity_file(identity_file)
    ranked = sorted(ids, key=lambda i: (-len(ids[i]), int(i) if i.isdigit() else i))
    if len(ranked) < n_private + 1:
        raise DataError(f"the identity file lists {len(ranked)} identities; {n_private} private + at least "
                        "1 public are needed")
    private, public = ranked[:n_private], ranked[n_private:n_private + n_public]
    jobs, problems, linked, failed = [], [], 0, 0
    out.mkdir(parents=True, exist_ok=True)
    for ident in private + public:
        d = out / ident
        d.mkdir()
        for name in ids[ident]:
            src = images / name
            if not src.is_file():
                problems.append(f"missing image {src} (identity {ident})")
                continue
            if crop:
                jobs.append((str(src), str(d / name), crop))
            else:
                os.symlink(src.resolve(), d / name)
                linked += 1
    if crop:
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
            for n, err in enumerate(pool.map(_crop_copy, jobs, chunksize=64), 1):
                if err:
                    problems.append(err)
                    failed += 1
                if n % 500 == 0 or n == len(jobs):
                    reporter.check()
                    reporter.report(phase="arrange", done=n, total=len(jobs))
    (out / "private.txt").write_text("\n".join(private) + "\n")
    (out / "public.txt").write_text("\n".join(public) + "\n")
    return {"private": len(private), "public": len(public), "images": linked + len(jobs) - failed,
            "problems": problems, "out": str(out)}
