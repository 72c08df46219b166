"""Statistics behind the figures and tables: curves, label efficiency, paired tests, Holm.

Nothing here names a method. The method compared against the baselines ("ours") is passed in
(names or a predicate; None: what the methods declare, ``declared.ours``); plug-in and ablation
relations are what the methods declare (``analysis.declared``); a baseline's family (active
learning vs self-training) comes from the data -- a method that ever trained on pseudo-labels
is a self-training method -- unless a mapping says otherwise.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd
from scipy import stats

from . import declared

AL, ST, OURS = "active learning", "self-training", "ours"


def resolve_ours(ours: str | Iterable[str] | None) -> str | list[str]:
    """``--ours`` as given, else what the methods declare: one name, or a list of several."""
    if ours is not None:
        return ours
    names = declared.ours()
    return names[0] if len(names) == 1 else names


def ours_names(ours) -> list[str]:
    """The methods named as ours (None: the declared ones), in the order given."""
    ours = resolve_ours(ours)
    if callable(ours):
        return []
    return [ours] if isinstance(ours, str) else list(ours)


def ours_predicate(ours: str | Iterable[str] | Callable[[str], bool] | None = None
                   ) -> Callable[[str], bool]:
    """Who counts as ours: the named methods (None: ``declared.ours``) and the ablations and
    plug-ins that declare themselves their variants (``variant_of``); a callable as it is."""
    if callable(ours):
        return ours
    names = set(ours_names(ours))
    return lambda m: m in names or declared.variant_of(m) in names


def families(df: pd.DataFrame, ours=None, mapping: dict[str, str] | None = None
             ) -> dict[str, str]:
    """method -> ``ours`` / ``self-training`` / ``active learning``, from the records."""
    is_ours = ours_predicate(ours)
    mapping = mapping or {}
    pseudo = df.groupby("method")["n_pseudo"].apply(lambda s: bool((s.fillna(0) > 0).any())) \
        if "n_pseudo" in df else pd.Series(dtype=bool)
    out = {}
    for m in sorted(df["method"].unique()):
        out[m] = mapping.get(m) or (OURS if is_ours(m) else ST if pseudo.get(m, False) else AL)
    return out


# How the figures group methods (a method's declared ``family``; see ``methods.base.Method``)
GROUPS = {"ours": "ours", "AL": "active learning", "SSAL": "semi-supervised AL",
          "ST": "self-training", "ablation": "ablations of ours", "plug-in": "ours as a plug-in"}


def plot_groups(df: pd.DataFrame, ours=None) -> dict[str, str]:
    """method -> a key of ``GROUPS``: the family the method declares, with ``ours`` deciding
    what counts as ours (an ours method that declares no ablation or plug-in is ``ours``).
    A baseline that declares no baseline family (one this checkout does not know) is judged
    from its records: ST when it used pseudo-labels, else AL."""
    is_ours = ours_predicate(ours)
    methods = sorted(df["method"].unique())
    pseudo = df.groupby("method")["n_pseudo"].apply(lambda s: bool((s.fillna(0) > 0).any())) \
        if "n_pseudo" in df else pd.Series(dtype=bool)
    out = {}
    for m in methods:
        fam = declared.family(m)
        if is_ours(m):
            if fam not in ("ablation", "plug-in"):
                fam = "ours"
        elif fam not in ("AL", "SSAL", "ST"):
            fam = "ST" if pseudo.get(m, False) else "AL"
        out[m] = fam
    return out


def saving_summary(eff: pd.DataFrame) -> str:
    """One honest line on Fig. 3's savings: their average when they agree in sign, else their
    range and how many point each way (an average of +25% and -13% would hide the losses)."""
    if eff is None or eff.empty:
        return ""
    hit = eff[eff["reached"]]
    n_not = int((~eff["reached"]).sum())
    tail = f"; {n_not} not reached" if n_not else ""
    if hit.empty:
        return f"no baseline reached the final accuracy{tail}"
    s = hit["saving_pct"]
    if (s > 0).all() or (s < 0).all() or len(s) == 1:
        return f"average {s.mean():.1f}% over {len(s)} comparisons{tail}"
    lo, hi = hit.loc[s.idxmin()], hit.loc[s.idxmax()]
    return (f"from {lo['saving_pct']:+.0f}% ({lo['dataset']}, {lo['baseline']}) to "
            f"{hi['saving_pct']:+.0f}% ({hi['dataset']}, {hi['baseline']}): "
            f"{int((s > 0).sum())} of {len(s)} comparisons save labels, "
            f"{int((s < 0).sum())} need more (signs differ: no average){tail}")


def curves(df: pd.DataFrame, by=("method", "dataset", "setting"), metric="test_acc"
           ) -> pd.DataFrame:
    """Mean and sample std (ddof 1) of ``metric`` over seeds per round; x = mean label count."""
    by = list(by)
    g = df.dropna(subset=[metric]).groupby(by + ["round"])
    out = g.agg(n_labels=("n_labels", "mean"), mean=(metric, "mean"), std=(metric, "std"),
                n=(metric, "size")).reset_index()
    return out.sort_values(by + ["round"], ignore_index=True)


def final_rows(df: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each complete run's last round (unfinished runs would bias the final numbers)."""
    if df.empty:
        return df
    if runs is not None and len(runs) and "complete" in runs:
        df = df[df["run"].isin(runs.loc[runs["complete"], "run"])]
    return df.loc[df.groupby("run")["round"].idxmax()].reset_index(drop=True)


