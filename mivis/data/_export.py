"""The split's file lists: which images mivis trains on, holds out and gives the attacker, so a model
trained outside mivis can avoid the held-out images (`python -m mivis data --export DIR`).

Files written (one path a line, relative to the data's root, which the first comment line names):
  private_train.txt     the private identities' training images (a target / E learns from these)
  private_heldout.txt   the private identities' held-out images (natural accuracy is measured on these)
  public.txt            the public identities' images (the attacker's data, the priors' training set)
  classes.txt           the private identities in the split's order: the class order mivis expects
"""
from __future__ import annotations

import os
from pathlib import Path

FILES = {"train": "private_train.txt", "test": "private_heldout.txt", "public": "public.txt"}


def split_files(split) -> tuple[str, dict[str, list[str]]]:
    """(root, {"train"|"test"|"public": relative paths}) of a FaceSplit's images, in the subsets' row order."""
    from ._split import DataError
    cfg = split.config
    if cfg["dataset"] == "folder":
        from ._cache import load_folder, scan
        from ._folder import allowed_path
        root = allowed_path(cfg["data_dir"], "data_dir")
        cached = load_folder(root, cfg["image_size"], cfg["channels"])  # the cache the split was read from
        names, files, _ = scan(root)
        rel = [f"{n}/{f}" for n, fs in zip(names, files) for f in fs]
        rows = dict(zip(cached.names, cached.rows))

        def path(name: str, j: int) -> str:
            return rel[int(rows[name][j])]
    elif cfg["dataset"] == "orl":
        from ._orl import orl_folder
        root = orl_folder()

        def path(name: str, j: int) -> str:  # ORL's files are s<k>/1.pgm .. s<k>/10.pgm, read in that order
            return f"{name}/{j + 1}.pgm"
    else:
        root = Path("<synthetic: generated in memory, no files>")

        def path(name: str, j: int) -> str:
            return f"{name}/{j}"
    if not split.members:
        raise DataError("this split does not record its members; load it again with load_split")
    return str(root), {k: [path(n, j) for n, j in split.members[k]] for k in FILES}


def export_split(split, out: str | Path) -> dict[str, Path]:
    """Write the split's file lists (and classes.txt) into folder `out` (created); returns the paths."""
    from ._split import DataError
    root, lists = split_files(split)
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {out}: {e.strerror or e}") from None
    head = (f"# root: {root}\n# mivis split {split.fingerprint[:16]} ({split.config['dataset']}, split_seed "
            f"{split.config['split_seed']}, {split.config['test_per_identity']} held-out per identity)\n")
    written = {}
    texts = {name: head + "\n".join(lists[k]) + "\n" for k, name in FILES.items()}
    texts["classes.txt"] = ("# the private identities in the split's order: output c of a target means this "
                            "file's line c (import-model --class-order split)\n" + "\n".join(split.private_names)
                            + "\n")
    for name, text in texts.items():
        p = out / name
        tmp = p.with_name(f".{name}.tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, p)
        except OSError as e:
            raise DataError(f"cannot write {p}: {e.strerror or e}") from None
        written[name] = p
    return written
