"""Run the golden-record smoke runs and print their records as JSON (one process, one thread).

Called by ``tests/benchmark/test_golden_records.py`` in a subprocess whose environment pins the
CPU kernels (see ``PINNED_ENV`` there), so the floats are the same on any x86 CPU.
Usage: ``python run_golden.py DATA_DIR OUT_DIR`` -> JSON on stdout.
"""
from __future__ import annotations

import json
import sys

import torch

# Every method once, in its main setting, plus the weak setting: a refactor that changes any
# method's queries, pseudo-labels or training shows up here.
# Thresholds are lowered where the tiny model is never confident enough for the paper's values,
# so every method's pseudo-label path is exercised.
LOW = {"threshold": 0.3}
RUNS = [
    ("random", "al", {}), ("entropy", "al", {}), ("bald", "al", {}), ("badge", "al", {}),
    ("alps", "al", {}), ("cal", "al", {}), ("actune", "al", {}),
    ("st", "ssal", LOW), ("ust", "ssal", {}), ("cosine", "ssal", {}), ("asst", "ssal", {"threshold": 0.2}),
    ("ceal", "ssal", {"delta0": 1.6}), ("bass", "ssal", LOW), ("revival", "ssal", {}),
    ("actune", "ssal", {}), ("actune-cal", "ssal", {}), ("actune", "weak", {}),
    ("st", "weak", {**LOW, "weak_labels": "keep"}),     # the other reading of the weak labels
]
# The smoke preset on the tiny random backbone in float32: seconds per run, no bf16 rounding.
OVERRIDES = {"backbone": "tiny", "amp": "off", "threads": 1, "lr": 3e-3}
# What a result is: accuracies, queries, pseudo-labels and the training path (no timings).
KEYS = ("round", "n_labels", "n_train_labels", "n_pseudo", "pseudo_acc", "pseudo_digest",
        "dev_acc", "test_acc", "test_f1", "queried_ids")
TRAIN_KEYS = ("steps", "best_step", "dev_acc_best", "omega_pass_rate")


def summary(record: dict) -> dict:
    out = {k: record.get(k) for k in KEYS}
    out["train"] = {k: record["train"].get(k) for k in TRAIN_KEYS}
    return out


def main(data_dir: str, out: str) -> None:
    from benchmark.config import resolve
    from benchmark.loop import run_experiment

    torch.set_num_threads(1)
    result = {}
    for method, setting, extra in RUNS:
        cfg = resolve(method, "trec", 0, setting, "smoke", {**OVERRIDES, **extra})
        records = run_experiment(cfg, out, data_dir, device="cpu", log=lambda *_: None)
        result[f"{method}/{setting}"] = [summary(r) for r in records]
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
