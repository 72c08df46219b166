"""Every figure draws something with labelled axes from synthetic records; Skip when no data."""
import matplotlib
import pandas as pd
import pytest

from analysis import figures, stats
from analysis.load import load_results, main_view


@pytest.fixture
def loaded(synthetic_results):
    res = load_results(synthetic_results)
    return res, main_view(res.rounds)


def _check(fig, tmp_path, name):
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert axes
    drawn = [ax for ax in axes if ax.lines or ax.collections or ax.patches]
    assert drawn
    for ax in axes:  # a panel without data is not drawn at all (no empty 0-1 axes)
        assert ax.get_xlabel() and ax in drawn
    assert any(ax.get_ylabel() for ax in axes)
    png, pdf = figures.save(fig, tmp_path, name)
    assert png.stat().st_size > 5000 and pdf.stat().st_size > 1000


def test_fig1_lines_per_method_and_panels(loaded, tmp_path):
    res, main = loaded
    fig = figures.fig1(main)
    assert len(fig.axes) == 4  # (al, ssal) x (sst2, trec)
    labels = {line.get_label() for line in fig.axes[0].lines}
    # ours and the baselines; the ablation actune-no-mmb is Fig. 5's
    assert labels == set(main.loc[main["setting"] == "al", "method"]) - {"actune-no-mmb"}
    assert "actune-no-mmb" in {ln.get_label() for ax in figures.fig5(main).axes for ln in ax.lines}
    # the plotted mean is the mean over seeds
    line = next(ln for ln in fig.axes[0].lines if ln.get_label() == "actune")
    g = main[(main["method"] == "actune") & (main["setting"] == "al") & (main["dataset"] == "sst2")]
    assert line.get_ydata()[-1] == pytest.approx(100 * g[g["round"] == 3]["test_acc"].mean())
    _check(fig, tmp_path, "fig1")


def test_fig1_styles_families_apart_and_emphasises_ours(loaded):
    _, main = loaded
    fig = figures.fig1(main)
    ax = fig.axes[2]  # sst2, SSAL: ours, AL (cal, entropy, random) and ST (st)
    lines = {ln.get_label(): ln for ln in ax.lines}
    assert lines["actune"].get_linewidth() >= 2 * lines["cal"].get_linewidth()
    assert lines["actune"].get_zorder() > max(ln.get_zorder() for ln in ax.lines
                                              if ln.get_label() != "actune")
    assert lines["st"].get_linestyle() != lines["cal"].get_linestyle()   # another family
    assert len({lines[m].get_marker() for m in ("cal", "entropy", "random")}) == 3
    # a legend per row (right of its last panel), its entries under family headings
    legend = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
    assert legend.index("active learning") < legend.index("cal") < legend.index("self-training")
    # the y-range fits rounds >= 1: round 0 (60%) lies below it, every later mean inside it
    later = [y for ln in ax.lines for y in ln.get_ydata()[1:]]
    lo, hi = ax.get_ylim()
    assert lo > 60.0 and lo <= min(later) and hi >= max(later)


