"""``python -m analysis report RESULTS_DIR --out REPORT_DIR``: every figure and table the
results support, the flat table of every round (``rounds.csv``), and an index (``index.html``,
a page with HTML tables and captioned figures, and ``index.md``) that opens with the problems
met while loading and lists what was made, what was skipped and why.

What the report holds is the declarative list ``ITEMS``: (name, caption, builder) entries whose
builder takes the shared :class:`Context` and returns a matplotlib Figure or a DataFrame (or
raises ``figures.Skip``). A new figure or table is one more entry (and, when it needs a new
shared computation, one more ``Context`` property).
"""
from __future__ import annotations

import html
import traceback
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import pandas as pd
from matplotlib.figure import Figure

from . import figures, stats, tables, uncertainty
from .load import Results, complete_only, load_results, main_view, problem_summary

ROUNDS_CSV = "rounds.csv"
LONG_TABLE = 30  # rows; longer tables are folded (a click opens them) so the page stays short


def primary_ours(df: pd.DataFrame, ours, setting="ssal") -> str | None:
    """The ours method Fig. 3 is drawn for: the first method named as ours that ran in
    ``setting``, else the ours method with the most runs there."""
    is_ours = stats.ours_predicate(ours)
    d = df[(df["setting"] == setting) & df["method"].map(is_ours)]
    if d.empty:
        return None
    ran = set(d["method"])
    return next((m for m in stats.ours_names(ours) if m in ran), None) or \
        d.groupby("method")["run"].nunique().idxmax()


class Context:
    """The loaded results and everything the builders share, each computed once when first
    used: ``res`` is what the report covers (``--complete-only`` applied), ``loaded`` all."""

    def __init__(self, loaded: Results, res: Results, ours=None,
                 family_map: dict | None = None, tsne: bool = True, out: Path = Path(".")):
        self.loaded, self.res, self.ours, self.family_map = loaded, res, ours, family_map
        self.tsne, self.out = tsne, out
        self.df, self.runs = res.rounds, res.runs

    @cached_property
    def main(self) -> pd.DataFrame:
        return main_view(self.df)

    @cached_property
    def final(self) -> pd.DataFrame:
        return stats.final_rows(self.main, self.runs)

    @cached_property
    def all_final(self) -> pd.DataFrame:
        return stats.final_rows(self.df, self.runs)

    @cached_property
    def fams(self) -> dict:
        return stats.families(self.main, self.ours, self.family_map)

    @cached_property
    def groups(self) -> dict:
        return stats.plot_groups(self.main, self.ours)

    @cached_property
    def curves(self) -> pd.DataFrame:
        return stats.curves(self.main)

    @cached_property
    def ours_setting(self) -> str:
        return "ssal" if (self.main["setting"] == "ssal").any() else "al"

    @cached_property
    def primary(self) -> str | None:
        return primary_ours(self.main, self.ours, self.ours_setting)

    @cached_property
    def eff_all(self) -> pd.DataFrame:
        """Every ours method against the best baselines, with bootstrap intervals over seeds."""
        effs = [stats.label_efficiency(self.curves, self.fams, m, self.ours_setting)
                for m in sorted(m for m, f in self.fams.items() if f == stats.OURS)]
        eff = pd.concat(effs, ignore_index=True) if effs else pd.DataFrame()
        return uncertainty.label_efficiency_ci(self.main, eff, self.ours_setting)

    @cached_property
    def eff(self) -> pd.DataFrame:
        """Fig. 3's comparisons: the primary ours method against the best baselines."""
        e = self.eff_all
        return e[e["ours"] == self.primary] if len(e) else e

    @cached_property
    def noise(self) -> pd.DataFrame:
        """Per setting and dataset: the SD of a paired difference and the MDD."""
        return uncertainty.noise_model(self.main, self.ours)

    @cached_property
    def mdd(self) -> str:
        return uncertainty.mdd_caption(self.noise)

    @cached_property
    def tests_per_dataset(self) -> pd.DataFrame:
        """Paired tests by setting and dataset with the MDD and a verdict (``unresolved``)."""
        return uncertainty.resolve(
            stats.paired_tests(self.main, self.ours, by=("setting", "dataset")), self.noise)

    @cached_property
    def tests(self) -> pd.DataFrame:
        return stats.paired_tests(self.main, self.ours, by=("setting",))

    @cached_property
    def versus_best(self) -> pd.DataFrame:
        mine = sorted({primary_ours(self.main, self.ours, st)
                       for st in self.main["setting"].unique()} - {None})
        return pd.concat([stats.versus_best(self.curves, m, self.ours) for m in mine]
                         or [pd.DataFrame()], ignore_index=True)

    @cached_property
    def headline(self) -> pd.DataFrame:
        """Ours vs the strongest baseline per setting and dataset, with the MDD, the verdict
        and the seeds that would resolve the margin."""
        return uncertainty.headline(stats.wins_summary(self.versus_best), self.tests_per_dataset)

    @cached_property
    def final_ci(self) -> pd.DataFrame:
        return uncertainty.final_ci(self.final)

    @cached_property
    def resolution(self) -> pd.DataFrame:
        """The index's "What the study can resolve" table."""
        return uncertainty.resolution_table(self.noise, self.headline)