def labels_to_reach(x, y, target: float) -> float:
    """Smallest label count at which the piecewise-linear curve (x, y) reaches ``target``.

    The curve is the baseline's mean accuracy against its label count; between two measured
    rounds accuracy is interpolated linearly. NaN when the curve never reaches the target.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if not len(x):
        return float("nan")
    if y[0] >= target:
        return float(x[0])
    for i in range(1, len(x)):
        if y[i] >= target:
            x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
            return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))
    return float("nan")


def label_efficiency(curve_df: pd.DataFrame, fams: dict[str, str], ours_method: str,
                     ours_setting: str = "ssal") -> pd.DataFrame:
    """Per dataset: labels the best AL and the best self-training baseline need to match
    ``ours_method``'s final accuracy, and the saving ``1 - n_ours / n_baseline``.

    Both label counts follow one rule (:func:`labels_to_reach`: first crossing of the mean
    curve), so a curve that peaks early and dips at the end is not charged its full budget.

    "Best" = highest final mean accuracy within the family on that dataset. An AL baseline is
    read in the ``al`` setting when it ran there (pseudo-labels play no part in it), a
    self-training one in a setting where it used pseudo-labels (``ours_setting``).
    """
    rows = []
    for ds, g in curve_df.groupby("dataset"):
        mine = g[(g["method"] == ours_method) & (g["setting"] == ours_setting)]
        if mine.empty:
            continue
        target = float(mine.loc[mine["round"].idxmax(), "mean"])
        n_ours = labels_to_reach(mine["n_labels"], mine["mean"], target)
        for family in (AL, ST):
            cands = []
            for m in [m for m, f in fams.items() if f == family]:
                gm = g[g["method"] == m]
                pref = ["al", ours_setting] if family == AL else [ours_setting]
                for st in pref:
                    if (gm["setting"] == st).any():
                        gm = gm[gm["setting"] == st]
                        cands.append((float(gm.loc[gm["round"].idxmax(), "mean"]), m, st, gm))
                        break
            if not cands:
                continue
            _, m, st, gm = max(cands, key=lambda c: c[0])
            need = labels_to_reach(gm["n_labels"], gm["mean"], target)
            rows.append(dict(dataset=ds, ours=ours_method, ours_setting=ours_setting,
                             family=family, baseline=m, setting=st,
                             target_acc=target, ours_labels=n_ours, baseline_labels=need,
                             baseline_max_labels=float(gm["n_labels"].max()), reached=need == need,
                             saving_pct=100 * (1 - n_ours / need) if need == need and need > 0
                             else float("nan")))
    return pd.DataFrame(rows)


def versus_best(curve_df: pd.DataFrame, ours_method: str, ours=None) -> pd.DataFrame:
    """Round by round, ``ours_method``'s mean accuracy against the strongest baseline of the
    same setting and dataset: the one with the highest mean accuracy over the rounds compared
    (one fixed method; a per-round maximum over many noisy curves would favour the baselines).
    Rounds >= 1 only, where the methods have chosen different labels, up to the last round
    every method reached.
    """
    is_ours = ours_predicate(ours)
    rows = []
    for (setting, ds), g in curve_df[curve_df["round"] >= 1].groupby(["setting", "dataset"]):
        mine = g[g["method"] == ours_method].set_index("round")
        base = g[~g["method"].map(is_ours)]
        if mine.empty or base.empty:
            continue
        last = min(mine.index.max(), base.groupby("method")["round"].max().min())
        base = base[base["round"] <= last]
        strongest = base.groupby("method")["mean"].mean().idxmax()
        theirs = base[base["method"] == strongest].set_index("round")
        for t in range(1, int(last) + 1):
            if t in mine.index and t in theirs.index:
                rows.append(dict(setting=setting, dataset=ds, round=t,
                                 n_labels=float(mine.loc[t, "n_labels"]), ours=ours_method,
                                 ours_acc=float(mine.loc[t, "mean"]), baseline=strongest,
                                 baseline_acc=float(theirs.loc[t, "mean"]),
                                 diff=float(mine.loc[t, "mean"] - theirs.loc[t, "mean"])))
    return pd.DataFrame(rows)


def wins_summary(vs: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, dataset): rounds ours leads the strongest baseline, out of how many, and
    the mean / min / max margin in accuracy points."""
    if vs.empty:
        return vs
    g = vs.groupby(["setting", "dataset", "ours", "baseline"])
    out = pd.DataFrame({"rounds_ahead": g["diff"].apply(lambda d: int((d > 0).sum())),
                        "rounds": g.size(),
                        "mean_margin_pts": 100 * g["diff"].mean(),
                        "min_margin_pts": 100 * g["diff"].min(),
                        "max_margin_pts": 100 * g["diff"].max()})
    return out.reset_index()


