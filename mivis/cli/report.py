"""`mivis report`: generate the study report (markdown + SVG figures) from finished sweeps."""
from __future__ import annotations

from pathlib import Path

from ._common import workspace


def register(sub) -> None:
    p = sub.add_parser("report", help="write the findings report from one or more finished sweeps")
    p.add_argument("sweeps", nargs="+", help="sweep names (the `name` in their grid files)")
    p.add_argument("--out", default="docs/findings.md", help="markdown file to write (figures go beside it)")
    p.add_argument("--title", default="What mivis finds on the embedded ORL data")
    p.add_argument("--notes", default="", help="a paragraph placed under the title (e.g. the device)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report import build_report
    out = build_report(workspace(args), args.sweeps, Path(args.out), args.title, args.notes)
    print(f"wrote {out}")
    return 0
