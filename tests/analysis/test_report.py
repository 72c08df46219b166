"""The one command: tables with known numbers, the index, and a real folder of smoke runs."""
import pandas as pd
import pytest
from conftest import curve, write_run

from analysis import load_results, tables
from analysis.__main__ import main as cli
from analysis.report import ITEMS, build_report


def test_report_on_synthetic(synthetic_results, tmp_path):
    out = tmp_path / "report"
    assert cli(["report", str(synthetic_results), "--out", str(out), "--no-tsne"]) == 0
    index = (out / "index.md").read_text()
    for name in ("fig1_main", "fig2_weak", "fig3_label_efficiency", "fig4_params",
                 "fig5_plugin_ablation", "table_accuracy", "table_runtime", "table_ttest"):
        assert f"**{name}**" in index
        assert name in (out / "index.html").read_text()
    assert (out / "figures" / "fig1_main.pdf").exists()
    assert "t-SNE turned off" in index
    acc = (out / "tables" / "table_accuracy.md").read_text()
    # actune finishes at 0.82 (+0.005 * (seed - 1)) -> 82.00 ± 0.50 over 3 seeds, best: bold
    assert "| ssal | actune | **82.00 ± 0.50** (3) |" in acc
    assert "\\textbf{82.00 $\\pm$ 0.50}" in (out / "tables" / "table_accuracy.tex").read_text()
    # st ends 4 points below actune with the gap growing every round: significant -> '*'
    assert "| ssal | st | 78.00 ± 0.50 (3) * |" in acc
    assert "| ssal | actune-cal | 81.00 ± 0.50 (3) |" in acc   # ours' variants carry no mark
    rt = (out / "tables" / "table_runtime.md").read_text()
    assert "region_sampling" in rt and "memory_bank" in rt
    # every synthetic run has 4 rounds of 2 s: 42 sst2 runs = 336 s, 52 trec runs = 416 s
    wall = (out / "tables" / "table_wall_time.md").read_text()
    assert "| all | total, hours (94 runs) | 0.09 | 0.12 |" in wall
    # every table also as CSV, full precision, next to its Markdown and LaTeX
    csv = pd.read_csv(out / "tables" / "table_accuracy.csv").set_index(["setting", "method"])
    assert csv.loc[("ssal", "actune"), "sst2"] == "**82.00 ± 0.50** (3)"
    ttest = pd.read_csv(out / "tables" / "table_ttest.csv")
    assert {"p", "p_holm", "n_pairs"} <= set(ttest.columns)
    # the flat table of every round, as load_results gives it, for pandas or a spreadsheet
    rounds = pd.read_csv(out / "rounds.csv")
    loaded = load_results(synthetic_results).rounds
    assert len(rounds) == len(loaded) == 94 * 4
    key = ["run", "round"]
    assert rounds.sort_values(key)["test_acc"].tolist() == \
        pytest.approx(loaded.sort_values(key)["test_acc"].tolist())


def test_index_saving_is_fig3s_not_pooled_with_ablations(tmp_path):
    root = tmp_path / "results"
    for seed in (0, 2):  # seed offsets -0.005 and +0.005: the mean curves are exactly linear
        write_run(root, "cal", "trec", "al", seed, curve(0.84, seed))
        for m, final in (("st", 0.84), ("actune", 0.80), ("actune-no-mmb", 0.70)):
            write_run(root, m, "trec", "ssal", seed, curve(final, seed), pseudo=True)
    build_report(root, tmp_path / "report", tsne=False)
    # actune hits its 0.80 at 400 labels; cal and st (0.60 + 0.08 t) at t = 2.5 -> 350 labels:
    # saving 1 - 400/350. Pooling in actune-no-mmb (400 vs 225) would give -46.0% over 4.
    assert ("`actune` vs the best baselines (Fig. 3, ssal setting): average -14.3% over 2 "
            "comparisons") in (tmp_path / "report" / "index.md").read_text()


def test_accuracy_table_marks_a_baseline_that_beats_ours():
    import pandas as pd
    from analysis import stats, tables
    rows = [dict(method=m, dataset="trec", setting="al", seed=s, round=t, n_labels=100 * (t + 1),
                 test_acc=0.5 + t * (0.1 if m == "entropy" else 0.05) + 0.01 * s, run=f"{m}{s}")
            for m in ("actune", "entropy") for s in range(3) for t in range(4)]
    df = pd.DataFrame(rows)
    tests = stats.paired_tests(df, "actune", by=("setting", "dataset"))
    table = tables.accuracy_table(stats.final_rows(df), tests=tests)
    assert table.loc[("al", "entropy"), "trec"] == "**81.00 ± 1.00** (3) †"
    assert table.loc[("al", "actune"), "trec"] == "66.00 ± 1.00 (3)"


def test_a_skipped_item_leaves_no_stale_file(synthetic_results, tmp_path):
    out = tmp_path / "report"
    build_report(synthetic_results, out)                    # t-SNE made
    assert (out / "figures" / "fig6_tsne.png").exists()
    rep = build_report(synthetic_results, out, tsne=False)  # now skipped: its files go
    assert "fig6_tsne" in dict(rep.skipped)
    assert not list((out / "figures").glob("fig6_tsne.*"))
    assert (out / "figures" / "fig1_main.png").exists()


