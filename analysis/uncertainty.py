"""What a study can resolve: a noise model of paired differences, the minimal detectable
difference (MDD) of the paired t-test, the seeds a comparison would need, and bootstrap
confidence intervals over seeds.

Noise model. A comparison pairs ours and a baseline on the same dataset, seed and round >= 1
(as ``stats.paired_tests`` does) and tests the mean of the differences d. Two things make d
vary: training randomness (the seed: initialisation, data order, the labels chosen, and with
them the round-to-round course) and test-set sampling, since each accuracy is a share of n_test
texts. Per (setting, dataset), pooled over every ours-vs-baseline comparison there:

    sd^2 = var(d) = sd_seed^2 + sd_test^2,   sd_test^2 = (p_o (1 - p_o) + p_b (1 - p_b)) / n_test

sd is measured (the pooled SD of d), sd_test is the binomial noise of two accuracies whose errors
fall on independent texts, and sd_seed is what the records show beyond it. Two models err on
overlapping hard texts, so sd_test is an upper bound; where it exceeds sd, sd_seed is 0 and the
test-set size, not the seeds, is what limits the study. The MDD is the smallest true difference
the two-sided paired t-test over n pairs with SD sd detects with 80% power at alpha 0.05
(non-central t); a comparison whose |mean difference| is below it is "unresolved": the study
could not reliably tell it from noise, whatever its p-value. Caveats: rounds of one seed are
correlated, so (seed, round) pairs are fewer independent observations than they count as and
the MDD is optimistic; and the test set is the same for every seed, so the numbers are about
this test set (more seeds shrink the training noise, not the sampling error of a fixed test set
against the population).

Nothing here names a method: ``ours`` is the predicate / prefix of ``stats.ours_predicate``.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

from . import stats

ALPHA, POWER, CONFIDENCE = 0.05, 0.80, 0.95
MOST_SEEDS = 10_000   # seeds_needed answers inf beyond this


# ---------------------------------------------------------------------------------------------
# Power of the paired t-test
# ---------------------------------------------------------------------------------------------
def power(delta: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Probability that a two-sided paired t-test over ``n`` pairs with SD ``sd`` rejects when
    the true mean difference is ``delta``."""
    df = n - 1
    nc = delta * math.sqrt(n) / sd
    if df > 10_000:  # t = normal to 4 digits; scipy's non-central t loses precision out there
        crit = sps.norm.ppf(1 - alpha / 2)
        return float(sps.norm.sf(crit - nc) + sps.norm.cdf(-crit - nc))
    crit = sps.t.ppf(1 - alpha / 2, df)
    upper, lower = sps.nct.sf(crit, df, nc), sps.nct.cdf(-crit, df, nc)
    # far in a tail scipy returns NaN where the probability is 0 (or 1)
    return float(np.nan_to_num(upper, nan=float(nc > crit)) + np.nan_to_num(lower, nan=0.0))


def mdd(sd: float, n: int, alpha: float = ALPHA, target: float = POWER) -> float:
    """Minimal detectable difference: the smallest true difference with ``power >= target``.
    NaN for fewer than two pairs or an unknown SD; 0 for noise-free pairs."""
    if n is None or n < 2 or not np.isfinite(sd):
        return float("nan")
    if sd <= 0:
        return 0.0
    hi = 2 * (sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(target)) * sd / math.sqrt(n)
    while power(hi, sd, n, alpha) < target:  # the normal approximation, doubled, brackets it
        hi *= 2
    return float(optimize.brentq(lambda d: power(d, sd, n, alpha) - target, 0.0, hi,
                                 xtol=1e-12 * sd))


def seeds_needed(diff: float, sd: float, rounds: int, alpha: float = ALPHA,
                 target: float = POWER, most: int = MOST_SEEDS) -> float:
    """Seeds (each adding ``rounds`` pairs) at which the MDD falls to ``|diff|``: how many a
    study would need to resolve a true difference of that size. ``inf`` beyond ``most``."""
    diff = abs(diff)
    if not (np.isfinite(diff) and np.isfinite(sd)) or rounds < 1:
        return float("nan")
    if diff == 0:
        return math.inf

    def ok(s: int) -> bool:
        return s * rounds >= 2 and mdd(sd, s * rounds, alpha, target) <= diff
    if not ok(most):
        return math.inf
    lo, hi = 0, most  # ok(hi) holds, ok(lo) does not: the MDD falls as pairs are added
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return float(hi)


