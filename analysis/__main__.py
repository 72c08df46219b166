"""``python -m analysis report RESULTS_DIR --out REPORT_DIR [--ours NAME] [--family m=f]
[--no-tsne] [--complete-only]`` and ``python -m analysis compare BEFORE AFTER --table NAME``."""
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
    c = subs.add_parser("compare", help="one table of two reports side by side (what a "
                        "protocol or code change moved)",
                        description="Join one table of two report folders on its leading "
                                    "text columns (dataset, method, ...) and print it as "
                                    "Markdown: each column twice and, when numeric, its change.")
    c.add_argument("before", help="report folder of the earlier study")
    c.add_argument("after", help="report folder of the later study")
    c.add_argument("--table", required=True, metavar="NAME",
                   help="a table both reports wrote, e.g. pseudo_gain or ttest_per_dataset "
                        "(the name in tables/table_NAME.csv)")
    c.add_argument("--columns", default=None, metavar="COL[,COL...]",
                   help="the columns to compare (default: every column both tables have)")
    c.add_argument("--on", default=None, metavar="COL[,COL...]",
                   help="the columns that name a row (default: the leading text columns, up "
                        "to the first one holding numbers), e.g. setting,dataset,round")
    c.add_argument("--labels", default="before,after", metavar="A,B",
                   help="what to call the two studies in the headers (default: before,after)")
    c.add_argument("--out", default=None, metavar="DIR",
                   help="also write the table there as .md, .tex and .csv")
    args = parser.parse_args(argv)
    problem = _bad_arguments(args) if args.command == "report" else _bad_compare(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.command == "compare":
        return _compare(args)

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


def _bad_compare(args) -> str | None:
    """One line for a comparison that cannot be made, checked before any table is read."""
    from .compare import table_path

    for folder in (args.before, args.after):
        if not table_path(folder, args.table).is_file():
            return f"no table {args.table!r} in report {folder!r} (expected " \
                   f"{table_path(folder, args.table)})"
    if len(args.labels.split(",")) != 2 or not all(args.labels.split(",")):
        return f"--labels expects two names A,B, got {args.labels!r}"
    return None


def _compare(args) -> int:
    from .compare import compare_reports
    from .tables import to_markdown, write

    columns = args.columns.split(",") if args.columns else None
    on = args.on.split(",") if args.on else None
    try:
        table = compare_reports(args.before, args.after, args.table, columns,
                                tuple(args.labels.split(",")), on)
    except ValueError as e:  # columns or keys the two tables do not share, or keys not unique
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(to_markdown(table), end="")
    if args.out:
        name = f"compare_{args.table.removeprefix('table_')}"
        write(table, args.out, name, f"{args.table}: {args.before} vs {args.after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