def test_report_on_empty_folder(tmp_path):
    rep = build_report(tmp_path / "nothing", tmp_path / "out")
    assert not rep.made
    assert "no round records" in (tmp_path / "out" / "index.md").read_text()


@pytest.fixture
def smoke_results(tmp_path, tiny_overrides, toy_data):
    from benchmark.config import resolve
    from benchmark.loop import run_experiment

    out = tmp_path / "runs"
    quiet = lambda *a, **k: None  # noqa: E731
    for method in ("random", "entropy"):
        over = dict(tiny_overrides, save_features=True, threads=1)
        run_experiment(resolve(method, str(toy_data), 0, "al", "smoke", over), out, log=quiet)
    return out


def test_report_on_real_smoke_runs(smoke_results, tmp_path):
    rep = build_report(smoke_results, tmp_path / "report", ours=["entropy"])
    made = {m.name for m in rep.made}
    assert {"fig1_main", "fig6_tsne", "table_accuracy", "table_runtime", "table_ttest"} <= made
    skipped = dict(rep.skipped)
    assert "fig2_weak" in skipped and "fig4_params" in skipped
    index = (tmp_path / "report" / "index.html").read_text()
    assert '<img src="figures/fig1_main.png"' in index
    ttest = (tmp_path / "report" / "tables" / "table_ttest.md").read_text()
    assert "| al | entropy | random | 2 |" in ttest  # 1 seed x rounds 1-2


def test_terminal_summary_of_loading_problems(tmp_path, capsys):
    root = tmp_path / "results"
    run = write_run(root, "entropy", "trec", "al", 0, [0.5, 0.6, 0.7, 0.8])
    with open(run / "records.jsonl", "a") as f:
        f.write('{"method": "entropy", "round": \n')          # a corrupt line
    write_run(root, "entropy", "trec", "al", 1, [0.5, 0.6], done=False)   # still running
    failed = write_run(root, "random", "trec", "al", 0, [0.5], done=False)
    (failed / "checkpoint.pt").unlink()
    (failed / "failed").write_text("Traceback ...")
    assert cli(["report", str(root), "--out", str(tmp_path / "report"), "--no-tsne"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("loaded 3 run folders, 7 round records; problems: 1 corrupt lines, "
                     "1 unfinished runs, 1 failed runs (listed at the top of the index)")
    html = (tmp_path / "report" / "index.html").read_text()
    assert html.index("Problems found while loading: 3") < html.index("<h2>Figures</h2>")


def test_items_are_a_declarative_list():
    """Adding a figure or table to the report is one entry: (name, caption, builder)."""
    names = [item.name for item in ITEMS]
    assert len(names) == len(set(names))
    assert names[:3] == ["fig1_main", "fig2_weak", "fig3_label_efficiency"]
    assert all(callable(item.build) for item in ITEMS)


def test_what_the_study_can_resolve_on_the_page(synthetic_results, tmp_path):
    """Issue 21's outputs are report items with captions, its index section an HTML table."""
    out = tmp_path / "report"
    rep = build_report(synthetic_results, out, tsne=False)
    made = {m.name: m for m in rep.made}
    assert {"table_final_ci", "fig_final_ci", "table_noise"} <= set(made)
    for name in ("table_accuracy", "table_vs_best", "table_noise"):
        assert "MDD, the smallest difference" in made[name].caption
    assert "bootstrap" in made["fig3_label_efficiency"].caption
    page = (out / "index.html").read_text()
    section = page[page.index('<section id="resolution">'):]
    section = section[:section.index("</section>")]
    assert "<table>" in section and "seeds_<wbr>needed" in section and "<pre>" not in page
    assert "## What the study can resolve" in (out / "index.md").read_text()
    # label efficiency: _lo/_hi columns in its files, folded under the value on the page
    eff = pd.read_csv(out / "tables" / "table_label_efficiency.csv")
    assert {"ours_labels_lo", "ours_labels_hi", "saving_pct_lo", "saving_pct_hi"} <= set(eff)
    assert (eff["ours_labels_lo"] <= eff["ours_labels"]).all()
    assert (eff["ours_labels"] <= eff["ours_labels_hi"]).all()
    shown = tables.to_html(made["table_label_efficiency"].table)
    assert "labels_<wbr>lo" not in shown and "<br>[" in shown


def test_html_table_folds_an_interval_under_its_value():
    from analysis.tables import to_html
    df = pd.DataFrame(dict(method=["a", "b"], acc=[81.0, 79.5], acc_lo=[80.0, float("nan")],
                           acc_hi=[82.5, float("nan")]))
    page = to_html(df)
    assert "acc_<wbr>lo" not in page and "acc_<wbr>hi" not in page
    assert '<td class="num">81<br>[80,\xa082.5]</td>' in page   # right-aligned as a number
    assert '<td class="num">79.5</td>' in page                   # no interval: the value alone