# ---------------------------------------------------------------------------------------------
# The noise model of a study
# ---------------------------------------------------------------------------------------------
def test_size(acc: pd.Series, configured=None) -> float:
    """Texts behind an accuracy, which the records do not store: the smallest denominator the
    accuracies share. With fewer than 10 distinct values that can be a divisor of the true size
    (all numerators even), so then the configured test size wins when it is a multiple of it (a
    configured size is only a cap: a test file may be smaller)."""
    values = np.unique(pd.Series(acc).dropna().to_numpy(float))
    if not len(values):
        return float("nan")
    denom = 1
    for v in values:
        denom = math.lcm(denom, Fraction(float(v)).limit_denominator(100_000).denominator)
        if denom > 10**7:
            return float("nan")
    sizes = pd.Series(configured).dropna() if configured is not None else pd.Series(dtype=float)
    if len(values) < 10 and len(sizes) and sizes.nunique() == 1 \
            and float(sizes.iloc[0]) % denom == 0:
        return float(sizes.iloc[0])
    return float(denom)


def _pairs(df: pd.DataFrame, ours, metric: str, min_round: int) -> pd.DataFrame:
    """Every ours-vs-baseline pair on the same setting, dataset, seed and round."""
    is_ours = stats.ours_predicate(ours)
    key = ["setting", "dataset", "seed", "round"]
    d = df[df["round"] >= min_round].dropna(subset=[metric])
    d = d.groupby(key + ["method"], as_index=False)[metric].mean()
    mine = d[d["method"].map(is_ours)]
    base = d[~d["method"].map(is_ours)]
    return mine.merge(base, on=key, suffixes=("_o", "_b")).rename(
        columns={"method_o": "ours", "method_b": "baseline"})


def noise_model(df: pd.DataFrame, ours, metric: str = "test_acc", min_round: int = 1,
                alpha: float = ALPHA, target: float = POWER) -> pd.DataFrame:
    """Per (setting, dataset): the SD of a paired difference pooled over every (ours method,
    baseline) comparison, its binomial test-set part and seed-to-seed rest, the pairs per
    comparison (seeds x rounds) and the MDD at that many pairs. Accuracies as fractions."""
    pairs = _pairs(df, ours, metric, min_round)
    rows = []
    for (setting, ds), g in pairs.groupby(["setting", "dataset"]):
        n_test = test_size(pd.concat([g[f"{metric}_o"], g[f"{metric}_b"]]),
                           df.loc[df["dataset"] == ds, "test_size"] if "test_size" in df else None)
        ss = dof = 0.0
        n_list, seeds, rounds = [], [], []
        for _, c in g.groupby(["ours", "baseline"]):
            d = c[f"{metric}_o"] - c[f"{metric}_b"]
            if len(d) < 2:
                continue
            ss += float(((d - d.mean()) ** 2).sum())
            dof += len(d) - 1
            n_list.append(len(d))
            seeds.append(c["seed"].nunique())
            rounds.append(c["round"].nunique())
        if not dof:
            continue
        sd_pair = math.sqrt(ss / dof)
        po, pb = g[f"{metric}_o"], g[f"{metric}_b"]
        sd_test = math.sqrt(((po * (1 - po) + pb * (1 - pb)) / max(n_test - 1, 1)).mean()) \
            if np.isfinite(n_test) else float("nan")
        sd_seed = math.sqrt(max(sd_pair ** 2 - sd_test ** 2, 0.0)) if sd_test == sd_test \
            else sd_pair
        n = int(np.median(n_list))
        rows.append(dict(setting=setting, dataset=ds, comparisons=len(n_list),
                         seeds=int(np.median(seeds)), rounds=int(np.median(rounds)), n_pairs=n,
                         n_test=n_test, sd=sd_pair, sd_seed=sd_seed, sd_test=sd_test,
                         mdd=mdd(sd_pair, n, alpha, target)))
    return pd.DataFrame(rows)


