"""`mivis data`: the face data and its private/public split."""
from __future__ import annotations

from ..data import DATA_PARAMS, load_split
from ._common import console_reporter, print_json


def register(sub) -> None:
    p = sub.add_parser("data", help="show the face data set and its seeded private/public split")
    DATA_PARAMS.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print the full split record as JSON")
    p.add_argument("--export", metavar="DIR", default=None, help="write the split's file lists to DIR: "
                   "private_train.txt, private_heldout.txt (train outside mivis without these), public.txt and "
                   "classes.txt (the class order mivis expects)")
    p.set_defaults(func=run)


def run(args) -> int:
    # folder data: the first call decodes and resizes every image into the cache (progress on stderr)
    split = load_split(DATA_PARAMS.from_namespace(args), reporter=console_reporter(quiet=args.json))
    rec = split.record()
    if args.export:
        from ..data._export import export_split
        written = export_split(split, args.export)
        if not args.json:
            print(f"wrote {', '.join(str(p) for p in written.values())}")
    if args.json:
        print_json(rec)
        return 0
    c, h, w = split.image_shape
    print(f"dataset        {split.config['dataset']}  ({h}x{w}, {c} channel{'s' if c > 1 else ''})")
    print(f"split seed     {split.config['split_seed']}   fingerprint {split.fingerprint[:16]}")
    print(f"private        {len(split.private_names)} identities: {', '.join(split.private_names)}")
    print(f"               {rec['n_train']} train / {rec['n_test']} held-out test images")
    print(f"public         {len(split.public_names)} identities, {rec['n_public']} images: "
          f"{', '.join(split.public_names)}")
    if split.cache:
        print(f"cache          {split.cache}")
    if split.config["dataset"] == "orl":
        print("credit         ORL faces: AT&T Laboratories Cambridge")
    for p in split.problems:
        print(f"warning        {p}")
    return 0
