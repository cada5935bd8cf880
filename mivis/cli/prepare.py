"""`mivis prepare celeba`: arrange a local CelebA copy into identity folders + private/public lists."""
from __future__ import annotations

from ._common import console_reporter, print_json


def register(sub) -> None:
    p = sub.add_parser("prepare", help="arrange a large face data set you have on disk for --dataset folder")
    which = p.add_subparsers(dest="which", metavar="DATASET", required=True)
    c = which.add_parser("celeba", help="CelebA (aligned images + identity_CelebA.txt), GMI-protocol split")
    c.add_argument("--images", required=True, help="folder of CelebA's aligned images (img_align_celeba)")
    c.add_argument("--identities", required=True, help="CelebA's identity_CelebA.txt")
    c.add_argument("--out", required=True, help="new folder to write OUT/<identity>/<image> and the lists into")
    c.add_argument("--private", type=int, default=1000, help="private identities: those with most images")
    c.add_argument("--public", type=int, default=1000, help="public identities: the next ones by image count")
    c.add_argument("--crop", type=int, default=0,
                   help="write centre-cropped copies of this side (the papers use 108) instead of links")
    c.add_argument("--workers", type=int, default=None, help="processes for --crop (default: all cores)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run)


def run(args) -> int:
    import sys
    from ..celeba import arrange_celeba
    for name in ("private", "public"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be at least 1", file=sys.stderr)
            return 2
    res = arrange_celeba(args.images, args.identities, args.out, n_private=args.private, n_public=args.public,
                         crop=args.crop, workers=args.workers, reporter=console_reporter(quiet=args.json))
    if args.json:
        print_json(res)
        return 0
    print(f"{res['images']} images of {res['private']} private + {res['public']} public identities in {res['out']}")
    print(f"next: --dataset folder --data-dir {res['out']} --private-list {res['out']}/private.txt "
          f"--public-list {res['out']}/public.txt --channels 3")
    for p in res["problems"][:20]:
        print(f"warning  {p}")
    if len(res["problems"]) > 20:
        print(f"warning  ... and {len(res['problems']) - 20} more")
    return 0