def holm(pvals) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control across the baselines)."""
    p = np.asarray(pvals, float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    if not m:
        return out
    order = np.argsort(q)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def paired_tests(df: pd.DataFrame, ours=None, metric="test_acc",
                 by=("setting",), min_round: int = 1, alpha: float = 0.05) -> pd.DataFrame:
    """Paired t-test of each "ours" method against every baseline.

    A pair is the two methods' ``metric`` on the same dataset, seed and round (in the same
    setting). Round 0 is left out by default: every method trains on the same initial labels
    with the same seeds there, so its pairs say nothing about the methods. Holm's correction
    runs across the baselines compared with one "ours" method within one ``by`` group.
    """
    is_ours = ours_predicate(ours)
    by = list(by)
    key = ["dataset", "seed", "round"]
    d = df[df["round"] >= min_round].dropna(subset=[metric])
    d = d.groupby(by + key + ["method"], as_index=False)[metric].mean()
    rows = []
    groups = d.groupby(by) if by else [((), d)]
    for gkey, g in groups:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        methods = sorted(g["method"].unique())
        for o in [m for m in methods if is_ours(m)]:
            a = g[g["method"] == o][key + [metric]]
            block = []
            for b in [m for m in methods if not is_ours(m)]:
                pair = a.merge(g[g["method"] == b][key + [metric]], on=key, suffixes=("_o", "_b"))
                x, y = pair[f"{metric}_o"].to_numpy(), pair[f"{metric}_b"].to_numpy()
                t, p = (stats.ttest_rel(x, y) if len(pair) >= 2 else (np.nan, np.nan))
                block.append(dict(zip(by, gkey), ours=o, baseline=b, n_pairs=len(pair),
                                  mean_ours=x.mean() if len(x) else np.nan,
                                  mean_baseline=y.mean() if len(y) else np.nan,
                                  mean_diff=(x - y).mean() if len(x) else np.nan,
                                  t=float(t), p=float(p)))
            if block:
                adj = holm([r["p"] for r in block])
                for r, h in zip(block, adj):
                    r.update(p_holm=h, significant=bool(r["p"] < alpha),
                             significant_holm=bool(h < alpha))
                rows.extend(block)
    return pd.DataFrame(rows)


def pseudo_label_gain(df: pd.DataFrame, metric="test_acc", min_round: int = 1,
                      alpha: float = 0.05) -> pd.DataFrame:
    """What pseudo-labels add: each method's SSAL run against its declared AL counterpart
    (``declared.al_counterpart``: the method that queries as it does, run with labelled data
    only), paired on dataset, seed and round >= ``min_round``, with a paired t-test (Holm across
    the methods of a dataset) and, from the pairs' own spread, the MDD and a verdict.
    ``mean_pseudo``: the SSAL run's pseudo-labels per round; a run that never got one trained
    on its counterpart's data and gets the verdict 'no pseudo-labels', not a test of them.
    ``mean_pseudo_acc``: how many of them were right (against the hidden gold labels, mean over
    the rounds that had some): what a gain or a loss mostly follows."""
    from .uncertainty import mdd

    key = ["dataset", "seed", "round"]
    d = df[df["round"] >= min_round].dropna(subset=[metric])
    rows = []
    for ds, g in d.groupby("dataset"):
        al = g[g["setting"] == "al"]
        block = []
        for (method, params), s in g[g["setting"] == "ssal"].groupby(["method", "params_key"]):
            other = declared.al_counterpart(method, _params(params))
            if not other:
                continue
            base = al[al["method"] == other].groupby(key, as_index=False)[metric].mean()
            cols = [metric, "n_pseudo", *(["pseudo_acc"] if "pseudo_acc" in s else [])]
            pair = s.groupby(key, as_index=False)[cols].mean().merge(
                base, on=key, suffixes=("_ssal", "_al"))
            if len(pair) < 2:
                continue
            x, y = pair[f"{metric}_ssal"].to_numpy(), pair[f"{metric}_al"].to_numpy()
            diff = x - y
            t, p = stats.ttest_rel(x, y)
            sd = float(diff.std(ddof=1))
            block.append(dict(dataset=ds, method=method, al_counterpart=other,
                              seeds=pair["seed"].nunique(), n_pairs=len(pair),
                              mean_ssal=x.mean(), mean_al=y.mean(), mean_diff=diff.mean(),
                              rounds_ahead=int((diff > 0).sum()), t=float(t), p=float(p),
                              mdd=mdd(sd, len(pair)) if sd > 0 else 0.0,
                              mean_pseudo=float(pair["n_pseudo"].mean()),
                              mean_pseudo_acc=float(pair["pseudo_acc"].mean())
                              if "pseudo_acc" in pair else float("nan")))
        for r, h in zip(block, holm([r["p"] for r in block])):
            significant = h < alpha
            r.update(p_holm=h, verdict="no pseudo-labels" if r["mean_pseudo"] == 0
                     else "unresolved" if abs(r["mean_diff"]) < r["mdd"]
                     else "not significant" if not significant
                     else "gain" if r["mean_diff"] > 0 else "loss")
        rows.extend(block)
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------------
# Hyper-parameter sweeps and ours-on-top-of-X pairs, read from the configs
# -------------------------------------------------------------------------------------------

def _params(key: str) -> dict:
    import json
    return json.loads(key)


def swept(df: pd.DataFrame) -> dict[tuple, list[str]]:
    """(method, dataset, setting) -> parameters that take more than one value across its runs."""
    out = {}
    for k, g in df.groupby(["method", "dataset", "setting"]):
        ps = [_params(p) for p in g["params_key"].unique()]
        if len(ps) < 2:
            continue
        keys = sorted({k for p in ps for k in p})
        vary = [k for k in keys if len({repr(p.get(k)) for p in ps}) > 1]
        if vary:
            out[k] = vary
    return out


def base_params(g: pd.DataFrame) -> dict:
    """The reference point of a sweep (see ``analysis.load.reference_params``)."""
    from .load import reference_params
    return reference_params(g)


def variant_label(method: str, params: dict, base: dict) -> str:
    """``m (beta=0.1)`` for a run of ``m`` that differs from the sweep's base in ``beta``."""
    diff = [f"{k}={params.get(k)}" for k in sorted(set(params) | set(base))
            if params.get(k) != base.get(k)]
    return f"{method} ({', '.join(diff)})" if diff else method