@dataclass(frozen=True)
class Item:
    """One figure or table: ``build(ctx)`` returns a Figure or a DataFrame, or raises
    ``figures.Skip``; an empty DataFrame is skipped with ``empty``."""
    name: str
    caption: str | Callable[[Context], str]
    build: Callable[[Context], Figure | pd.DataFrame]
    empty: str = "nothing to show"


def _tsne(c: Context):
    if not c.tsne:
        raise figures.Skip("t-SNE turned off (--no-tsne)")
    return figures.fig6(c.runs, c.ours, c.out / "cache", pairs=stats.plugin_bases(c.df, c.ours))


def _accuracy(c: Context) -> pd.DataFrame:
    t = c.tests_per_dataset
    return tables.accuracy_table(c.final, ours=c.ours,
                                 tests=t[t["ours"] == c.primary] if len(t) else None)


def _fig3_caption(c: Context) -> str:
    setting = c.eff["ours_setting"].iloc[0] if len(c.eff) else c.ours_setting
    return (f"Labels the best active-learning and the best self-training baseline need to reach "
            f"the final accuracy of {c.primary} ({setting} setting); ours' own count is where its "
            "curve first reaches that accuracy. Saving = 1 - n_ours / n_baseline: "
            f"{stats.saving_summary(c.eff)}. Error bars: {uncertainty.CONFIDENCE:.0%} bootstrap "
            "intervals over seeds (an open upper end is drawn up to the labels run).")


def _noise(c: Context) -> pd.DataFrame:
    n = c.noise
    return n.assign(**{col: 100 * n[col] for col in ("sd", "sd_seed", "sd_test", "mdd")}) \
        if len(n) else n


