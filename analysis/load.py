"""Read every run folder under a results directory into one tidy DataFrame, never crashing.

A results directory may hold one grid or many, finished and unfinished runs, and runs made
under different protocols (presets, backbones). Everything questionable becomes a line in
``Results.problems`` instead of an exception, and ``main_view`` keeps only what may fairly be
compared: per (dataset, setting) the dominant protocol, per method the default parameters.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.device import describe, recorded_precision
from benchmark.results import (CONFIG, META, RECORDS, duplicate_rounds, folder_state, read_json,
                               read_records)
from benchmark.settings import SETTINGS

# Fields a round record must have for the analysis to use it (benchmark/loop.py writes them).
REQUIRED = ("method", "dataset", "seed", "setting", "round", "n_labels", "test_acc")
NUMERIC = ("round", "n_labels", "n_train_labels", "n_queried", "n_pseudo", "pseudo_acc",
           "dev_acc", "dev_f1", "test_acc", "test_f1")
# Config keys that say who/what ran, or how fast/where, not the protocol shared by a comparison.
NOT_PROTOCOL = ("method", "params", "seed", "threads", "data_dir", "save_features")
# ...and the keys that only act after round 0 (round 0 trains a fresh model on the initial
# labels, no pseudo-labels, whatever the method): cells agreeing on the rest share round 0.
NOT_ROUND0 = NOT_PROTOCOL + ("setting", "preset", "rounds", "budget", "st_steps",
                             "batch_size_unlabelled")
# Round-0 record fields that are its outcome or name the cell, not the labels it started from.
ROUND0_OUTCOME = ("dev_acc", "dev_f1", "test_acc", "test_f1", "time", "train", "method",
                  "setting", "preset", "config_hash", "round")


def _short_hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


@dataclass
class Results:
    """``rounds``: one row per round record; ``runs``: one row per run folder."""
    rounds: pd.DataFrame
    runs: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    root: Path | None = None


def _read_config(folder: Path, problems: list[str]) -> dict:
    path = folder / CONFIG
    if not path.exists():
        problems.append(f"{folder.name}: no {CONFIG}; parameters and protocol unknown")
        return {}
    try:
        return json.loads(path.read_text()).get("config", {}) or {}
    except ValueError as exc:
        problems.append(f"{folder.name}: unreadable {CONFIG} ({exc})")
        return {}


def _device(meta) -> str:
    """The device a run computed on, in words (``benchmark.device.describe``); runs made before
    meta.json carried a device say so, with the host they ran on."""
    if not isinstance(meta, dict):
        return "unknown device (no readable meta.json)"
    if isinstance(meta.get("device"), dict):
        return describe(meta["device"])
    return f"unknown device (meta.json predates device info; host {meta.get('host', '?')})"


def _round0_key(cfg: dict, first: dict) -> str | None:
    """Cells with equal keys must produce the same round-0 record: same dataset and seed, same
    initial labels (the round-0 record's queried ids, label counts, weak-label facts) and same
    config apart from what acts only after round 0."""
    if not cfg or first.get("round") != 0:
        return None
    start = {k: v for k, v in first.items() if k not in ROUND0_OUTCOME}
    return _short_hash([{k: v for k, v in cfg.items() if k not in NOT_ROUND0}, start])


def setting_label(cfg: dict, fallback: str | None = None) -> str | None:
    """The setting with the values of the options it declares, e.g. ``weak/keep``: two readings
    of one setting are two comparisons, never one comparison of mixed protocols."""
    name = cfg.get("setting", fallback)
    options = SETTINGS.get(name).options if name in SETTINGS else {}
    return "/".join([name, *(str(cfg[k]) for k in options if k in cfg)]) if name else name


def _flatten(rec: dict) -> dict:
    """Round record -> flat row: ``time`` phases become ``time_<phase>`` columns."""
    row = {k: v for k, v in rec.items() if k not in ("time", "train", "queried_ids")}
    for phase, sec in (rec.get("time") or {}).items():
        row[f"time_{phase}"] = sec
    return row


def load_results(root: str | Path) -> Results:
    """All run folders (folders holding ``records.jsonl`` or ``config.json``) under ``root``."""
    root = Path(root)
    problems: list[str] = []
    folders = sorted({p.parent for pat in (RECORDS, CONFIG) for p in root.rglob(pat)})
    rows, runs = [], []
    for folder in folders:
        cfg = _read_config(folder, problems)
        records, bad = read_records(folder)
        problems.extend(bad)
        state = folder_state(folder, cfg["rounds"] if isinstance(cfg.get("rounds"), int)
                             else None, records)
        status = "incomplete" if state.state == "not started" else state.state
        repeated = duplicate_rounds(records)
        if repeated:  # two writers, or a round written twice: the last record of each is kept
            problems.append(f"{folder.name}: round(s) {', '.join(map(str, repeated))} recorded "
                            "more than once; the last record of each is used")
        if status == "damaged":
            problems.append(f"{folder.name}: marked done but damaged ({state.detail}); "
                            "`python -m benchmark run` with its config recomputes it")
        params = cfg.get("params", {}) or {}
        protocol = {k: v for k, v in cfg.items() if k not in NOT_PROTOCOL}
        kept = 0
        for i, rec in enumerate(records):
            missing = [k for k in REQUIRED if rec.get(k) is None]
            if missing:
                problems.append(f"{folder.name}: record {i + 1} lacks "
                                f"{', '.join(missing)}; skipped")
                continue
            if cfg and rec.get("config_hash") not in (None, _config_hash(folder)):
                problems.append(f"{folder.name}: record {i + 1} was written under another config "
                                f"({rec.get('config_hash')}); skipped")
                continue
            row = _flatten(rec)
            row.update(setting=setting_label(cfg, row.get("setting")),
                       run=folder.name, path=str(folder), status=status,
                       params_key=json.dumps(params, sort_keys=True, default=str),
                       protocol=_short_hash(protocol) if cfg else "unknown",
                       test_size=cfg.get("test_size"))  # a cap: the noise model checks it
            row.update({f"param_{k}": v for k, v in params.items()
                        if isinstance(v, (int, float, str, bool)) or v is None})
            rows.append(row)
            kept += 1
        first = records[0] if records else {}
        meta = read_json(folder / META)
        rounds_expected = cfg.get("rounds")
        last_round = max((r.get("round", -1) for r in records), default=-1)
        runs.append(dict(run=folder.name, path=str(folder), status=status,
                         method=cfg.get("method", first.get("method")),
                         dataset=cfg.get("dataset_name", first.get("dataset")),
                         setting=setting_label(cfg, first.get("setting")),
                         seed=cfg.get("seed", first.get("seed")), preset=cfg.get("preset"),
                         params=params, n_records=kept, last_round=last_round,
                         rounds=rounds_expected, device=_device(meta),
                         precision=recorded_precision(meta),
                         round0=_round0_key(cfg, first),
                         round0_record=json.dumps({k: first.get(k) for k in ROUND0_OUTCOME[:4]})
                         if first.get("round") == 0 else None,
                         features=(folder / "features_round1.npz").exists()))
        if status not in ("done", "damaged"):
            reached = f"{last_round}/{rounds_expected}" if rounds_expected else str(last_round)
            problems.append(f"{folder.name}: {status} (rounds reached {reached}); "
                            "its rounds are plotted, it is left out of final-round tables")
    df = pd.DataFrame(rows)
    for col in NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if len(df):
        df = df.drop_duplicates(["run", "round"], keep="last")
    runs_df = pd.DataFrame(runs)
    if len(runs_df):
        runs_df["complete"] = runs_df["status"].eq("done") | (
            runs_df["status"].ne("damaged") & runs_df["rounds"].notna()
            & (runs_df["last_round"] >= runs_df["rounds"].fillna(1e9)))
    res = Results(df, runs_df, problems, root)
    problems.extend(mixed_configs(res))
    problems.extend(round0_mismatches(runs_df))
    problems.extend(mixed_precisions(runs_df))
    return res


# What each problem line is, for the terminal's one-line summary (first match wins)
PROBLEM_KINDS = (("corrupt line", "corrupt lines"), ("cut short", "corrupt lines"),
                 (": failed (", "failed runs"), (": running (", "unfinished runs"),
                 (": incomplete (", "unfinished runs"), ("unfinished run folders", "unfinished runs"),
                 ("lacks", "records missing fields"), ("another config", "stale records"),
                 ("different protocols", "mixed protocols"), (CONFIG, "unreadable configs"),
                 ("left out until", "runs waiting for their seed (--complete-only)"),
                 ("precisions", "mixed precisions"))


def problem_summary(res: Results) -> str:
    """One line for the terminal: how many problems of each kind loading met."""
    head = f"loaded {len(res.runs)} run folders, {len(res.rounds)} round records"
    if not res.problems:
        return f"{head}; no loading problems"
    counts: dict[str, int] = {}
    for p in res.problems:
        kind = next((k for pat, k in PROBLEM_KINDS if pat in p), "other")
        n = 1
        if p[:1].isdigit():  # "3 unfinished run folders left out (--complete-only)"
            n = int(p.split()[0])
        counts[kind] = counts.get(kind, 0) + n
    return f"{head}; problems: " + ", ".join(f"{n} {k}" for k, n in counts.items())


def complete_only(res: Results) -> Results:
    """The complete runs of the seeds every method has finished: while a study is still running,
    every curve then averages the same seeds from the first round to the last.

    Per (dataset, setting), a seed is kept only when each method with a complete run there has a
    complete run for that seed (any parameters); so a seed half-way through a seed-major grid
    waits until its last method is done.
    """
    if res.runs.empty:
        return res
    done = res.runs[res.runs["complete"]]
    group = ["dataset", "setting"]
    per_seed = done.groupby(group + ["seed"])["method"].nunique().rename("n_seed")
    per_group = done.groupby(group)["method"].nunique().rename("n_group")
    full = per_seed.reset_index().merge(per_group.reset_index(), on=group)
    full = full[full["n_seed"] == full["n_group"]]
    keep = done.merge(full[group + ["seed"]], on=group + ["seed"])
    left = sorted(set(res.runs["run"]) - set(done["run"]))
    waiting = sorted(set(done["run"]) - set(keep["run"]))
    problems = [p for p in res.problems if p.split(":")[0] not in left]
    if left:
        problems.append(f"{len(left)} unfinished run folders left out (--complete-only)")
    if waiting:
        problems.append(f"{len(waiting)} complete runs left out until every method has finished "
                        "their seed (--complete-only)")
    rounds = res.rounds[res.rounds["run"].isin(keep["run"])] if len(res.rounds) else res.rounds
    return Results(rounds, keep.reset_index(drop=True), problems, res.root)


def _config_hash(folder: Path) -> str | None:
    try:
        return json.loads((folder / CONFIG).read_text()).get("config_hash")
    except (OSError, ValueError):
        return None


def mixed_configs(res: Results) -> list[str]:
    """Comparisons that would mix protocols: one (dataset, setting) run under several protocols."""
    df = res.rounds
    if df.empty:
        return []
    out = []
    for (ds, st), g in df.groupby(["dataset", "setting"]):
        counts = g.groupby("protocol")["run"].nunique().sort_values(ascending=False)
        if len(counts) > 1:
            out.append(f"{ds}/{st}: runs under {len(counts)} different protocols "
                       f"({', '.join(f'{p}: {n} runs' for p, n in counts.items())}); "
                       f"comparisons use the most common one ({counts.index[0]})")
    return out


def mixed_precisions(runs: pd.DataFrame) -> list[str]:
    """Datasets whose runs computed at different precisions (bf16 autocast or fp32; ``amp:
    auto`` resolves per machine), so paired comparisons between them mix the two."""
    if runs.empty or "precision" not in runs:
        return []
    out = []
    for ds, g in runs.dropna(subset=["precision"]).groupby("dataset"):
        counts = g["precision"].value_counts()
        if len(counts) > 1:
            minority = g[g["precision"] != counts.index[0]]["run"]
            named = f": {', '.join(minority)}" if len(minority) <= 3 else ""
            out.append(f"{ds}: runs at {len(counts)} precisions ("
                       + ", ".join(f"{p}: {n} runs" for p, n in counts.items())
                       + f"{named}); comparisons between them mix precisions")
    return out


def round0_mismatches(runs: pd.DataFrame) -> list[str]:
    """Per dataset and seed: cells that should share round 0 (same seed, initial labels and
    round-0 config; any method or setting) but did not get the same round-0 record (its dev and
    test accuracy and F1), naming the devices behind each variant. The usual cause is hardware:
    another CPU type or GPU computes other floats from the same config."""
    if runs.empty or "round0" not in runs:
        return []
    out = []
    for (ds, seed, _), g in runs.dropna(subset=["round0"]).groupby(["dataset", "seed", "round0"]):
        variants = g.groupby("round0_record")
        if variants.ngroups < 2:
            continue
        records = {r: json.loads(r) for r in variants.groups}
        differ = [k for k in ROUND0_OUTCOME[:4] if len({str(x[k]) for x in records.values()}) > 1]
        parts = []
        for rec, v in sorted(variants, key=lambda kv: -len(kv[1])):
            values = ", ".join(f"{k.replace('_', ' ')} {_pct(records[rec][k])}" for k in differ)
            counts = v["device"].value_counts()
            devices = counts.index[0] if len(counts) == 1 else "; ".join(
                f"{d} ({n})" for d, n in counts.items())
            runs_named = f" ({', '.join(v['run'])})" if len(v) <= 2 else ""
            parts.append(f"{values} in {len(v)} run{'s' if len(v) > 1 else ''}{runs_named} "
                         f"on {devices}")
        same = g["device"].nunique() == 1 and not g["device"].iloc[0].startswith("unknown")
        out.append(f"{ds} seed {seed}: {len(g)} cells that share round 0 (same initial labels "
                   f"and round-0 config) got {variants.ngroups} different round-0 records: "
                   + "; ".join(parts) + ("; all on one device, so not a hardware difference"
                                         if same else ""))
    return out


def _pct(v) -> str:
    return f"{100 * v:.3f}%" if isinstance(v, (int, float)) else str(v)


def _default_params(method: str, dataset: str) -> dict | None:
    """The registered defaults, when the method can be imported (None otherwise)."""
    try:
        from methods import get_method
        return get_method(method).defaults(dataset)
    except Exception:
        return None


def reference_params(g: pd.DataFrame) -> dict:
    """The parameter set that represents one method on one dataset (and the reference point of
    its sweeps): the registered defaults when they were run; else the medoid of the sets run
    (fewest differing values to all others -- the centre of a one-at-a-time sweep), ties going
    to the set with the most runs."""
    counts = g.groupby("params_key")["run"].nunique()
    d = _default_params(g["method"].iloc[0], g["dataset"].iloc[0])
    if d is not None and json.dumps(d, sort_keys=True, default=str) in counts.index:
        return d
    sets = {k: json.loads(k) for k in counts.index}

    def distance(a: dict) -> int:
        return sum(a.get(k) != b.get(k) for b in sets.values() for k in set(a) | set(b))
    return sets[min(sets, key=lambda k: (distance(sets[k]), -counts[k], k))]


def main_view(df: pd.DataFrame) -> pd.DataFrame:
    """Rows fit to compare methods: the dominant protocol per (dataset, setting), and per
    (method, dataset, setting) one parameter set, ``reference_params`` (sweep points are for
    Fig. 4, not for the main comparison), and one run per seed."""
    if df.empty:
        return df
    keep = []
    for (ds, st), g in df.groupby(["dataset", "setting"]):
        top = g.groupby("protocol")["run"].nunique().idxmax()
        g = g[g["protocol"] == top]
        for method, gm in g.groupby("method"):
            chosen = json.dumps(reference_params(gm), sort_keys=True, default=str)
            keep.append(_one_run_per_seed(gm[gm["params_key"] == chosen]))
    return pd.concat(keep, ignore_index=True)


def _one_run_per_seed(g: pd.DataFrame) -> pd.DataFrame:
    """Two folders can hold the same computation (e.g. a re-run with ``save_features``, which
    is hashed): keep the finished one with the most rounds, so no seed is counted twice."""
    size = g.groupby("run").agg(seed=("seed", "first"), n=("round", "size"),
                                done=("status", lambda s: (s == "done").any()))
    best = size.sort_values(["done", "n"], ascending=False).groupby("seed").head(1).index
    return g[g["run"].isin(best)]
