"""``python -m analysis report RESULTS_DIR --out REPORT_DIR``: every figure and table the
results support, plus an index (Markdown and static HTML) of what was made, what was skipped
and why, and every problem met while loading (unfinished runs, corrupt lines, mixed configs).
"""
from __future__ import annotations

import html
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import figures, stats, tables, uncertainty
from .load import complete_only, load_results, main_view


@dataclass
class Report:
    out: Path
    made: list[tuple[str, str, list[Path]]] = field(default_factory=list)   # (name, caption, files)
    skipped: list[tuple[str, str]] = field(default_factory=list)            # (name, reason)

    def figure(self, name: str, caption: str, build) -> None:
        try:
            fig = build()
        except figures.Skip as why:
            self.skipped.append((name, str(why)))
            return
        except Exception as exc:  # one broken figure must not cost the others
            self.skipped.append((name, f"error: {exc!r}"))
            traceback.print_exc()
            return
        self.made.append((name, caption, figures.save(fig, self.out / "figures", name)))

    def table(self, name: str, caption: str, df: pd.DataFrame | None, reason: str) -> None:
        if df is None or df.empty:
            self.skipped.append((name, reason))
            return
        self.made.append((name, caption, tables.write(df, self.out / "tables", name, caption)))


def primary_ours(df: pd.DataFrame, ours, setting="ssal") -> str | None:
    """The ours method Fig. 3 is drawn for: ``ours`` itself when it ran, else the ours method
    with the most runs in ``setting``."""
    is_ours = stats.ours_predicate(ours)
    d = df[(df["setting"] == setting) & df["method"].map(is_ours)]
    if d.empty:
        return None
    if isinstance(ours, str) and (d["method"] == ours).any():
        return ours
    return d.groupby("method")["run"].nunique().idxmax()


