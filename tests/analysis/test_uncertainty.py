"""What a study can resolve, checked on synthetic records with known noise: the MDD has the power
it claims, the study's estimate of it lands on the analytic value, planted differences above and
below it are called resolved and unresolved, and bootstrap intervals cover at their level."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from conftest import curve, write_run

from analysis import stats, tables, uncertainty
from analysis.report import build_report

N_TEST = 500


def study(rng, true_acc: dict, seeds=20, rounds=10, tau=0.01, n_test=N_TEST, setting="ssal",
          dataset="trec") -> pd.DataFrame:
    """Rounds 1..R of each (method, seed): a model's true accuracy is the method's plus a
    N(0, tau) training draw, measured on ``n_test`` texts (binomial)."""
    rows = []
    for m, p in true_acc.items():
        for s in range(seeds):
            for t in range(1, rounds + 1):
                q = float(np.clip(p + rng.normal(0, tau), 0, 1))
                rows.append(dict(method=m, dataset=dataset, setting=setting, seed=s, round=t,
                                 n_labels=100 * (t + 1), test_acc=rng.binomial(n_test, q) / n_test,
                                 test_size=n_test, run=f"{m}_{s}"))
    return pd.DataFrame(rows)


def analytic_sd(p_ours, p_base, tau, n_test=N_TEST) -> float:
    """SD of a paired difference under the generator: two training draws plus two binomials
    (E[q(1-q)] = p(1-p) - tau^2 for q ~ N(p, tau^2))."""
    binom = (p_ours * (1 - p_ours) + p_base * (1 - p_base) - 2 * tau ** 2) / n_test
    return math.sqrt(2 * tau ** 2 + binom)


def test_mdd_has_the_power_it_claims():
    """At the MDD, simulated paired t-tests reject 80% of the time; at half of it far less."""
    rng = np.random.default_rng(0)
    n, sd = 30, 1.0
    delta = uncertainty.mdd(sd, n)
    crit = sps.t.ppf(0.975, n - 1)

    def rejection_rate(d):
        x = rng.normal(d, sd, size=(20000, n))
        t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(n))
        return float((np.abs(t) > crit).mean())
    assert rejection_rate(delta) == pytest.approx(0.80, abs=0.015)
    assert rejection_rate(delta / 2) < 0.40
    assert uncertainty.power(delta, sd, n) == pytest.approx(0.80, abs=1e-6)
    # for many pairs it tends to the normal-theory (z_0.975 + z_0.8) sd / sqrt(n)
    z = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) / math.sqrt(5000)
    assert uncertainty.mdd(1.0, 5000) == pytest.approx(z, rel=2e-3)
    assert math.isnan(uncertainty.mdd(1.0, 1)) and uncertainty.mdd(0.0, 30) == 0.0


@pytest.mark.parametrize("tau", [0.0, 0.01, 0.02])
def test_estimated_mdd_within_10_percent_of_the_analytic_value(tau):
    base = {"b1": 0.83, "b2": 0.84, "b3": 0.86, "b4": 0.85}
    df = study(np.random.default_rng(1), {"ours": 0.85, **base}, tau=tau)
    noise = uncertainty.noise_model(df, ["ours"])
    assert len(noise) == 1
    r = noise.iloc[0]
    assert r.n_pairs == 200 and r.seeds == 20 and r.rounds == 10 and r.n_test == N_TEST
    true_sd = math.sqrt(np.mean([analytic_sd(0.85, p, tau) ** 2 for p in base.values()]))
    assert r.mdd == pytest.approx(uncertainty.mdd(true_sd, 200), rel=0.10)
    # the noise model's parts: the binomial bound and the seed-to-seed rest
    binom = math.sqrt(np.mean([analytic_sd(0.85, p, 0) ** 2 for p in base.values()]))
    assert r.sd_test == pytest.approx(binom, rel=0.05)
    # seed-to-seed variance = what is left over the binomial: within ~3 standard errors of the
    # pooled variance (about 8% of the binomial variance at 200 pairs x 4 comparisons)
    assert r.sd_seed ** 2 == pytest.approx(2 * tau ** 2, abs=0.25 * binom ** 2)


def test_planted_differences_above_the_mdd_resolve_and_below_do_not():
    tau, seeds, rounds = 0.01, 10, 10
    sd = analytic_sd(0.85, 0.85, tau)
    m = uncertainty.mdd(sd, seeds * rounds)
    truth = {"ours": 0.85, "far": 0.85 - 2 * m, "near": 0.85 - 0.4 * m}
    df = study(np.random.default_rng(2), truth, seeds=seeds, rounds=rounds, tau=tau)
    noise = uncertainty.noise_model(df, ["ours"])
    assert noise.iloc[0].mdd == pytest.approx(m, rel=0.15)
    tests = uncertainty.resolve(stats.paired_tests(df, ["ours"], by=("setting", "dataset")),
                                noise)
    verdict = dict(zip(tests["baseline"], tests["verdict"]))
    assert verdict == {"far": "better", "near": "unresolved"}
    # the accuracy table marks the resolved win, and the unresolved one as neither win nor loss
    final = df[df["round"] == rounds]
    table = tables.accuracy_table(final, ours=["ours"], tests=tests)
    assert table.loc[("ssal", "far"), "trec"].endswith(" *")
    assert table.loc[("ssal", "near"), "trec"].endswith(" ~")
    assert tests.set_index("baseline").loc["near", "seeds_needed"] > seeds


def test_seeds_needed_is_the_first_seed_count_whose_mdd_reaches_the_difference():
    s = uncertainty.seeds_needed(0.006, 0.02, 10)
    assert uncertainty.mdd(0.02, s * 10) <= 0.006 < uncertainty.mdd(0.02, (s - 1) * 10)
    assert uncertainty.seeds_needed(-0.006, 0.02, 10) == s


def test_a_difference_of_zero_needs_infinitely_many_seeds():
    assert uncertainty.seeds_needed(0.0, 0.02, 10) == math.inf
    assert uncertainty.seeds_needed(1e-9, 0.02, 10) == math.inf  # beyond MOST_SEEDS
    assert uncertainty.seeds_needed(0.05, 0.02, 10) == 1


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    mu, studies, seeds = 0.80, 300, 30
    hits = 0
    for k in range(studies):
        lo, hi = uncertainty.bootstrap_ci(rng.normal(mu, 0.02, seeds), n_resamples=1000, seed=k)
        hits += lo <= mu <= hi
    assert 0.90 <= hits / studies <= 0.98


def test_bootstrap_interval_of_identical_or_single_values():
    assert uncertainty.bootstrap_ci([0.8, 0.8, 0.8]) == (0.8, 0.8)
    assert all(math.isnan(v) for v in uncertainty.bootstrap_ci([0.8]))
    final = pd.DataFrame(dict(setting="al", method="m", dataset="d", seed=[0, 1, 2],
                              test_acc=[0.70, 0.72, 0.74]))
    ci = uncertainty.final_ci(final).iloc[0]
    assert 0.70 - 1e-9 <= ci.ci_low < ci["mean"] < ci.ci_high <= 0.74 + 1e-9


def _curves(method, setting, accs_by_seed, dataset="trec"):
    return [dict(method=method, dataset=dataset, setting=setting, seed=s, round=t,
                 n_labels=100 * (t + 1), test_acc=a, run=f"{method}{s}")
            for s, accs in enumerate(accs_by_seed) for t, a in enumerate(accs)]


def test_label_saving_intervals_collapse_without_seed_noise_and_bracket_the_estimate():
    ours, base = [0.5, 0.8, 0.9, 0.92], [0.5, 0.7, 0.85, 0.95]
    df = pd.DataFrame(_curves("ours", "ssal", [ours] * 3) + _curves("base", "al", [base] * 3))
    curve = stats.curves(df)
    fams = {"ours": stats.OURS, "base": stats.AL}
    eff = uncertainty.label_efficiency_ci(df, stats.label_efficiency(curve, fams, "ours"))
    r = eff.iloc[0]
    assert r.ours_labels_lo == r.ours_labels == r.ours_labels_hi
    assert r.saving_pct_lo == pytest.approx(r.saving_pct) and \
        r.saving_pct_hi == pytest.approx(r.saving_pct)
    rng = np.random.default_rng(4)
    noisy = pd.DataFrame(
        _curves("ours", "ssal", [np.add(ours, rng.normal(0, 0.01, 4)) for _ in range(5)])
        + _curves("base", "al", [np.add(base, rng.normal(0, 0.01, 4)) for _ in range(5)]))
    eff = uncertainty.label_efficiency_ci(noisy, stats.label_efficiency(
        stats.curves(noisy), fams, "ours"))
    r = eff.iloc[0]
    for col in ("ours_labels", "baseline_labels", "saving_pct"):
        assert r[f"{col}_lo"] <= r[col] <= r[f"{col}_hi"]
    assert r.saving_pct_hi > r.saving_pct_lo


def test_test_size_is_read_from_the_accuracies():
    acc = pd.Series(np.arange(380, 480, 7) / 500)
    assert uncertainty.test_size(acc) == 500
    assert uncertainty.test_size(acc, pd.Series([2000])) == 500  # many values: the file's size
    few = pd.Series([0.5, 0.75])  # 2/4 and 3/4 of 500 texts
    assert uncertainty.test_size(few) == 4
    assert uncertainty.test_size(few, pd.Series([500])) == 500


def test_report_shows_mdd_unresolved_marks_and_seeds_needed(tmp_path):
    root = tmp_path / "results"
    for seed in range(3):
        for m, final in (("cal", 0.80), ("st", 0.70), ("ours", 0.81)):
            write_run(root, m, "trec", "ssal", seed, curve(final, seed), pseudo=m != "cal")
    out = tmp_path / "report"
    build_report(root, out, ours="ours", tsne=False)
    index = (out / "index.md").read_text()
    assert "## What the study can resolve" in index and "| seeds_needed |" in index
    accuracy = (out / "tables" / "table_accuracy.md").read_text()
    assert "MDD" in accuracy.splitlines()[0]
    # 11 points ahead of st is resolved; 1 point ahead of cal is not, at this noise
    assert "| ssal | st | 70.00 ± 0.50 (3) * |" in accuracy
    assert "| ssal | cal | 80.00 ± 0.50 (3) ~ |" in accuracy
    vs = (out / "tables" / "table_vs_best.md").read_text()
    assert "MDD" in vs.splitlines()[0] and "| unresolved |" in vs
    assert (out / "tables" / "table_noise.md").exists()
    assert (out / "figures" / "fig_final_ci.png").exists()
    assert "saving_pct_lo" in (out / "tables" / "table_label_efficiency.md").read_text()


def test_a_verdict_needs_the_holm_corrected_p_not_the_raw_one():
    # three baselines, all far above the MDD: p = 0.01 alone is significant, but Holm multiplies
    # the smallest of three p-values by 3 (0.03, still significant) and the second by 2 (0.04 ->
    # 0.08, not): a conclusion from a family of tests must survive the family's correction.
    tests = pd.DataFrame(dict(setting="al", dataset="trec", ours="ours",
                              baseline=["a", "b", "c"], mean_diff=[0.05, -0.05, 0.05],
                              p=[0.01, 0.04, 0.5]))
    tests["p_holm"] = stats.holm(tests["p"].tolist())
    assert tests["p_holm"].round(6).tolist() == [0.03, 0.08, 0.5]
    tests["significant"] = tests["p"] < 0.05
    tests["significant_holm"] = tests["p_holm"] < 0.05
    noise = pd.DataFrame(dict(setting=["al"], dataset=["trec"], mdd=[0.01], sd=[0.02],
                              rounds=[10]))
    verdict = uncertainty.resolve(tests, noise).set_index("baseline")["verdict"].to_dict()
    assert verdict == {"a": "better", "b": "not significant", "c": "not significant"}
