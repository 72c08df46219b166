"""The paper's tables as DataFrames, and writers for Markdown, LaTeX, CSV and HTML.

- final accuracy: mean +- std over seeds of each complete run's last round, method x dataset;
- runtime (Table 3): seconds per round of each selection phase, averaged over rounds and seeds;
- wall time: minutes per complete run and the study's total;
- paired t-tests of ours against every baseline, with Holm's correction;
- label efficiency (the numbers behind Fig. 3).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats

# Phases every round has; anything else a method timed (region sampling, memory bank, ...) is
# one of its own sub-phases and gets a column of its own.
STANDARD_PHASES = ("inference", "query", "select_total", "train", "eval", "round")


def accuracy_table(final: pd.DataFrame, metric="test_acc", ours=None,
                   tests: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows (setting, method), columns dataset, cells ``mean ± std`` (percent) with run counts;
    the best mean of each (setting, dataset) column is marked with ``**``.

    With ``tests`` (:func:`stats.paired_tests` by setting and dataset, for one ours method) a
    baseline's cell carries ``*`` where ours is significantly better than it (paired over
    seeds and rounds, Holm-corrected p < 0.05) and ``†`` where it is significantly worse;
    when the tests carry ``uncertainty.resolve``'s verdict, ``~`` marks a difference below the
    minimal detectable difference (unresolved: neither a win nor a loss, whatever its p-value).
    """
    if final.empty:
        return pd.DataFrame()
    g = final.groupby(["setting", "method", "dataset"])[metric]
    agg = pd.DataFrame({"mean": 100 * g.mean(), "std": 100 * g.std(), "n": g.size()}).reset_index()
    best = agg.groupby(["setting", "dataset"])["mean"].transform("max")
    marks = _significance_marks(tests)
    agg["cell"] = [
        ("**" if b else "") + f"{m:.2f} ± {0 if s != s else s:.2f}" + ("**" if b else "")
        + f" ({n})" + marks.get((st, meth, ds), "")
        for m, s, n, b, st, meth, ds in zip(agg["mean"], agg["std"], agg["n"],
                                            np.isclose(agg["mean"], best), agg["setting"],
                                            agg["method"], agg["dataset"])]
    table = agg.pivot(index=["setting", "method"], columns="dataset", values="cell").fillna("–")
    is_ours = stats.ours_predicate(ours)
    order = sorted(table.index, key=lambda k: (k[0], is_ours(k[1]), k[1]))
    return table.loc[order]


def _significance_marks(tests: pd.DataFrame | None) -> dict:
    if tests is None or tests.empty:
        return {}
    if "verdict" in tests:
        mark = {"better": " *", "worse": " †", "unresolved": " ~"}
        return {(r.setting, r.baseline, r.dataset): mark[r.verdict]
                for r in tests.itertuples() if r.verdict in mark}
    sig = tests[tests["significant_holm"]]
    return {(r.setting, r.baseline, r.dataset): (" *" if r.mean_diff > 0 else " †")
            for r in sig.itertuples()}


def ci_table(ci: pd.DataFrame) -> pd.DataFrame:
    """``uncertainty.final_ci`` as rows (setting, method) x dataset, cells ``mean [low, high]``
    in percent with the run count."""
    if ci is None or ci.empty:
        return pd.DataFrame()
    cells = ci.assign(cell=[f"{100 * m:.2f} [{100 * lo:.2f}, {100 * hi:.2f}] ({n})"
                            for m, lo, hi, n in zip(ci["mean"], ci["ci_low"], ci["ci_high"],
                                                    ci["n"])])
    return cells.pivot(index=["setting", "method"], columns="dataset", values="cell").fillna("–")