def resolve(tests: pd.DataFrame, noise: pd.DataFrame) -> pd.DataFrame:
    """``stats.paired_tests`` rows (by setting and dataset) with the group's MDD and a verdict:
    ``unresolved`` where |mean difference| < MDD, else ``better`` / ``worse`` (ours than the
    baseline) where the test is significant after Holm's correction across the baselines (a
    verdict is a conclusion drawn from a family of tests, like ``pseudo_label_gain``'s), else
    ``not significant``."""
    if tests.empty:
        return tests
    cols = ["setting", "dataset", "mdd", "sd", "rounds"]
    out = tests.merge(noise[cols], on=["setting", "dataset"], how="left") if len(noise) \
        else tests.assign(mdd=np.nan, sd=np.nan, rounds=np.nan)
    out["resolved"] = ~(out["mean_diff"].abs() < out["mdd"])
    out["verdict"] = np.where(~out["resolved"], "unresolved",
                              np.where(~out["significant_holm"], "not significant",
                                       np.where(out["mean_diff"] > 0, "better", "worse")))
    out["seeds_needed"] = [seeds_needed(d, s, int(r)) if r == r else float("nan")
                           for d, s, r in zip(out["mean_diff"], out["sd"], out["rounds"])]
    return out.drop(columns=["sd", "rounds"])


def headline(summary: pd.DataFrame, resolved: pd.DataFrame) -> pd.DataFrame:
    """``stats.wins_summary`` (ours vs the strongest baseline per setting and dataset) with the
    MDD, the verdict of the paired test and the seeds that would resolve the difference."""
    if summary.empty or resolved.empty:
        return summary
    keep = ["setting", "dataset", "ours", "baseline", "n_pairs", "p", "mdd", "verdict",
            "seeds_needed"]
    out = summary.merge(resolved[keep], on=["setting", "dataset", "ours", "baseline"], how="left")
    out.insert(out.columns.get_loc("p"), "mdd_pts", 100 * out.pop("mdd"))
    return out


def mdd_caption(noise: pd.DataFrame) -> str:
    """``MDD, the smallest difference ...: al/sst2 1.12, al/trec 0.85 points`` for a caption."""
    if noise.empty:
        return ""
    parts = ", ".join(f"{r.setting}/{r.dataset} {100 * r.mdd:.2f}"
                      for r in noise.itertuples())
    n = sorted({f"{r.n_pairs} (seed, round) pairs ({r.seeds} seeds x {r.rounds} rounds)"
                for r in noise.itertuples()})
    return (f"MDD, the smallest difference a paired t-test over {' / '.join(n)} detects with "
            f"{POWER:.0%} power at alpha {ALPHA}: {parts} points")


RESOLUTION_NOTE = (
    f"MDD: the smallest true difference the paired t-test over (seed, round >= 1) pairs detects "
    f"with {POWER:.0%} power at alpha {ALPHA}; a comparison whose |mean difference| is below it "
    "is unresolved, neither a win nor a loss. SD of a paired difference (points): measured, its "
    "seed-to-seed part and the binomial bound of the n_test test texts. The headline compares "
    "ours with the strongest baseline; seeds_needed: seeds at which the MDD falls to its "
    "margin. Rounds of a seed are correlated, so these figures are optimistic.")


def resolution_table(noise: pd.DataFrame, head: pd.DataFrame) -> pd.DataFrame:
    """The report index's "What the study can resolve" table (see ``RESOLUTION_NOTE``): per
    setting and dataset the noise model, the MDD, and the headline comparison (``headline``)
    with its verdict and the seeds that would resolve it."""
    if noise.empty:
        return pd.DataFrame()
    rows = []
    for r in noise.itertuples():
        h = head[(head["setting"] == r.setting) & (head["dataset"] == r.dataset)] \
            if len(head) and "verdict" in head else head.iloc[:0]
        row = dict(setting=r.setting, dataset=r.dataset, seeds=r.seeds, rounds=r.rounds,
                   mdd_pts=round(100 * r.mdd, 2), sd_pts=round(100 * r.sd, 2),
                   sd_seed_pts=round(100 * r.sd_seed, 2), sd_test_pts=round(100 * r.sd_test, 2),
                   n_test=r.n_test, headline="–", margin_pts=np.nan, verdict="–",
                   seeds_needed="–")
        for x in h.itertuples():
            need = x.seeds_needed
            row.update(headline=f"{x.ours} vs {x.baseline}",
                       margin_pts=round(x.mean_margin_pts, 2), verdict=x.verdict,
                       seeds_needed=f"> {MOST_SEEDS:,}" if need == math.inf else
                       f"{need:.0f}" if need == need else "–")
        rows.append(row)
    return pd.DataFrame(rows).set_index(["setting", "dataset"])


