"""Estimate a grid's worker-hours before launching it, from costs measured here and now.

A cell's time is almost all training steps (their count is one rule,
``benchmark.training.training_steps``), dev evaluations during training and each round's
selection (pool inference, MC dropout, k-means, ...). Per dataset of the grid, on its preset,
this script measures:

- from a reference run (Entropy, AL): round 0 (the model every selection below starts from),
  seconds per labelled-only training step, per dev evaluation and per test evaluation;
- per method: its selections for rounds 1 and 2 (the second shows what it caches across
  rounds) and, if it returned pseudo-labels, seconds per training step with the method's own
  objective and a pseudo-labelled batch;
- for the weak setting: the number of weakly-labelled texts;

then adds up every cell's rounds with the protocol's own step counts. Both clocks are measured:
wall seconds, and the process's CPU seconds, which on a busy shared machine say what a dedicated
core would take. Rounds after the second select as the second did (the pool is inferred whole
each round). Every round from 1 on of a cell whose method pseudo-labelled in round 1, or runs only
where pseudo-labels are allowed (it may start in round 2), is costed with pseudo-labels: an
upper bound for methods that pseudo-label in some rounds only.

    python scripts/grid_cost.py grids/cpu-study.yaml --data-dir ../shared/data --set threads=1
    python scripts/grid_cost.py GRID --quick ...     # seconds: 2 steps per measurement
    python scripts/grid_cost.py --smoke              # seconds: a toy grid on TREC, tiny backbone
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.config import parse_overrides, resolve  # noqa: E402
from benchmark.grid import Grid  # noqa: E402
from benchmark.loop import Run  # noqa: E402
from benchmark.settings import SETTINGS  # noqa: E402
from benchmark.training import TrainSet, evaluate, fine_tune, training_steps  # noqa: E402
from methods import get_method  # noqa: E402


def clocked(fn):
    """(result, (wall seconds, process CPU seconds)) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - w, time.process_time() - c)


def per_step(run: Run, model, labelled: TrainSet, pseudo: TrainSet | None, objective, steps: int,
             dev_eval: tuple) -> tuple:
    """(wall, cpu) seconds per training step in steady state: ``steps`` untimed warm-up steps
    (new batch shapes build kernels), then ``steps`` timed ones, one dev evaluation taken off."""
    cfg = dict(run.cfg, epochs=0, min_steps=steps, max_steps=None, st_steps=steps,
               eval_every=10 ** 9)

    def train():
        fine_tune(copy.deepcopy(model), labelled, run.dev_tokens, run.dev_y, cfg, 0, run.pad_id,
                  pseudo, objective)
    train()
    _, t = clocked(train)
    return tuple(max(0.0, a - b) / steps for a, b in zip(t, dev_eval))