def wall_time_table(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Minutes per complete run (sum of its rounds' wall times), mean over seeds, per
    (setting, method) x dataset, with a total row: what the study cost to run."""
    if df.empty or "time_round" not in df or runs.empty or "complete" not in runs:
        return pd.DataFrame()
    done = df[df["run"].isin(runs.loc[runs["complete"], "run"])]
    if done.empty:
        return pd.DataFrame()
    per_run = done.groupby(["setting", "method", "dataset", "run"])["time_round"].sum() / 60
    g = per_run.groupby(["setting", "method", "dataset"])
    cells = pd.DataFrame({"mean": g.mean(), "n": g.size()}).reset_index()
    cells["cell"] = [f"{m:.1f} ({n})" for m, n in zip(cells["mean"], cells["n"])]
    table = cells.pivot(index=["setting", "method"], columns="dataset", values="cell").fillna("–")
    total = per_run.groupby("dataset").sum()
    table.loc[("all", f"total, hours ({len(per_run)} runs)"), :] = [
        f"{total.get(c, 0) / 60:.2f}" for c in table.columns]
    return table


def runtime_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean seconds per round of each selection phase, per (dataset, method); the rows are the
    rounds that ended with a selection (round 0's record carries no selection time). A method's
    own sub-phases (region sampling, memory bank, MC dropout, ...) share one column, largest
    first, so the table stays narrow however many methods time their own phases."""
    cols = [c for c in df.columns if c.startswith("time_")]
    if not cols or "time_select_total" not in df:
        return pd.DataFrame()
    d = df[df["time_select_total"].notna()]
    if d.empty:
        return pd.DataFrame()
    extra = sorted(c[5:] for c in cols if c[5:] not in STANDARD_PHASES)
    phases = [p for p in ("inference", "query") if f"time_{p}" in d] + ["select_total"]
    g = d.groupby(["dataset", "method"])
    out = g[[f"time_{p}" for p in phases]].mean()
    out.columns = phases
    own = g[[f"time_{p}" for p in extra]].mean()
    out["query's sub-phases"] = [
        ", ".join(f"{p[5:]} {_fmt(v)}"
                  for p, v in row.dropna().sort_values(ascending=False).items())
        or "–" for _, row in own.iterrows()] if extra else "–"
    out["n_rounds"] = g.size()
    return out


def ttest_table(tests: pd.DataFrame) -> pd.DataFrame:
    """Readable t-test rows: ``*`` marks p < 0.05, before and after Holm's correction."""
    if tests.empty:
        return tests
    t = tests.copy()
    for col in ("mean_ours", "mean_baseline", "mean_diff", "mdd"):
        if col in t:
            t[col] = (100 * t[col]).round(2)
    t["sig"] = np.where(t["significant"], "*", "")
    t["sig_holm"] = np.where(t["significant_holm"], "*", "")
    keep = [c for c in t.columns if c not in ("significant", "significant_holm", "resolved")]
    return t[keep]


def pseudo_gain_table(gain: pd.DataFrame) -> pd.DataFrame:
    """``stats.pseudo_label_gain`` in accuracy points, p-values to 4 digits."""
    if gain.empty:
        return gain
    t = gain.copy()
    for col in ("mean_ssal", "mean_al", "mean_diff", "mdd"):
        t[f"{col}_pts"] = (100 * t.pop(col)).round(2)
    t[["t", "p", "p_holm"]] = t[["t", "p", "p_holm"]].round(4)
    t["mean_pseudo"] = t["mean_pseudo"].round(0)
    t["pseudo_acc_pct"] = (100 * t.pop("mean_pseudo_acc")).round(1)
    return t[["dataset", "method", "al_counterpart", "seeds", "n_pairs", "mean_pseudo",
              "pseudo_acc_pct", "mean_ssal_pts", "mean_al_pts", "mean_diff_pts", "rounds_ahead",
              "t", "p", "p_holm", "mdd_pts", "verdict"]
             ].set_index(["dataset", "method"])   # a dataset's rows read as a group


def label_efficiency_table(eff: pd.DataFrame) -> pd.DataFrame:
    """The numbers behind Fig. 3 as people read them: label counts whole, accuracy and saving
    in percent with one decimal (bootstrap ends ``_lo`` / ``_hi`` alike)."""
    if eff.empty:
        return eff
    t = eff.copy()
    t["target_acc"] = (100 * t["target_acc"]).round(1)
    for col in ("ours_labels", "baseline_labels", "baseline_max_labels"):
        for c in (col, f"{col}_lo", f"{col}_hi"):
            if c in t:
                t[c] = t[c].round(0)
    for c in ("saving_pct", "saving_pct_lo", "saving_pct_hi"):
        if c in t:
            t[c] = t[c].round(1)
    return t.rename(columns={"target_acc": "target_acc_pct"})


# ---------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def _flat(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    d = df.reset_index() if not isinstance(df.index, pd.RangeIndex) else df
    rows = [[_fmt(v) for v in row] for row in d.itertuples(index=False)]
    return [str(c) for c in d.columns], rows


def to_markdown(df: pd.DataFrame) -> str:
    head, rows = _flat(df)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    s = s.replace("\\", "\\textbackslash{}")
    for ch in "&%$#_{}":
        s = s.replace(ch, "\\" + ch)
    s = s.replace("~", "$\\sim$").replace("±", "$\\pm$").replace("–", "--") \
        .replace("†", "$^\\dagger$")
    if s.startswith("**") and "**" in s[2:]:
        end = s.index("**", 2)
        s = "\\textbf{" + s[2:end] + "}" + s[end + 2:]
    return s


def to_latex(df: pd.DataFrame, caption: str = "") -> str:
    head, rows = _flat(df)
    lines = ["\\begin{table}[t]", "\\centering", "\\small",
             "\\begin{tabular}{" + "l" * len(head) + "}", "\\toprule",
             " & ".join(_tex(h) for h in head) + " \\\\", "\\midrule"]
    lines += [" & ".join(_tex(c) for c in r) + " \\\\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    if caption:
        lines.append("\\caption{" + _tex(caption) + "}")
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def to_html(df: pd.DataFrame, caption: str = "", table_id: str = "") -> str:
    """An HTML ``<table>`` with the Markdown's cell texts: ``**best**`` in bold, numeric columns
    right-aligned, a leading index column's repeats left blank (rows read as groups), and
    headers that may wrap at ``_`` (narrow columns fit a normal window). A column with
    ``_lo`` and ``_hi`` partners (an interval) shows as one ``value [lo, hi]`` column."""
    import html

    head, rows = _with_intervals(*_flat(df))
    n_index = 0 if isinstance(df.index, pd.RangeIndex) else df.index.nlevels
    numeric = [bool(rows) and all(_is_number(r[j]) for r in rows) for j in range(len(head))]

    def cell(text: str, j: int, tag="td") -> str:
        t = html.escape(text).replace("\n", "<br>")  # an interval under its value
        if t.startswith("**") and "**" in t[2:]:
            end = t.index("**", 2)
            t = f"<strong>{t[2:end]}</strong>{t[end + 2:]}"
        cls = ' class="num"' if numeric[j] else ""
        return f"<{tag}{cls}>{t}</{tag}>"

    out = [f'<table id="{html.escape(table_id)}">' if table_id else "<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(
        cell(h, j, "th").replace("_", "_<wbr>") for j, h in enumerate(head))
        + "</tr></thead><tbody>")
    previous: list[str] = []
    for r in rows:
        shown = list(r)
        for j in range(min(n_index - 1, len(r))):  # blank a group label repeated from above
            if previous[:j + 1] == r[:j + 1]:
                shown[j] = ""
        out.append("<tr>" + "".join(cell(v, j) for j, v in enumerate(shown)) + "</tr>")
        previous = r
    out.append("</tbody></table>")
    return "\n".join(out)


def _with_intervals(head: list[str], rows: list[list[str]]):
    """Fold ``c_lo`` / ``c_hi`` into ``c``'s cells as ``value`` over ``[lo, hi]`` (the page's
    view: the Markdown, LaTeX and CSV keep the three columns)."""
    ends = {c: (head.index(f"{c}_lo"), head.index(f"{c}_hi")) for c in head
            if f"{c}_lo" in head and f"{c}_hi" in head}
    if not ends:
        return head, rows
    drop = {j for pair in ends.values() for j in pair}
    at = {head.index(c): pair for c, pair in ends.items()}

    def fold(r: list[str]) -> list[str]:
        out = []
        for j, v in enumerate(r):
            if j in at and not (r[at[j][0]] == r[at[j][1]] == "–"):
                v = f"{v}\n[{r[at[j][0]]},\u00a0{r[at[j][1]]}]"
            if j not in drop:
                out.append(v)
        return out
    return [h for j, h in enumerate(head) if j not in drop], [fold(r) for r in rows]


def _is_number(text: str) -> bool:
    text = text.replace("\n", " ").split(" [")[0]  # a value and its interval: as the value
    if text in ("–", ""):
        return True
    try:
        float(text)
        return True
    except ValueError:
        return False


def write(df: pd.DataFrame, out_dir: str | Path, name: str, caption: str = "") -> list[Path]:
    """``name.md`` (with the caption as a heading), ``name.tex`` and ``name.csv`` (full
    precision, for a spreadsheet or pandas)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, tex, csv = (out_dir / f"{name}.{ext}" for ext in ("md", "tex", "csv"))
    md.write_text((f"**{caption}**\n\n" if caption else "") + to_markdown(df))
    tex.write_text(to_latex(df, caption))
    (df if isinstance(df.index, pd.RangeIndex) else df.reset_index()).to_csv(csv, index=False)
    return [md, tex, csv]