# ---------------------------------------------------------------------------------------------
# Bootstrap confidence intervals over seeds
# ---------------------------------------------------------------------------------------------
def bootstrap_ci(values, confidence: float = CONFIDENCE, n_resamples: int = 9999,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds (scipy.stats.bootstrap). With few
    seeds it is too narrow (3 seeds: at most the range of the three), which the report says."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    ci = sps.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                       method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def final_ci(final: pd.DataFrame, metric: str = "test_acc",
             confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Final-round ``metric`` per (setting, method, dataset): mean over seeds and its bootstrap
    interval (fractions)."""
    rows = []
    for (st, m, ds), g in final.groupby(["setting", "method", "dataset"]):
        lo, hi = bootstrap_ci(g[metric], confidence)
        rows.append(dict(setting=st, method=m, dataset=ds, n=len(g), mean=g[metric].mean(),
                         ci_low=lo, ci_high=hi))
    return pd.DataFrame(rows)


def _seed_curves(df: pd.DataFrame, method: str, setting: str, ds: str, metric: str):
    g = df[(df["method"] == method) & (df["setting"] == setting) & (df["dataset"] == ds)]
    acc = g.pivot_table(index="seed", columns="round", values=metric, aggfunc="mean")
    labels = g.groupby("round")["n_labels"].mean().reindex(acc.columns).to_numpy(float)
    return acc.dropna(axis=1), labels[~acc.isna().any().to_numpy()]


def label_efficiency_ci(df: pd.DataFrame, eff: pd.DataFrame, ours_setting: str = "ssal",
                        metric: str = "test_acc", confidence: float = CONFIDENCE,
                        n_resamples: int = 1999) -> pd.DataFrame:
    """``stats.label_efficiency`` rows with bootstrap intervals over seeds: resample the seeds
    ours and the baseline share (paired), redo the mean curves, ours' target (its final mean),
    both label counts and the saving. A resample whose baseline never reaches the target needs
    more labels than were run (count +inf, saving 100%), so an upper end can be open."""
    if eff is None or eff.empty:
        return eff
    out = eff.copy()
    for col in ("ours_labels", "baseline_labels", "saving_pct"):
        out[f"{col}_lo"] = out[f"{col}_hi"] = np.nan
    for i, r in eff.iterrows():
        mine, x_o = _seed_curves(df, r["ours"], ours_setting, r["dataset"], metric)
        theirs, x_b = _seed_curves(df, r["baseline"], r["setting"], r["dataset"], metric)
        shared = mine.index.intersection(theirs.index)
        if len(shared) < 2 or not mine.shape[1] or not theirs.shape[1]:
            continue
        a, b = mine.loc[shared].to_numpy(), theirs.loc[shared].to_numpy()

        def statistic(idx):
            mo, mb = a[idx].mean(0), b[idx].mean(0)
            target = mo[-1]
            n_o = stats.labels_to_reach(x_o, mo, target)
            n_b = stats.labels_to_reach(x_b, mb, target)
            n_b = math.inf if n_b != n_b else n_b
            return np.array([n_o, min(n_b, 1e12), 100 * (1 - n_o / n_b)])
        ci = sps.bootstrap((np.arange(len(shared)),), statistic, vectorized=False,
                           confidence_level=confidence, n_resamples=n_resamples,
                           method="percentile", rng=np.random.default_rng(0)).confidence_interval
        for k, col in enumerate(("ours_labels", "baseline_labels", "saving_pct")):
            lo, hi = float(ci.low[k]), float(ci.high[k])
            if col == "baseline_labels":  # beyond the labels run: never reached
                lo, hi = (math.inf if v > x_b.max() else v for v in (lo, hi))
            out.loc[i, f"{col}_lo"], out.loc[i, f"{col}_hi"] = lo, hi
    return out