def build_report(results_dir, out, ours="actune", family_map: dict | None = None,
                 tsne: bool = True, complete: bool = False) -> Report:
    out = Path(out)
    loaded = load_results(results_dir)
    res = complete_only(loaded) if complete else loaded
    rep = Report(out)
    df, runs = res.rounds, res.runs
    if df.empty:
        rep.skipped.append(("everything", f"no round records under {results_dir}"))
        write_index(rep, res, ours)
        return rep
    main = main_view(df)
    final = stats.final_rows(main, runs)
    fams = stats.families(main, ours, family_map)

    rep.figure("fig1_main", "Test accuracy vs number of labels, AL and SSAL settings",
               lambda: figures.fig1(main, ours))
    rep.figure("fig2_weak", "Weak-supervision setting", lambda: figures.fig2(main, ours))
    curve_df = stats.curves(main)
    ours_settings = "ssal" if (main["setting"] == "ssal").any() else "al"
    effs = [stats.label_efficiency(curve_df, fams, m, ours_settings)
            for m in sorted(m for m, f in fams.items() if f == stats.OURS)]
    eff = pd.concat(effs, ignore_index=True) if effs else pd.DataFrame()
    first = primary_ours(main, ours, ours_settings)
    eff = uncertainty.label_efficiency_ci(main, eff, ours_settings)
    eff_first = eff[eff["ours"] == first] if len(eff) else eff
    rep.figure("fig3_label_efficiency",
               f"Labels the best AL / self-training baseline need to match {first} (error bars: "
               f"{uncertainty.CONFIDENCE:.0%} bootstrap intervals over seeds)",
               lambda: figures.fig3(eff_first))
    all_final = stats.final_rows(df, runs)
    rep.figure("fig4_params", "Final accuracy vs swept hyper-parameters",
               lambda: figures.fig4_params(all_final, ours))
    rep.figure("fig4_sweep_curves", "Accuracy curves of each swept configuration",
               lambda: figures.fig4_curves(df, ours))
    rep.figure("fig4_pseudo_acc", "Pseudo-label accuracy per round (with / without memory bank)",
               lambda: figures.fig4_pseudo(df, ours))
    rep.figure("fig5_plugin_ablation", "Ours on top of other AL methods; ablations",
               lambda: figures.fig5(main, ours))
    if tsne:
        rep.figure("fig6_tsne", "t-SNE of pool features with the round-1 queries",
                   lambda: figures.fig6(runs, ours, out / "cache",
                                        pairs=stats.plugin_bases(df, ours)))
    else:
        rep.skipped.append(("fig6_tsne", "t-SNE turned off (--no-tsne)"))

    noise = uncertainty.noise_model(main, ours)
    mdd = uncertainty.mdd_caption(noise)
    per_ds = uncertainty.resolve(stats.paired_tests(main, ours, by=("setting", "dataset")), noise)
    marked = primary_ours(main, ours, ours_settings)
    rep.table("table_accuracy", "Final-round test accuracy (%), mean ± std over seeds (runs); "
              f"* {marked} significantly better than this baseline, † significantly worse "
              "(paired t-test over seeds and rounds >= 1 of the setting and dataset, p < 0.05), "
              "~ |difference| below the MDD: unresolved, neither a win nor a loss. " + mdd,
              tables.accuracy_table(final, ours=ours, tests=per_ds[per_ds["ours"] == marked]
                                    if len(per_ds) else None), "no complete run")
    _resolution_outputs(rep, final, noise, ours)
    rep.table("table_runtime", "Seconds per round of each selection phase (Table 3)",
              tables.runtime_table(main), "no timed selection")
    rep.table("table_wall_time", "Wall time: minutes per complete run, mean over seeds (runs); "
              "the last row sums every complete run",
              tables.wall_time_table(loaded.rounds, loaded.runs),
              "no complete run")
    tests = stats.paired_tests(main, ours, by=("setting",))
    rep.table("table_ttest", "Paired t-tests, ours vs each baseline: pairs = same dataset, seed "
              "and round >= 1; * p < 0.05; Holm across baselines",
              tables.ttest_table(tests), "needs an ours method and a baseline on shared seeds")
    rep.table("table_ttest_per_dataset", "Paired t-tests per dataset (Holm within dataset)",
              tables.ttest_table(per_ds), "needs an ours method and a baseline on shared seeds")
    rep.table("table_label_efficiency", "Label efficiency behind Fig. 3 (saving = 1 - n_ours / "
              "n_baseline; 'not reached' rows are excluded from the average)",
              eff, "needs an ours method in the ssal setting and baselines on the same dataset")
    vs = pd.concat([stats.versus_best(curve_df, m, ours) for m in
                    sorted({primary_ours(main, ours, st) for st in main["setting"].unique()}
                           - {None})] or [pd.DataFrame()], ignore_index=True)
    head = uncertainty.headline(stats.wins_summary(vs), per_ds)
    rep.table("table_vs_best", "Ours against the strongest baseline (highest mean accuracy over "
              "the rounds; same setting and dataset): rounds ahead and margin in accuracy points; "
              "verdict of the paired t-test, 'unresolved' where |margin| < MDD; seeds_needed: "
              "seeds at which the MDD falls to the margin. " + mdd,
              head, "needs an ours method and a baseline in one setting")
    rep.table("table_vs_best_rounds", "Round by round: ours, the strongest baseline and the gap",
              vs, "needs an ours method and a baseline in one setting")
    fam = pd.DataFrame(sorted(fams.items()), columns=["method", "family"])
    rep.table("table_families", "Method families (pseudo-labels used => self-training)", fam, "")
    write_index(rep, res, ours, eff_first, uncertainty.summary_lines(noise, head))
    return rep


def _resolution_outputs(rep: Report, final: pd.DataFrame, noise: pd.DataFrame, ours) -> None:
    """What the study can resolve: final accuracy with bootstrap intervals (table and figure)
    and the noise model behind the MDDs."""
    ci = uncertainty.final_ci(final)
    rep.table("table_final_ci", f"Final-round test accuracy (%): mean and "
              f"{uncertainty.CONFIDENCE:.0%} bootstrap interval over seeds (runs). With few "
              "seeds it is too narrow: on simulated normal data it held the true mean in 76% of "
              "3-seed studies and 93% of 30-seed ones", tables.ci_table(ci), "no complete run")
    rep.figure("fig_final_ci", "Final-round test accuracy with bootstrap intervals over seeds",
               lambda: figures.final_ci(ci, ours))
    points = noise.assign(**{c: 100 * noise[c] for c in ("sd", "sd_seed", "sd_test", "mdd")}) \
        if len(noise) else noise
    rep.table("table_noise", "Noise model per setting and dataset (points): SD of an ours-vs-"
              "baseline paired difference (pooled), its seed-to-seed part and binomial test-set "
              "bound, and the MDD. " + uncertainty.mdd_caption(noise), points,
              "needs an ours method and a baseline on shared seeds")