def sweep_points(final: pd.DataFrame, metric="test_acc") -> pd.DataFrame:
    """One-at-a-time sweeps: for each swept parameter, the runs whose other parameters sit at
    the base; mean/std over seeds of the final ``metric`` per value. Joint sweeps (two keys that
    always change together, like m_L/m_H) show up as one parameter named ``a/b``."""
    rows = []
    for (m, ds, st), keys in swept(final).items():
        g = final[(final["method"] == m) & (final["dataset"] == ds) & (final["setting"] == st)]
        base = base_params(g)
        for key in _joint(g, keys):
            parts = key.split("/")
            for pk, gp in g.groupby("params_key"):
                p = _params(pk)
                if any(p.get(k) != base.get(k) for k in set(p) | set(base) if k not in parts):
                    continue
                value = "/".join(str(p.get(k)) for k in parts)
                rows.append(dict(method=m, dataset=ds, setting=st, param=key, value=value,
                                 numeric=_num(value), mean=gp[metric].mean(),
                                 std=gp[metric].std(), n=len(gp)))
    out = pd.DataFrame(rows)
    return out.groupby(["method", "dataset", "setting", "param"]).filter(lambda g: len(g) > 1) \
        if len(out) else out


def _joint(g: pd.DataFrame, keys: list[str]) -> list[str]:
    """Group keys whose values change only together (across the runs' parameter sets)."""
    ps = [_params(p) for p in g["params_key"].unique()]
    groups: list[list[str]] = []
    for k in keys:
        sig = [repr(p.get(k)) for p in ps]
        for grp in groups:
            other = [repr(p.get(grp[0])) for p in ps]
            if len(set(zip(sig, other))) == len(set(sig)) == len(set(other)):
                grp.append(k)
                break
        else:
            groups.append([k])
    return ["/".join(grp) for grp in groups]


def _num(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("nan")


def plugin_bases(df: pd.DataFrame, ours=None) -> dict[str, str]:
    """"Ours on top of X" pairs (Fig. 5a, Fig. 6): each ours method that is no ablation ->
    the method its ``plugin_of`` names under its recorded parameters, when that ran as a
    baseline. An ablation (declared) changes ours, not what it runs on: it pairs with none."""
    is_ours = ours_predicate(ours)
    methods = set(df["method"].unique())
    out = {}
    for m in sorted(m for m in methods if is_ours(m) and declared.family(m) != "ablation"):
        for pk in sorted(df.loc[df["method"] == m, "params_key"].unique()):
            base = declared.plugin_of(m, _params(pk))
            if base in methods and not is_ours(base):
                out[m] = base
                break
    return out