NEEDS_PAIR = "needs an ours method and a baseline on shared seeds"
ITEMS: list[Item] = [
    Item("fig1_main", lambda c: "Test accuracy against the number of labels, as in the paper's "
         "Fig. 1: the AL setting (labelled data only) above, SSAL (with unlabelled data) below, "
         "a column per dataset; baselines grouped by family. Mean over seeds, band ± std of "
         f"{c.primary}; the y-axis fits rounds >= 1 (round 0 is the initial labels every "
         "method shares). Ablations and plug-ins of ours are in Fig. 5.",
         lambda c: figures.fig1(c.main, c.ours, groups=c.groups)),
    Item("fig2_weak", "Weak supervision: round 0 fine-tunes on the labelling rules' "
         "majority votes, later rounds query clean labels",
         lambda c: figures.fig2(c.main, c.ours, groups=c.groups)),
    Item("fig3_label_efficiency", _fig3_caption, lambda c: figures.fig3(c.eff)),
    Item("fig4_params", "Final accuracy against each swept hyper-parameter",
         lambda c: figures.fig4_params(c.all_final, c.ours)),
    Item("fig4_sweep_curves", "Accuracy curves of each swept configuration",
         lambda c: figures.fig4_curves(c.df, c.ours)),
    Item("fig4_pseudo_acc", "Pseudo-label accuracy of ours per round (against the hidden gold "
         "labels; the ablation without the memory bank shows its effect)",
         lambda c: figures.fig4_pseudo(c.df, c.ours)),
    Item("fig5_plugin_ablation", "(a) Ours on top of other methods against those methods "
         "alone; (b) ablations of ours against the full method. Each panel names the settings "
         "its curves come from.", lambda c: figures.fig5(c.main, c.ours, groups=c.groups)),
    Item("fig6_tsne", "t-SNE of pool features with the round-1 queries", _tsne),
    Item("fig_final_ci", "Final-round test accuracy with "
         f"{uncertainty.CONFIDENCE:.0%} bootstrap intervals over seeds (too narrow with few "
         "seeds: see table_final_ci)", lambda c: figures.final_ci(c.final_ci, c.ours, c.groups)),
    Item("table_accuracy", lambda c: "Final-round test accuracy (%), mean ± std over seeds "
         f"(runs); * {c.primary} significantly better than this baseline, † significantly "
         "worse (paired t-test over seeds and rounds >= 1 of the setting and dataset, "
         "Holm-corrected p < 0.05 across its baselines), ~ |difference| below the MDD: "
         "unresolved, neither a win nor a loss. "
         + c.mdd, _accuracy, "no complete run"),
    Item("table_final_ci", "Bootstrap intervals of the final-round test accuracy (%): mean "
         f"and {uncertainty.CONFIDENCE:.0%} bootstrap interval over seeds (runs). With few seeds "
         "it is too narrow: on simulated normal data it held the true mean in 76% of 3-seed "
         "studies and 93% of 30-seed ones", lambda c: tables.ci_table(c.final_ci),
         "no complete run"),
    Item("table_noise", lambda c: "Noise model per setting and dataset (points): SD of an "
         "ours-vs-baseline paired difference (pooled), its seed-to-seed part and binomial "
         "test-set bound, and the MDD. " + c.mdd, _noise, NEEDS_PAIR),
    Item("table_runtime", "Seconds per round of each selection phase (Table 3)",
         lambda c: tables.runtime_table(c.main), "no timed selection"),
    Item("table_wall_time", "Wall time: minutes per complete run, mean over seeds (runs); the "
         "last row sums every complete run",
         lambda c: tables.wall_time_table(c.loaded.rounds, c.loaded.runs), "no complete run"),
    Item("table_ttest", "Paired t-tests, ours vs each baseline: pairs = same dataset, seed and "
         "round >= 1; * p < 0.05; Holm across baselines",
         lambda c: tables.ttest_table(c.tests), NEEDS_PAIR),
    Item("table_ttest_per_dataset", "Paired t-tests per dataset (Holm within dataset); mdd "
         "in points; verdict 'unresolved' where |mean_diff| < mdd, else 'better' / 'worse' "
         "where p_holm < 0.05 (sig_holm), else 'not significant'; seeds_needed: seeds at which "
         "the MDD falls to the difference",
         lambda c: tables.ttest_table(c.tests_per_dataset), NEEDS_PAIR),
    Item("table_pseudo_gain", "What pseudo-labels add: each method's SSAL run against the AL "
         "run of the method that queries as it does (its declared AL counterpart: itself for "
         "ours), mean test accuracy over seeds and rounds >= 1 in points; paired t-test over "
         "(seed, round) pairs, Holm across the methods of a dataset; mean_pseudo: the SSAL "
         "run's pseudo-labels per round, pseudo_acc_pct: how many were right (against the "
         "hidden gold labels); rounds_ahead: pairs where SSAL is ahead; verdict "
         "'unresolved' where |mean_diff| < the pairs' own MDD, 'no pseudo-labels' where the "
         "SSAL run never got one (it trained on its counterpart's data)",
         lambda c: tables.pseudo_gain_table(stats.pseudo_label_gain(c.main)),
         "needs SSAL runs and their AL counterparts on the same dataset and seeds"),
    Item("table_label_efficiency", "Label efficiency behind Fig. 3 (saving = 1 - n_ours / "
         "n_baseline; 'not reached' rows are excluded from the summary); _lo / _hi: "
         f"{uncertainty.CONFIDENCE:.0%} bootstrap interval over seeds, inf beyond the labels "
         "run (the HTML page shows [lo, hi] under the value)",
         lambda c: tables.label_efficiency_table(c.eff_all),
         "needs an ours method in the ssal setting and baselines on the same dataset"),
    Item("table_vs_best", lambda c: "Ours against the strongest baseline (highest mean "
         "accuracy over the rounds; same setting and dataset): rounds ahead and margin in "
         "accuracy points; verdict of the paired t-test (Holm across the baselines of the "
         "setting and dataset), 'unresolved' where |margin| < MDD; "
         "seeds_needed: seeds at which the MDD falls to the margin. " + c.mdd,
         lambda c: c.headline,
         "needs an ours method and a baseline in one setting"),
    Item("table_vs_best_rounds", "Round by round: ours, the strongest baseline and the gap",
         lambda c: c.versus_best, "needs an ours method and a baseline in one setting"),
    Item("table_families", "Method families (pseudo-labels used => self-training)",
         lambda c: pd.DataFrame(sorted(c.fams.items()), columns=["method", "family"])),
]


