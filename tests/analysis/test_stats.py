"""Statistics against known answers: scipy's paired t-test, hand-made curves, pandas."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import stats, tables


def _rows(method, accs_by_seed, dataset="trec", setting="ssal", n_pseudo=0):
    return [dict(method=method, dataset=dataset, setting=setting, seed=s, round=t,
                 n_labels=100 * (t + 1), test_acc=a, n_pseudo=n_pseudo if t else 0,
                 run=f"{method}{s}")
            for s, accs in enumerate(accs_by_seed) for t, a in enumerate(accs)]


def test_paired_ttest_equals_scipy_on_hand_made_pairs():
    ours = [[0.5, 0.71, 0.80, 0.84], [0.5, 0.69, 0.78, 0.86], [0.5, 0.72, 0.83, 0.85]]
    base = [[0.5, 0.70, 0.76, 0.80], [0.5, 0.70, 0.77, 0.83], [0.5, 0.66, 0.80, 0.84]]
    df = pd.DataFrame(_rows("actune", ours) + _rows("entropy", base))
    res = stats.paired_tests(df, ours="actune")
    assert len(res) == 1
    r = res.iloc[0]
    # pairs: same seed and round, round 0 left out -> 3 seeds x 3 rounds
    x = [a for accs in ours for a in accs[1:]]
    y = [a for accs in base for a in accs[1:]]
    t, p = sps.ttest_rel(x, y)
    assert r["n_pairs"] == 9
    assert r["t"] == pytest.approx(t) and r["p"] == pytest.approx(p)
    assert r["mean_diff"] == pytest.approx(np.mean(np.subtract(x, y)))
    assert r["significant"] == (p < 0.05)


def test_pairs_only_on_shared_seed_and_round():
    df = pd.DataFrame(_rows("actune", [[0.5, 0.8, 0.9]] * 3) +
                      _rows("random", [[0.5, 0.7, 0.85]] * 2))  # random lacks seed 2
    r = stats.paired_tests(df, ours="actune").iloc[0]
    assert r["n_pairs"] == 4


def test_holm_hand_computed():
    # sorted p: 0.01, 0.02, 0.04 -> 3*0.01 = 0.03, max(0.03, 2*0.02) = 0.04, max(0.04, 1*0.04)
    np.testing.assert_allclose(stats.holm([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])
    # monotone step-down and capped at 1
    np.testing.assert_allclose(stats.holm([0.5, 0.001, 0.6]), [1.0, 0.003, 1.0])
    out = stats.holm([0.01, np.nan])
    assert out[0] == pytest.approx(0.01) and np.isnan(out[1])


def test_holm_column_in_tests():
    rng = np.random.default_rng(0)
    rows = _rows("actune", rng.uniform(0.7, 0.9, (3, 4)).tolist())
    for m in ("a", "b", "c"):
        rows += _rows(m, rng.uniform(0.6, 0.85, (3, 4)).tolist())
    res = stats.paired_tests(pd.DataFrame(rows), ours="actune")
    np.testing.assert_allclose(res["p_holm"], stats.holm(res["p"]))
    assert (res["p_holm"] >= res["p"]).all()


def test_labels_to_reach_interpolates():
    x, y = [100, 200, 300, 400], [0.60, 0.70, 0.80, 0.90]
    # 0.75 lies halfway between (200, 0.70) and (300, 0.80)
    assert stats.labels_to_reach(x, y, 0.75) == pytest.approx(250)
    assert stats.labels_to_reach(x, y, 0.80) == pytest.approx(300)
    assert stats.labels_to_reach(x, y, 0.50) == pytest.approx(100)  # reached at once
    assert np.isnan(stats.labels_to_reach(x, y, 0.95))               # never reached
    # first crossing counts, not a later one after a dip
    assert stats.labels_to_reach([0, 10, 20, 30], [0.0, 1.0, 0.2, 1.0], 0.5) == pytest.approx(5)


def test_label_efficiency_saving():
    # ours reaches 0.80 with 300 labels; the AL baseline reaches 0.80 at 500 -> saving 40%
    rows = _rows("actune", [[0.6, 0.7, 0.8]], n_pseudo=5)
    rows += _rows("cal", [[0.6, 0.65, 0.70, 0.75, 0.80]], setting="al")
    rows += _rows("st", [[0.6, 0.62, 0.64]], n_pseudo=5)
    df = pd.DataFrame(rows)
    fams = stats.families(df, "actune")
    assert fams == {"actune": "ours", "cal": "active learning", "st": "self-training"}
    eff = stats.label_efficiency(stats.curves(df), fams, "actune").set_index("family")
    assert eff.loc["active learning", "baseline_labels"] == pytest.approx(500)
    assert eff.loc["active learning", "saving_pct"] == pytest.approx(40.0)
    assert not eff.loc["self-training", "reached"]
    assert np.isnan(eff.loc["self-training", "saving_pct"])


def test_label_efficiency_counts_ours_where_it_first_reaches_its_final_accuracy():
    # ours peaks at 200 labels and ends lower: 0.75 is first reached half-way to 200 labels
    rows = _rows("actune", [[0.6, 0.9, 0.75]], n_pseudo=5)
    rows += _rows("cal", [[0.6, 0.65, 0.70, 0.75]], setting="al")
    df = pd.DataFrame(rows)
    eff = stats.label_efficiency(stats.curves(df), stats.families(df, "actune"), "actune")
    row = eff.set_index("family").loc["active learning"]
    assert row["ours_labels"] == pytest.approx(150)
    assert row["baseline_labels"] == pytest.approx(400)
    assert row["saving_pct"] == pytest.approx(100 * (1 - 150 / 400))


def test_family_mapping_overrides_data():
    df = pd.DataFrame(_rows("cal", [[0.5, 0.6]]) + _rows("st", [[0.5, 0.6]], n_pseudo=3))
    assert stats.families(df, "actune", {"cal": "self-training"})["cal"] == "self-training"
    assert stats.families(df, "actune")["st"] == "self-training"


def test_curve_bands_match_pandas():
    rng = np.random.default_rng(1)
    df = pd.DataFrame(_rows("entropy", rng.uniform(0.5, 0.9, (4, 3)).tolist()))
    c = stats.curves(df).set_index("round")
    for t, g in df.groupby("round"):
        assert c.loc[t, "mean"] == pytest.approx(g["test_acc"].mean())
        assert c.loc[t, "std"] == pytest.approx(g["test_acc"].std())  # ddof=1, as pandas
        assert c.loc[t, "std"] == pytest.approx(np.std(g["test_acc"], ddof=1))
        assert c.loc[t, "n"] == 4


def test_ours_predicate_and_plugins():
    is_ours = stats.ours_predicate("actune")
    # actune and the variants it declares; a name is no declaration ("actune-x" is unknown)
    assert is_ours("actune") and is_ours("actune-cal") and is_ours("actune-no-mmb")
    assert not is_ours("actuned") and not is_ours("actune-x") and not is_ours("entropy")
    assert not stats.ours_predicate(["x"])("actune")
    # without --ours: the methods that declare family "ours" and vary no other
    assert stats.resolve_ours(None) == "actune" and stats.ours_predicate(None)("actune-badge")
    df = pd.DataFrame([dict(method=m, params_key=pk) for m, pk in [
        ("actune-cal", "{}"), ("cal", "{}"), ("entropy", "{}"), ("actune-no-rs", "{}"),
        ("actune", '{"uncertainty": "entropy"}'),
        ("actune-no-mmb", '{"uncertainty": "entropy", "memory_bank": "none"}')]])
    # actune-no-mmb is an ablation of actune, not "ours on top of entropy"
    assert stats.plugin_bases(df) == {"actune-cal": "cal", "actune": "entropy"}


def test_sweep_points_one_at_a_time_and_joint():
    import json
    rows = []
    for seed in range(2):
        for p, acc in [({"beta": 0.5, "K": 25}, 0.8), ({"beta": 0.1, "K": 25}, 0.7),
                       ({"beta": 0.5, "K": 10}, 0.6)]:
            rows.append(dict(method="m", dataset="d", setting="ssal", seed=seed, test_acc=acc,
                             params_key=json.dumps(p, sort_keys=True), run=f"{p}{seed}{acc}"))
    pts = stats.sweep_points(pd.DataFrame(rows)).set_index(["param", "value"])
    assert pts.loc[("beta", "0.1"), "mean"] == pytest.approx(0.7)
    assert pts.loc[("beta", "0.5"), "mean"] == pytest.approx(0.8)   # the base (K = 25)
    assert pts.loc[("K", "10"), "mean"] == pytest.approx(0.6)
    # two keys that always move together form one joint sweep
    rows = [dict(method="m", dataset="d", setting="ssal", seed=0, test_acc=a, run=str(a),
                 params_key=json.dumps({"m_L": lo, "m_H": hi}, sort_keys=True))
            for lo, hi, a in [(0.7, 0.9, 0.1), (0.8, 1.0, 0.2)]]
    params = set(stats.sweep_points(pd.DataFrame(rows))["param"])
    assert {tuple(sorted(p.split("/"))) for p in params} == {("m_H", "m_L")}


def test_versus_the_strongest_baseline_counts_rounds_ahead_and_margins():
    # entropy is stronger than random over rounds 1-3 (mean 0.80 vs 0.70), so it is the one
    # compared; ours leads it in rounds 1 and 3 (+2, +4 points) and trails in round 2 (-1)
    rows = _rows("actune", [[0.5, 0.80, 0.79, 0.86]], setting="al")
    rows += _rows("entropy", [[0.5, 0.78, 0.80, 0.82]], setting="al")
    rows += _rows("random", [[0.5, 0.81, 0.60, 0.69]], setting="al")
    vs = stats.versus_best(stats.curves(pd.DataFrame(rows)), "actune")
    assert set(vs["baseline"]) == {"entropy"} and list(vs["round"]) == [1, 2, 3]
    assert vs["diff"].tolist() == pytest.approx([0.02, -0.01, 0.04])
    s = stats.wins_summary(vs).iloc[0]
    assert (s["rounds_ahead"], s["rounds"]) == (2, 3)
    assert s["mean_margin_pts"] == pytest.approx(100 * 0.05 / 3)
    assert (s["min_margin_pts"], s["max_margin_pts"]) == pytest.approx((-1.0, 4.0))


def test_saving_summary_averages_only_savings_of_one_sign():
    eff = pd.DataFrame(dict(dataset=["sst2", "sst2", "trec", "trec"],
                            baseline=["bald", "asst", "cal", "ceal"], reached=True,
                            saving_pct=[-12.6, -7.4, 16.6, 25.4]))
    # mean 5.5% would hide that ours needs more labels on sst2: the range is given instead
    assert stats.saving_summary(eff) == (
        "from -13% (sst2, bald) to +25% (trec, ceal): 2 of 4 comparisons save labels, "
        "2 need more (signs differ: no average)")
    trec = eff[eff["dataset"] == "trec"]
    assert stats.saving_summary(trec) == "average 21.0% over 2 comparisons"  # (16.6 + 25.4) / 2
    missed = pd.concat([trec, pd.DataFrame(dict(dataset=["x"], baseline=["y"], reached=[False],
                                                saving_pct=[float("nan")]))])
    assert stats.saving_summary(missed) == "average 21.0% over 2 comparisons; 1 not reached"


def test_plot_groups_read_the_methods_declared_family():
    df = pd.DataFrame(_rows("actune", [[0.5, 0.6]], n_pseudo=3)
                      + _rows("actune-no-mmb", [[0.5, 0.6]], n_pseudo=3)
                      + _rows("actune-badge", [[0.5, 0.6]], n_pseudo=3)
                      + _rows("entropy", [[0.5, 0.6]]) + _rows("ceal", [[0.5, 0.6]], n_pseudo=3)
                      + _rows("ust", [[0.5, 0.6]], n_pseudo=3)
                      + _rows("my-own", [[0.5, 0.6]], n_pseudo=3))   # not registered
    assert stats.plot_groups(df, "actune") == {
        "actune": "ours", "actune-no-mmb": "ablation", "actune-badge": "plug-in",
        "entropy": "AL", "ceal": "SSAL", "ust": "ST", "my-own": "ST"}
    # --ours decides what is ours: with entropy as ours, ACTUNE's runs are baselines
    groups = stats.plot_groups(df, ["entropy"])
    assert groups["entropy"] == "ours" and groups["actune"] == "ST"


def test_pseudo_label_gain_pairs_each_ssal_method_with_its_declared_al_counterpart():
    rng = np.random.default_rng(0)
    curve = lambda shift: [[0.5, *(0.8 + shift + rng.normal(0, 0.004, 4))] for _ in range(3)]
    rows = (_rows("asst", curve(0.02), setting="ssal", n_pseudo=50)        # entropy's queries
            + _rows("entropy", curve(0.0), setting="al")
            + _rows("bass", curve(0.0), setting="ssal", n_pseudo=50)       # bald's queries
            + _rows("bald", curve(0.0), setting="al")
            + _rows("cosine", curve(0.0), setting="ssal")                  # no random AL run
            + _rows("revival", curve(0.0), setting="ssal")                 # declares none
            + _rows("entropy", curve(-0.05), setting="ssal"))              # none: not SSAL's
    params = {"asst": '{"uncertainty": "entropy"}'}
    df = pd.DataFrame(rows).assign(params_key=lambda d: d["method"].map(params).fillna("{}"))
    asst_later = (df.method == "asst") & (df["round"] >= 1)
    df.loc[asst_later, "pseudo_acc"] = np.linspace(0.7, 0.9, asst_later.sum())  # 12 rounds
    res = stats.pseudo_label_gain(df).set_index("method")
    assert list(res.index) == ["asst", "bass"]
    assert res.loc["asst", "al_counterpart"] == "entropy"
    assert res.loc["bass", "al_counterpart"] == "bald"
    x = df[(df.method == "asst") & (df["round"] >= 1)]["test_acc"].to_numpy()
    y = df[(df.method == "entropy") & (df.setting == "al") & (df["round"] >= 1)]["test_acc"]
    t, p = sps.ttest_rel(x, y.to_numpy())
    r = res.loc["asst"]
    assert r["n_pairs"] == 12 and r["seeds"] == 3 and r["rounds_ahead"] == 12
    assert r["mean_diff"] == pytest.approx(np.mean(x - y.to_numpy()))
    assert r["t"] == pytest.approx(t) and r["p"] == pytest.approx(p)
    assert list(res["p_holm"]) == pytest.approx(list(stats.holm(res["p"])))   # across methods
    assert r["verdict"] == "gain"                       # 2 points, far above its MDD
    assert r["mean_pseudo"] == 50
    assert r["mean_pseudo_acc"] == pytest.approx(0.8)   # its 12 rounds' mean; bass had none
    assert np.isnan(res.loc["bass", "mean_pseudo_acc"])
    assert tables.pseudo_gain_table(res.reset_index())["pseudo_acc_pct"].loc["trec", "asst"] == 80
    assert res.loc["bass", "verdict"] in ("unresolved", "not significant")


def test_a_run_that_never_got_pseudo_labels_is_named_not_tested():
    """CEAL whose threshold nothing passes trains on exactly Entropy's data: its zero gain says
    nothing about pseudo-labels, and the table must say so rather than 'not significant'."""
    curve = [[0.5, 0.81, 0.84, 0.86], [0.5, 0.80, 0.85, 0.87]]
    rows = _rows("ceal", curve, setting="ssal") + _rows("entropy", curve, setting="al")
    df = pd.DataFrame(rows).assign(params_key="{}")
    r = stats.pseudo_label_gain(df).set_index("method").loc["ceal"]
    assert r["mean_pseudo"] == 0 and r["mean_diff"] == 0
    assert r["verdict"] == "no pseudo-labels"
    assert tables.pseudo_gain_table(stats.pseudo_label_gain(df))["mean_pseudo"].iloc[0] == 0


def test_al_counterparts_follow_the_params_a_run_recorded():
    from analysis import declared

    assert declared.al_counterpart("asst", {}) == "entropy"
    assert declared.al_counterpart("asst", {"uncertainty": "bald"}) == "bald"
    assert declared.al_counterpart("actune", {}) == "actune"
    assert declared.al_counterpart("st", {}) == "random"
    assert declared.al_counterpart("revival", {}) is None
    assert declared.al_counterpart("not-a-method", {}) is None