def measure_dataset(cells: list, overrides: dict, data_dir: str | None, steps: int, log) -> dict:
    """Costs for the cells of one dataset, each method measured on one of its own cells."""
    first = cells[0].cfg
    tmp = tempfile.mkdtemp(prefix="grid_cost_")

    def opened(cfg: dict) -> Run:
        run = Run(cfg, tmp, data_dir, log=lambda *_: None)
        run.store.open()
        run.prepare()
        return run

    ref_cfg = next((c.cfg for c in cells if (c.cfg["method"], c.cfg["setting"]) ==
                    ("entropy", "al")), None) or resolve(
        "entropy", first["dataset"], first["seed"], "al", first["preset"], overrides)
    ref = opened(ref_cfg)
    state = ref.initial_state()
    (_, model), round0 = clocked(lambda: ref.train_round(0, state))
    cfg = ref.cfg
    dev_eval = clocked(lambda: evaluate(model, ref.dev_tokens, ref.dev_y, ref.pad_id,
                                        cfg["eval_batch_size"], cfg["amp"]))[1]
    test_eval = clocked(lambda: evaluate(model, ref.test_tokens, ref.test_y, ref.pad_id,
                                         cfg["eval_batch_size"], cfg["amp"]))[1]
    labelled, _ = ref.training_sets(state)
    al_step = per_step(ref, model, labelled, None, None, steps, dev_eval)
    # a full pseudo-labelled batch of random pool texts under the default loss: the price of a
    # step for methods whose round-1 pseudo-label set is too small to fill a batch
    rng = np.random.default_rng(0)
    free = np.setdiff1d(np.arange(len(ref.pool_idx)), labelled.ids)
    some = rng.choice(free, size=min(len(free), 500), replace=False)
    generic = TrainSet(ref.pool_tokens, some, rng.integers(ref.data.num_classes, size=len(some)))
    ssal_step = per_step(ref, model, labelled, generic, None, steps, dev_eval)
    out = {"dataset": cfg["dataset_name"], "pool": len(ref.pool_idx), "test": len(ref.test_y),
           "round0": round0, "dev_eval": dev_eval, "test_eval": test_eval, "al_step": al_step,
           "ssal_step": ssal_step, "methods": {}, "n_weak": None}
    log(f"{out['dataset']}: pool {out['pool']}, test {out['test']}; step {al_step[0]:.3f} s "
        f"wall / {al_step[1]:.3f} s cpu, with pseudo-labels {ssal_step[0]:.3f} / "
        f"{ssal_step[1]:.3f}; dev eval {dev_eval[0]:.2f} / {dev_eval[1]:.2f}; test eval "
        f"{test_eval[0]:.2f} / {test_eval[1]:.2f}")
    chosen = {}
    rank = {"ssal": 0, "al": 1, "weak": 2}   # measure on a cell that pseudo-labels if any does
    for c in cells:
        m = c.cfg["method"]
        if m not in chosen or rank.get(c.cfg["setting"], 3) < rank.get(chosen[m]["setting"], 3):
            chosen[m] = c.cfg
    for method, mcfg in chosen.items():
        run = opened(mcfg)
        mstate = run.initial_state()
        _, select = clocked(lambda: run.select(1, model, mstate))
        p = mstate.pseudo
        # a second round's selection: what a method caches across rounds (ALPS's surprisal
        # embeddings of the pre-trained MLM) is paid once
        _, later = clocked(lambda: run.select(2, model, copy.deepcopy(mstate)))
        entry = {"select": select, "select_later": later, "pseudo": 0, "step": None,
                 "setting": mcfg["setting"]}
        if p is not None and len(p.ids) >= mcfg["batch_size_unlabelled"]:
            lab, pseudo = run.training_sets(mstate)
            entry["pseudo"] = len(pseudo)
            entry["step"] = per_step(run, model, lab, pseudo,
                                     run.method.objective(1, mcfg["rounds"]), steps, dev_eval)
        elif p is not None or "al" not in get_method(method).settings:
            # too few to fill a batch in round 1, or none from a method that only runs where
            # pseudo-labels are allowed (it self-trains from round 2 on): the generic price
            entry["pseudo"] = 0 if p is None else len(p.ids)
            entry["step"] = ssal_step
        out["methods"][method] = entry
        log(f"  {method:16s} select {select[0]:7.2f} s wall / {select[1]:7.2f} s cpu, then "
            f"{later[0]:7.2f} / {later[1]:7.2f}; "
            + (f"{entry['pseudo']} pseudo-labels, step {entry['step'][0]:.3f} s wall / "
               f"{entry['step'][1]:.3f} s cpu" if entry["step"] else "no pseudo-labels"))
    weak = next((c.cfg for c in cells if c.cfg["setting"] == "weak"), None)
    if weak is not None:
        out["n_weak"] = len(opened(weak).initial_state().labels)
    return out


def labelled_sizes(cfg: dict, n_weak: int | None) -> list[int]:
    """Labelled-set size of rounds 0..T under the cell's setting (weak: both readings)."""
    T, b, n0 = cfg["rounds"], cfg["budget"], cfg["initial_size"]
    if cfg["setting"] != "weak":
        return [n0 + t * b for t in range(T + 1)]
    if cfg.get("weak_labels") == "keep":
        return [n_weak + t * b for t in range(T + 1)]
    return [n_weak] + [t * b for t in range(1, T + 1)]


def cell_cost(cfg: dict, costs: dict, speedup: float = 1.0) -> dict:
    """(wall, cpu) seconds of one cell, and its training steps, from the measured costs."""
    m = costs["methods"][cfg["method"]]
    pseudo_ok = SETTINGS.get(cfg["setting"]).allow_pseudo and m["step"] is not None
    total, steps_all = np.zeros(2), 0
    for t, n in enumerate(labelled_sizes(cfg, costs["n_weak"])):
        with_pseudo = pseudo_ok and t >= 1
        steps = training_steps(cfg, n, 1 if with_pseudo else 0)
        step = np.array(m["step"] if with_pseudo else costs["al_step"]) / speedup
        evals = math.ceil(steps / cfg["eval_every"]) + 1          # during training, then dev
        total += steps * step + evals * np.array(costs["dev_eval"]) + np.array(costs["test_eval"])
        if t < cfg["rounds"]:
            total += np.array(m["select"] if t == 0 else m.get("select_later", m["select"]))
        steps_all += steps
    return {"wall": float(total[0]), "cpu": float(total[1]), "steps": steps_all}