@dataclass
class Made:
    name: str
    caption: str
    files: list[Path]
    table: pd.DataFrame | None = None   # what a table item showed (the HTML renders it)


@dataclass
class Report:
    out: Path
    made: list[Made] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (name, reason)
    problems: str = ""                                              # the one-line summary

    def skip(self, name: str, why: str) -> None:
        """List ``name`` as skipped and remove what an earlier report wrote for it, so the
        folder holds what the index lists."""
        self.skipped.append((name, why))
        for sub, exts in (("figures", ("png", "pdf")), ("tables", ("md", "tex", "csv"))):
            for ext in exts:
                (self.out / sub / f"{name}.{ext}").unlink(missing_ok=True)

    def add(self, item: Item, ctx: Context) -> None:
        try:
            obj = item.build(ctx)
            caption = item.caption(ctx) if callable(item.caption) else item.caption
        except figures.Skip as why:
            self.skip(item.name, str(why))
            return
        except Exception as exc:  # one broken item must not cost the others
            self.skip(item.name, f"error: {exc!r}")
            traceback.print_exc()
            return
        if isinstance(obj, Figure):
            self.made.append(Made(item.name, caption,
                                  figures.save(obj, self.out / "figures", item.name)))
        elif obj is None or obj.empty:
            self.skip(item.name, item.empty)
        else:
            self.made.append(Made(item.name, caption,
                                  tables.write(obj, self.out / "tables", item.name, caption), obj))


def build_report(results_dir, out, ours=None, family_map: dict | None = None,
                 tsne: bool = True, complete: bool = False, items=None) -> Report:
    """``ours``: the method(s) compared with the baselines (with their declared variants);
    None takes what the methods declare (``stats.resolve_ours``)."""
    ours = stats.resolve_ours(ours)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_results(results_dir)
    res = complete_only(loaded) if complete else loaded
    rep = Report(out, problems=problem_summary(res))
    if len(loaded.rounds):
        loaded.rounds.to_csv(out / ROUNDS_CSV, index=False)
    ctx = Context(loaded, res, ours, family_map, tsne, out)
    if res.rounds.empty:
        rep.skipped.append(("everything", f"no round records under {results_dir}"))
        write_index(rep, res, ours)
        return rep
    for item in ITEMS if items is None else items:
        rep.add(item, ctx)
    write_index(rep, res, ours, ctx.eff, ctx.resolution)
    return rep


# ---------------------------------------------------------------------------------------------
def _summary(res) -> str:
    runs = res.runs
    if runs.empty:
        return "no run folders found"
    counts = runs["status"].value_counts().to_dict()
    return (f"{len(runs)} run folders ({', '.join(f'{v} {k}' for k, v in counts.items())}), "
            f"{len(res.rounds)} round records; methods: {_names(runs['method'])}; "
            f"datasets: {_names(runs['dataset'])}")


