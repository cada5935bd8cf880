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
    p.add_argument("--compare-with", default="", metavar="OLD_JSON",
                   help="an earlier report's findings.json of the same grids: append which verdicts held and which "
                        "changed")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..params import ParamError
    from ..report import build_report
    if args.compare_with and not Path(args.compare_with).is_file():
        raise ParamError(f"--compare-with: no report file {args.compare_with}")
    if args.compare_with:  # refused before the report is built, not after
        from ..report.versions import read_findings
        read_findings(Path(args.compare_with))
    try:
        out = build_report(workspace(args, create=False), args.sweeps, Path(args.out), args.title, args.notes)
    except OSError as e:  # e.g. a read-only folder: one line, not a traceback
        raise ParamError(f"cannot write the report {args.out}: {e.strerror or e}") from None
    if args.compare_with:
        from ..report.versions import compare_files
        new_json = out.parent / (out.stem + ".json")
        with open(out, "a") as f:
            f.write(f"\n## Against the earlier report ({args.compare_with})\n\n"
                    + compare_files(Path(args.compare_with), new_json) + "\n")
    print(f"wrote {out}")
    return 0
