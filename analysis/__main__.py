"""``python -m analysis report RESULTS_DIR --out REPORT_DIR [--ours NAME] [--family m=f]
[--no-tsne] [--complete-only]``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis",
                                     description="figures, tables and statistics from results")
    subs = parser.add_subparsers(dest="command", required=True)
    p = subs.add_parser("report", help="write every figure/table the results support + index")
    p.add_argument("results", help="folder holding run folders (searched recursively)")
    p.add_argument("--out", default="report", help="folder the report is written to "
                   "(default: report)")
    p.add_argument("--ours", default=None, metavar="NAME[,NAME...]",
                   help="the method(s) compared with the baselines, with the ablations and "
                        "plug-ins they declare as their variants (default: each method that "
                        "declares family 'ours' and is no variant of another)")
    p.add_argument("--family", action="append", default=[], metavar="METHOD=FAMILY",
                   help="override a baseline's family ('active learning' or 'self-training')")
    p.add_argument("--no-tsne", action="store_true", help="skip the t-SNE figure (slowest)")
    p.add_argument("--complete-only", action="store_true",
                   help="leave out unfinished runs and the seeds some method has not finished "
                        "(a study still running: like-for-like seeds)")
    args = parser.parse_args(argv)
    problem = _bad_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    from .report import build_report

    ours = args.ours.split(",") if args.ours and "," in args.ours else args.ours
    fam = dict(kv.split("=", 1) for kv in args.family)
    rep = build_report(args.results, args.out, ours, fam, tsne=not args.no_tsne,
                       complete=args.complete_only)
    print(rep.problems + ("" if rep.problems.endswith("no loading problems")
                          else " (listed at the top of the index)"))
    print(f"made {len(rep.made)}, skipped {len(rep.skipped)}; index: {rep.out / 'index.html'}")
    for name, why in rep.skipped:
        print(f"  skipped {name}: {why}")
    return 0


def _bad_arguments(args) -> str | None:
    """One line for arguments that cannot give a report, checked before any work."""
    from pathlib import Path

    from .stats import AL, ST

    if not Path(args.results).is_dir():
        return f"results folder {args.results!r} does not exist"
    for item in args.family:
        method, _, family = item.partition("=")
        if not method or family not in (AL, ST):
            return (f"--family expects METHOD=FAMILY with FAMILY {AL!r} or {ST!r}, "
                    f"got {item!r}")
    return None


if __name__ == "__main__":
    sys.exit(main())