def _smoke_grid(path: Path) -> Path:
    path.write_text(json.dumps({
        "name": "smoke", "preset": "smoke", "datasets": ["trec"], "seeds": [0],
        "overrides": {"backbone": "tiny", "pool_size": 120, "initial_size": 12, "budget": 8,
                      "rounds": 2, "dev_size": 30, "test_size": 30, "epochs": 1, "min_steps": 4,
                      "st_steps": 4, "eval_every": 2, "max_length": 24, "threads": 1},
        "blocks": [{"methods": ["entropy"], "settings": ["al"]},
                   {"methods": ["st"], "settings": ["ssal"], "overrides": {"threshold": 0.0}}]}))
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grid", nargs="?", help="grid file (YAML); not with --smoke")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every cell, as in `grid launch` (e.g. threads=1)")
    p.add_argument("--steps", type=int, default=40, help="training steps per step measurement")
    p.add_argument("--quick", action="store_true", help="seconds-long: 2 steps per measurement")
    p.add_argument("--speedup", type=float, nargs="*", default=[1.5],
                   help="also report totals with training steps this many times faster")
    p.add_argument("--json", default=None)
    p.add_argument("--smoke", action="store_true",
                   help="seconds-long check that the script runs: Entropy (AL) and ST (SSAL) on "
                        "TREC, smoke preset, tiny random backbone, 2 steps per measurement")
    args = p.parse_args(argv)
    if (args.grid is None) == (not args.smoke):
        p.error("give a grid file, or --smoke")
    steps = 2 if args.quick or args.smoke else args.steps
    with tempfile.TemporaryDirectory() as tmp:
        path = args.grid or _smoke_grid(Path(tmp) / "smoke.yaml")
        grid = Grid.load(path).with_overrides(parse_overrides(args.overrides))
    overrides = grid.overrides
    with tempfile.TemporaryDirectory() as tmp:
        cells = grid.cells(tmp)
    by_dataset = defaultdict(list)
    for c in cells:
        by_dataset[c.cfg["dataset_name"]].append(c)
    costs = {ds: measure_dataset(cs, overrides, args.data_dir or grid.data_dir, steps,
                                 lambda line: print(line, flush=True))
             for ds, cs in by_dataset.items()}
    rows = []
    for c in cells:
        cost = cell_cost(c.cfg, costs[c.cfg["dataset_name"]])
        rows.append({"method": c.cfg["method"], "dataset": c.cfg["dataset_name"],
                     "setting": c.cfg["setting"] + (f"/{c.cfg['weak_labels']}"
                                                    if "weak_labels" in c.cfg else ""),
                     "seed": c.cfg["seed"], **cost,
                     **{f"wall_x{s:g}": cell_cost(c.cfg, costs[c.cfg["dataset_name"]], s)["wall"]
                        for s in args.speedup},
                     **{f"cpu_x{s:g}": cell_cost(c.cfg, costs[c.cfg["dataset_name"]], s)["cpu"]
                        for s in args.speedup}})
    print(f"\nper cell (minutes; seed 0; training steps over all rounds):")
    print(f"{'method':16s} {'dataset':8s} {'setting':10s} {'steps':>6s} {'wall':>7s} {'cpu':>7s}")
    for r in rows:
        if r["seed"] == rows[0]["seed"]:
            print(f"{r['method']:16s} {r['dataset']:8s} {r['setting']:10s} {r['steps']:6d} "
                  f"{r['wall'] / 60:7.1f} {r['cpu'] / 60:7.1f}")
    groups = defaultdict(lambda: np.zeros(2))
    for r in rows:
        groups[(r["dataset"], r["setting"])] += (r["wall"], r["cpu"])
    print(f"\nworker-hours ({len(rows)} cells):")
    for (ds, st), (w, c) in sorted(groups.items()):
        print(f"  {ds:8s} {st:10s} {w / 3600:7.2f} wall  {c / 3600:7.2f} cpu")
    total = {"wall": sum(r["wall"] for r in rows) / 3600, "cpu": sum(r["cpu"] for r in rows) / 3600}
    print(f"  {'total':19s} {total['wall']:7.2f} wall  {total['cpu']:7.2f} cpu")
    for s in args.speedup:
        w = sum(r[f"wall_x{s:g}"] for r in rows) / 3600
        c = sum(r[f"cpu_x{s:g}"] for r in rows) / 3600
        total[f"x{s:g}"] = {"wall": w, "cpu": c}
        print(f"  {'training ' + f'{s:g}x faster':19s} {w:7.2f} wall  {c:7.2f} cpu")
    result = {"costs": costs, "cells": rows, "total_hours": total}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