def _names(col: pd.Series) -> str:
    return ", ".join(sorted(col.dropna().astype(str).unique()))


def _saving(eff: pd.DataFrame | None) -> str:
    if eff is None or not len(eff):
        return ""
    setting = eff["ours_setting"].iloc[0] if "ours_setting" in eff else ""
    return (f"Label saving of `{eff['ours'].iloc[0]}` vs the best baselines (Fig. 3"
            + (f", {setting} setting" if setting else "") + f"): {stats.saving_summary(eff)}.")


def _short(caption: str, n: int = 60) -> str:
    """The caption's head for the contents: up to its first colon, semicolon or bracket."""
    cut = min([i for i in (caption.find(s) for s in (": ", "; ", " (")) if i > 0] + [len(caption)])
    head = caption[:cut]
    return head if len(head) <= n else head[:n - 1].rsplit(" ", 1)[0] + "…"


def _rel(p: Path, out: Path) -> str:
    return str(p.relative_to(out))


def write_index(rep: Report, res, ours, eff: pd.DataFrame | None = None,
                resolution: pd.DataFrame | None = None) -> None:
    """``resolution``: ``uncertainty.resolution_table``, the "What the study can resolve"
    section under ``uncertainty.RESOLUTION_NOTE``."""
    resolution = resolution if resolution is not None and len(resolution) else None
    out = rep.out
    out.mkdir(parents=True, exist_ok=True)
    saving = _saving(eff)
    has_rounds = (out / ROUNDS_CSV).exists()
    figs = [m for m in rep.made if m.table is None]
    tabs = [m for m in rep.made if m.table is not None]

    md = [f"# Report for `{res.root}`", "", _summary(res), "",
          "## Problems found while loading", ""] + \
         ([f"- {p}" for p in res.problems] or ["- none"])
    md += ["", f"Ours: `{ours}`. {saving}".rstrip(), ""]
    if has_rounds:
        md += [f"Every round record: [`{ROUNDS_CSV}`]({ROUNDS_CSV}) (one row per run and round; "
               "`analysis.load_results(DIR).rounds` in Python).", ""]
    if resolution is not None:
        md += ["## What the study can resolve", "", uncertainty.RESOLUTION_NOTE, "",
               tables.to_markdown(resolution)]
    md += ["## Figures", ""]
    for m in figs:
        links = ", ".join(f"[{p.suffix[1:]}]({_rel(p, out)})" for p in m.files)
        md += [f"- **{m.name}**: {m.caption} ({links})", "",
               f"  ![{m.name}]({_rel(m.files[0], out)})", ""]
    md += ["## Tables", ""]
    for m in tabs:
        links = ", ".join(f"[{p.suffix[1:]}]({_rel(p, out)})" for p in m.files)
        md.append(f"- **{m.name}**: {m.caption} ({links})")
    md += ["", "## Skipped", ""] + [f"- **{n}**: {why}" for n, why in rep.skipped]
    (out / "index.md").write_text("\n".join(md) + "\n")
    (out / "index.html").write_text(_html(rep, res, ours, saving, figs, tabs, has_rounds,
                                          resolution))


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:#1d1d1f;max-width:1120px;margin:0 auto;padding:0 20px 48px}
h1{font-size:1.55em;margin:.9em 0 .2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;
 padding-bottom:.2em;margin-top:1.8em}h3{font-size:1.02em;margin:1.4em 0 .3em}
