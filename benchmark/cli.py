"""``python -m benchmark``: run one experiment, or list what the suite knows."""
from __future__ import annotations

import argparse
import sys

from .registry import UnknownNameError

SUBCOMMANDS = {}


def subcommand(name: str, help: str):
    """Register ``add_arguments(parser)`` + ``main(args)`` pairs; later issues add their own."""
    def add(fn):
        SUBCOMMANDS[name] = (help, fn)
        return fn
    return add


RUN_DESCRIPTION = """\
Run one experiment: a method on a dataset for one seed and setting, round by round (round 0
trains on the initial labels, rounds 1..T on what the method queried), writing records to a run
folder under --out. A finished run is never recomputed; a killed one resumes after its last
finished round. Without --preset the `cpu` preset runs: minutes per run on a 2-core CPU
(about 6 for TREC with one thread, twice that with pseudo-labels); `--preset smoke` takes
seconds on an idle machine."""


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    from .data import DATASETS
    from .presets import PRESETS
    from .settings import SETTINGS

    p.description = RUN_DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--method", required=True, metavar="NAME",
                   help="the method to run (required); `python -m benchmark list` shows all, "
                        "e.g. entropy, actune")
    p.add_argument("--dataset", required=True, metavar="NAME|PATH",
                   help=f"a registered dataset ({', '.join(DATASETS)}) or a local folder/file "
                        "with text and label columns (required)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the pool sample, initial labels, model init and training "
                        "(default: 0)")
    p.add_argument("--setting", default="al", metavar="|".join(SETTINGS),
                   help="; ".join(f"{n}: {s.description.split(':', 1)[-1].strip()}"
                                  for n, s in SETTINGS.items()) + " (default: al)")
    p.add_argument("--preset", default="cpu", metavar="|".join(PRESETS),
                   help="protocol and training budget: cpu = MiniLM on a pool of at most "
                        "10,000 texts, minutes per run on a CPU; smoke = 30 + 2 x 30 labels, seconds; paper = "
                        "the paper's protocol, for GPUs (default: cpu)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding NAME/train.jsonl for registered datasets (default: "
                        "$ACTUNE_DATA, else the Hugging Face hub)")
    p.add_argument("--out", default="runs", metavar="DIR",
                   help="results folder; the run writes OUT/<method>_<dataset>_<setting>_s<seed>"
                        "_<hash>/ (default: runs)")
    p.add_argument("--device", default=None, metavar="cuda|cpu",
                   help="where to train (default: cuda when present, else cpu)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset key (rounds, budget, lr, backbone, threads, ...) or a "
                        "method parameter (beta, ...); repeatable, e.g. --set rounds=3 --set "
                        "threads=1 (default: none)")


@subcommand("run", "run one (method, dataset, seed, setting) experiment")
def cmd_run(args):
    from .config import parse_overrides, resolve
    from .loop import Run

    cfg = resolve(args.method, args.dataset, args.seed, args.setting, args.preset,
                  parse_overrides(args.overrides))
    run = Run(cfg, args.out, args.data_dir, args.device)
    run.check()  # a bad backbone or dataset fails here, before the header and any folder
    print(f"{cfg['method']} on {cfg['dataset_name']} (seed {cfg['seed']}, {cfg['setting']}, "
          f"preset {cfg['preset']}, backbone {cfg['backbone']}) -> {run.store.path}")
    records = run.run()
    last = records[-1]
    print(f"final: {last['n_labels']} labels, test acc {last['test_acc']:.4f}, "
          f"macro-F1 {last['test_f1']:.4f}")


cmd_run.arguments = add_run_arguments


@subcommand("list", "list methods, datasets, settings and presets with their parameters")
def cmd_list(args):
    from methods import METHODS

    from .data import DATASETS
    from .presets import PRESETS
    from .settings import SETTINGS

    print("methods:")
    for name, cls in METHODS.items():
        params = ", ".join(f"{k}={v}" for k, v in cls.params.items())
        print(f"  {name:16s} settings: {'/'.join(cls.settings):13s} cost: {cls.cost}"
              + (f"\n  {'':16s} params: {params}" if params else ""))
    print("datasets:")
    for name, s in DATASETS.items():
        hub = f"{s.hub[0]}" + (f"/{s.hub[1]}" if s.hub and s.hub[1] else "") if s.hub else "-"
        print(f"  {name:16s} dev {s.dev_size}, max tokens {s.max_length}, "
              f"unlabelled batch {s.batch_size_unlabelled}, hub {hub}")
    print("settings:")
    for name, s in SETTINGS.items():
        print(f"  {name:16s} {s.description}")
    print("presets:")
    for name, p in PRESETS.items():
        print(f"  {name:16s} {p.description}")
        print("   " + ", ".join(f"{k}={v}" for k, v in p.values.items()))
        for ds, extra in p.per_dataset.items():
            print(f"   on {ds}: " + ", ".join(f"{k}={v}" for k, v in extra.items()))
        if p.method_params:
            print("   method parameters: " + ", ".join(f"{k}={v}" for k, v in p.method_params.items()))
        for ds, extra in p.dataset_method_params.items():
            print(f"   method parameters on {ds}: " + ", ".join(f"{k}={v}" for k, v in extra.items()))


@subcommand("grid", "launch a grid of runs (SLURM, local or debug), show its status, retry")
def cmd_grid(args):
    from .grid import main as grid_main

    return grid_main(args)


def _grid_arguments(p):
    from .grid import add_arguments

    add_arguments(p)


cmd_grid.arguments = _grid_arguments


@subcommand("bench", "time one round of a method phase by phase (a benchmark, not a test)")
def cmd_bench(args):
    from . import bench

    bench.main(args)


def _bench_arguments(p):
    from .bench import add_arguments

    add_arguments(p)


cmd_bench.arguments = _bench_arguments


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark",
                                     description="actune-bench: active self-training benchmark")
    subs = parser.add_subparsers(dest="command", required=True)
    for name, (help, fn) in SUBCOMMANDS.items():
        p = subs.add_parser(name, help=help)
        getattr(fn, "arguments", lambda p: None)(p)
        p.set_defaults(func=fn)
    args = parser.parse_args(argv)
    from .backbones import amp_auto_pin
    from .results import RunError

    try:
        amp_auto_pin()                   # a bad ACTUNE_AMP_AUTO fails before any work
        return args.func(args) or 0
    except (UnknownNameError, ValueError, RunError, OSError) as exc:
        print("error: " + " ".join(str(exc).strip().splitlines()), file=sys.stderr)
        return 2
