"""Command line: ``python -m benchmark grid launch|status|retry GRID --out DIR``."""
from __future__ import annotations

import sys

from ..config import ConfigError, parse_overrides
from .launch import launch
from .spec import Grid
from .status import FAILED_STATE, format_status, grid_status


def add_arguments(p) -> None:
    subs = p.add_subparsers(dest="grid_command", required=True)
    for name, help in (("launch", "submit the grid's cells that were never launched"),
                       ("retry", "relaunch the grid's failed and incomplete cells only"),
                       ("status", "each cell's state (not launched, queued, running, "
                                  "incomplete, done, failed) and the worker-hours left")):
        q = subs.add_parser(name, help=help)
        q.add_argument("grid", help="grid file (YAML), e.g. grids/smoke.yaml")
        q.add_argument("--out", default="runs", help="results folder (run folders go here)")
        q.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="override for every cell (as in `run --set`)")
        q.add_argument("--data-dir", default=None)
        if name == "status":
            q.add_argument("--lines", type=int, default=3, help="traceback lines per failed cell")
            continue
        q.add_argument("--executor", default="slurm", choices=("slurm", "local", "debug"))
        q.add_argument("--wait", action="store_true", help="return when no cell is running")
        q.add_argument("--dry-run", action="store_true", help="print what would be submitted")
        q.add_argument("--workers", type=int, default=None, help="local: parallel workers")
        q.add_argument("--only", action="append", default=[], metavar="PATTERN",
                       help="run only the cells whose name matches this shell pattern "
                            "(repeatable), e.g. --only '*_sst2_ssal_s2_*' --only 'bald_*'")
        q.add_argument("--allow-mixed-precision", action="store_true",
                       help="local/debug: run cells here even when this machine resolves "
                            "amp=auto to another precision (bf16 or fp32) than the grid's "
                            "finished cells used")
        q.add_argument("--partition")
        q.add_argument("--time", type=int, help="minutes per cell (SLURM time limit)")
        q.add_argument("--mem-gb", type=float, dest="mem_gb")
        q.add_argument("--cpus", type=int, dest="cpus_per_task")
        q.add_argument("--gres", help="e.g. gpu:1")
        q.add_argument("--account")
        q.add_argument("--qos")
        q.add_argument("--array-parallelism", type=int, dest="array_parallelism")
        q.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                       help="extra sbatch parameter, e.g. --sbatch exclude=node7")


def main(args) -> int:
    grid = Grid.load(args.grid).with_overrides(parse_overrides(args.overrides))
    if args.grid_command == "status":
        print(format_status(grid_status(grid.cells(args.out)), args.lines))
        return 0
    flags = {k: getattr(args, k) for k in ("partition", "time", "mem_gb", "cpus_per_task",
                                           "gres", "account", "qos", "array_parallelism")}
    if args.sbatch:
        flags["additional"] = {**grid.slurm.get("additional", {}), **parse_overrides(args.sbatch)}
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    launch(grid, args.out, args.executor, retry=args.grid_command == "retry", wait=args.wait,
           dry_run=args.dry_run, flags=flags, workers=args.workers, data_dir=args.data_dir,
           allow_mixed_precision=args.allow_mixed_precision, only=args.only)
    if (args.wait or args.executor != "slurm") and not args.dry_run:
        statuses = grid_status(grid.cells(args.out))
        print(format_status(statuses))
        failed = [s for s in statuses if s.state == FAILED_STATE]
        if failed:
            print(f"error: grid {grid.name}: {len(failed)} of {len(statuses)} cells failed "
                  f"(tracebacks above; `grid retry` runs them again)", file=sys.stderr)
            return 2
    return 0