code{background:#f3f3f3;padding:0 .25em;border-radius:3px}
.meta{color:#555}.box{border-left:4px solid #e0a020;background:#fff7e6;padding:.5em 1em;
 margin:1em 0}.box.ok{border-color:#3a9a3a;background:#eff8ef}.box h2{border:0;margin:.2em 0;
 font-size:1.05em}.box ul{margin:.3em 0;padding-left:1.2em}
nav{display:flex;gap:2em;font-size:.92em}nav div{flex:1}nav ul{margin:.2em 0;padding-left:1.2em}
nav span{color:#666}.caption{margin:.2em 0 .4em;max-width:1080px}
figure{margin:1em 0 2em}figure img{display:block;max-width:100%;height:auto;
 border:1px solid #eee}figcaption{font-size:.93em;margin-top:.45em}
.files{font-size:.85em;color:#666}.files a{margin-right:.5em}
.table{overflow-x:auto;margin:.3em 0 1.6em}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:3px 5px;border-bottom:1px solid #e6e6e6;text-align:left;vertical-align:top}
th{background:#f5f5f7;font-weight:600;border-bottom:1px solid #ccc}
td.num,th.num{text-align:right}tbody tr:hover{background:#f6f8ff}
details>summary{cursor:pointer;color:#0a58ca;margin:.2em 0 .5em}
pre{background:#f6f6f6;padding:.6em .8em;overflow-x:auto;font-size:13px}
"""


def _html(rep: Report, res, ours, saving: str, figs: list[Made], tabs: list[Made],
          has_rounds: bool, resolution: pd.DataFrame | None) -> str:
    e = html.escape

    def files(m: Made) -> str:
        return '<div class="files">' + " ".join(
            f'<a href="{e(_rel(p, rep.out))}">{p.suffix[1:]}</a>' for p in m.files) + "</div>"

    problems = res.problems
    body = [f"<h1>Report for <code>{e(str(res.root))}</code></h1>",
            f'<p class="meta">{e(_summary(res))}</p>',
            f'<section class="box{"" if problems else " ok"}" id="problems">'
            f"<h2>Problems found while loading: {len(problems) or 'none'}</h2>"
            + ("<ul>" + "".join(f"<li>{e(p)}</li>" for p in problems) + "</ul>" if problems
               else "") + "</section>",
            f"<p>Ours: <code>{e(str(ours))}</code>. "
            + e(saving).replace("`", "") + "</p>"]
    if has_rounds:
        body.append(f'<p>Every round record: <a href="{ROUNDS_CSV}">{ROUNDS_CSV}</a> (one row per '
                    "run and round), or in Python <code>analysis.load_results(DIR).rounds</code>."
                    "</p>")
    if resolution is not None:
        body.append('<section id="resolution"><h2>What the study can resolve</h2>'
                    f'<p class="caption">{e(uncertainty.RESOLUTION_NOTE)}</p>'
                    f'<div class="table">{tables.to_html(resolution)}</div></section>')
    body.append("<nav>" + "".join(
        f"<div><b>{head}</b><ul>" + "".join(f'<li><a href="#{e(m.name)}">{e(m.name)}</a> '
                                            f"<span>{e(_short(m.caption))}</span></li>"
                                            for m in made) + "</ul></div>"
        for head, made in (("Figures", figs), ("Tables", tabs)) if made) + "</nav>")
    body.append("<h2>Figures</h2>")
    for m in figs:
        body.append(f'<figure id="{e(m.name)}"><img src="{e(_rel(m.files[0], rep.out))}" '
                    f'alt="{e(m.name)}"><figcaption><b>{e(m.name)}</b>: {e(m.caption)}'
                    f"</figcaption>{files(m)}</figure>")
    body.append("<h2>Tables</h2>")
    for m in tabs:
        table, rows = tables.to_html(m.table), len(m.table)
        if rows > LONG_TABLE:
            table = f"<details><summary>show all {rows} rows</summary>{table}</details>"
        body.append(f'<section id="{e(m.name)}"><h3>{e(m.name)}</h3>'
                    f'<p class="caption">{e(m.caption)}</p><div class="table">{table}</div>'
                    f"{files(m)}</section>")
    body.append("<h2>Skipped</h2><ul>" + "".join(f"<li><b>{e(n)}</b>: {e(w)}</li>"
                                                  for n, w in rep.skipped) + "</ul>"
                if rep.skipped else "")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>actune-bench report: {e(str(res.root))}</title><style>{CSS}</style>"
            "</head><body>\n" + "\n".join(body) + "\n</body></html>\n")