def test_panels_without_runs_are_not_drawn(loaded, tmp_path):
    res, _ = loaded
    # pseudo-label accuracy exists for ssal on both datasets and weak on trec only
    fig = figures.fig4_pseudo(res.rounds)
    shown = [ax for ax in fig.axes if ax.axison]
    assert len(fig.axes) == 4 and len(shown) == 3
    assert not any("no runs" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_fig2_weak(loaded, tmp_path):
    _, main = loaded
    _check(figures.fig2(main), tmp_path, "fig2")
    with pytest.raises(figures.Skip):
        figures.fig2(main[main["setting"] != "weak"])


def test_fig3_label_efficiency(loaded, tmp_path):
    _, main = loaded
    fams = stats.families(main)
    eff = stats.label_efficiency(stats.curves(main), fams, "actune-no-mmb")
    # the 0.79 target is reached by no baseline here (best final 0.78)
    assert not eff["reached"].any()
    eff2 = stats.label_efficiency(stats.curves(main), fams, "actune")
    eff2.loc[0, ["reached", "baseline_labels", "saving_pct"]] = [True, 800.0, 50.0]
    _check(figures.fig3(eff2), tmp_path, "fig3")
    with pytest.raises(figures.Skip):
        figures.fig3(pd.DataFrame())


def test_fig4(loaded, tmp_path):
    res, main = loaded
    final = stats.final_rows(res.rounds, res.runs)
    _check(figures.fig4_params(final), tmp_path, "fig4a")
    _check(figures.fig4_curves(res.rounds), tmp_path, "fig4b")
    fig = figures.fig4_pseudo(res.rounds)
    assert any("beta=0.1" in ln.get_label() for ax in fig.axes for ln in ax.lines)
    _check(fig, tmp_path, "fig4c")
    with pytest.raises(figures.Skip):
        figures.fig4_params(stats.final_rows(main, res.runs))


def test_fig5_pairs_and_ablations(loaded, tmp_path):
    _, main = loaded
    fig = figures.fig5(main)
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    # every panel says its setting: ours read in SSAL, its baselines in AL
    assert "trec · (a) ours on top of other methods: SSAL vs AL" in titles
    assert "trec · (b) ablations, SSAL" in titles
    labels = {ln.get_label() for ax in fig.axes for ln in ax.lines}
    assert {"actune-cal (SSAL)", "cal (AL)"} <= labels
    _check(fig, tmp_path, "fig5")


def test_fig3_headline_names_the_setting_and_no_mixed_sign_average(loaded):
    _, main = loaded
    eff = stats.label_efficiency(stats.curves(main), stats.families(main), "actune")
    eff.loc[:, ["reached", "baseline_labels"]] = [True, 1.0]
    eff["saving_pct"] = [30.0, -10.0, 20.0, 10.0][:len(eff)]
    title = figures.fig3(eff).axes[0].get_title()
    assert "label efficiency of actune (SSAL setting)" in title
    assert "average " not in title and "signs differ: no average" in title
    eff["saving_pct"] = eff["saving_pct"].abs()
    assert "average 17.5% over 4 comparisons" in figures.fig3(eff).axes[0].get_title()


def test_fig6_tsne(loaded, tmp_path):
    res, _ = loaded
    fig = figures.fig6(res.runs, cache_dir=tmp_path / "cache")
    assert len([ax for ax in fig.axes if ax.axison]) == 2
    assert list((tmp_path / "cache").glob("*.tsne.npz"))
    _check(fig, tmp_path, "fig6")


def test_a_new_method_with_its_own_ablation_and_plug_in_gets_fig5(monkeypatch):
    """Ours, its ablations and plug-ins are what methods declare, whatever their names: a new
    method brings its variants into the figures without a change to analysis/."""
    from analysis import declared
    from methods import METHODS
    from methods.base import Method

    class Mine(Method):
        family, params = "ours", {"base": "cal"}

        @classmethod
        def plugin_of(cls, params):
            return params["base"]

    class Without(Mine):
        family, variant_of = "ablation", "mine"

    class OnBald(Mine):
        family, variant_of, params = "plug-in", "mine", {"base": "bald"}

    for name, cls in (("mine", Mine), ("without-part", Without), ("bald-boosted", OnBald)):
        monkeypatch.setitem(METHODS._items, name, cls)
    declared.method_class.cache_clear()
    try:
        rows = []
        for m, final in (("mine", 0.8), ("without-part", 0.75), ("bald-boosted", 0.78),
                         ("cal", 0.7), ("bald", 0.72), ("mine-extra", 0.7)):
            for seed in range(2):
                for t in range(3):
                    rows.append(dict(method=m, dataset="trec", setting="ssal", seed=seed,
                                     round=t, n_labels=100 * (t + 1), n_pseudo=0,
                                     test_acc=0.6 + (final - 0.6) * t / 2, run=f"{m}{seed}",
                                     params_key="{}"))
        df = pd.DataFrame(rows)
        assert "mine" in stats.ours_names(None)          # the declared default takes it in
        groups = stats.plot_groups(df, "mine")
        # a name that merely starts like ours' ("mine-extra", unknown here) is a baseline
        assert groups == {"mine": "ours", "without-part": "ablation", "bald-boosted": "plug-in",
                          "cal": "AL", "bald": "AL", "mine-extra": "AL"}
        # pairs from plugin_of over each run's recorded params (a recorded value wins)
        assert stats.plugin_bases(df, "mine") == {"mine": "cal", "bald-boosted": "bald"}
        df.loc[df["method"] == "mine", "params_key"] = '{"base": "bald"}'
        assert stats.plugin_bases(df, "mine") == {"mine": "bald", "bald-boosted": "bald"}
        fig = figures.fig5(df, "mine")
        titles = [ax.get_title() for ax in fig.axes if ax.axison]
        assert titles == ["trec · (a) ours on top of other methods, SSAL",
                          "trec · (b) ablations, SSAL"]
        labels = [{ln.get_label() for ln in ax.lines} for ax in fig.axes if ax.axison]
        assert labels == [{"mine", "bald-boosted", "bald"}, {"mine", "without-part"}]
    finally:
        declared.method_class.cache_clear()