def _summary(res) -> list[str]:
    runs = res.runs
    if runs.empty:
        return ["no run folders found"]
    counts = runs["status"].value_counts().to_dict()
    return [f"{len(runs)} run folders ({', '.join(f'{v} {k}' for k, v in counts.items())}), "
            f"{len(res.rounds)} round records, methods: {_names(runs['method'])}, "
            f"datasets: {_names(runs['dataset'])}"]


def _names(col: pd.Series) -> str:
    return ", ".join(sorted(col.dropna().astype(str).unique()))


def write_index(rep: Report, res, ours, eff: pd.DataFrame | None = None,
                resolution: list[str] | None = None) -> None:
    out = rep.out
    out.mkdir(parents=True, exist_ok=True)
    saving = ""
    if eff is not None and len(eff) and eff["reached"].any():
        s = eff.loc[eff["reached"], "saving_pct"]
        saving = (f"Average label saving of `{eff['ours'].iloc[0]}` vs the best baselines "
                  f"(Fig. 3): {s.mean():.1f}% over {len(s)} comparisons "
                  f"({int((~eff['reached']).sum())} not reached).")
    md = [f"# Report for `{res.root}`", "", *_summary(res), "", f"Ours: `{ours}`.", saving, ""]
    if resolution:
        md += ["## What the study can resolve", "", *[f"- {line}" for line in resolution], ""]
    md += ["## Made", ""]
    for name, caption, files in rep.made:
        links = ", ".join(f"[{p.suffix[1:]}]({p.relative_to(out)})" for p in files)
        md.append(f"- **{name}**: {caption} ({links})")
        if files[0].suffix == ".png":
            md.append(f"\n  ![{name}]({files[0].relative_to(out)})\n")
    md += ["", "## Skipped", ""] + [f"- **{n}**: {why}" for n, why in rep.skipped]
    md += ["", "## Problems found while loading", ""] + \
          ([f"- {p}" for p in res.problems] or ["- none"])
    (out / "index.md").write_text("\n".join(md) + "\n")

    e = html.escape
    body = [f"<h1>Report for {e(str(res.root))}</h1>", *[f"<p>{e(s)}</p>" for s in _summary(res)],
            f"<p>Ours: <code>{e(str(ours))}</code>. {e(saving)}</p>"]
    if resolution:
        body.append("<h2>What the study can resolve</h2><ul>"
                    + "".join(f"<li>{e(line)}</li>" for line in resolution) + "</ul>")
    body.append("<h2>Made</h2>")
    for name, caption, files in rep.made:
        body.append(f"<h3>{e(name)}</h3><p>{e(caption)} — "
                    + " ".join(f'<a href="{e(str(p.relative_to(out)))}">{p.suffix[1:]}</a>'
                               for p in files) + "</p>")
        if files[0].suffix == ".png":
            body.append(f'<img src="{e(str(files[0].relative_to(out)))}" style="max-width:100%">')
        else:
            body.append(f"<pre>{e(files[0].read_text())}</pre>")
    body.append("<h2>Skipped</h2><ul>" + "".join(f"<li><b>{e(n)}</b>: {e(w)}</li>"
                                                  for n, w in rep.skipped) + "</ul>")
    body.append("<h2>Problems found while loading</h2><ul>"
                + "".join(f"<li>{e(p)}</li>" for p in res.problems or ["none"]) + "</ul>")
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>actune-bench report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{font-size:12px;"
        "overflow-x:auto;background:#f6f6f6}</style></head><body>"
        + "\n".join(body) + "</body></html>\n")
