"""The paper's figures from the records (matplotlib, Agg backend; seaborn palettes; PNG + PDF).

Each ``figN`` function takes DataFrames from ``analysis.load`` and returns a Figure, or raises
``Skip`` with the reason when the records hold nothing for it (the report lists it as skipped).
The accuracy figures follow the paper's layout: one row per setting (or per Fig. 5 panel), one
column per dataset, a legend per row grouped by family. A family has its own line style and
seaborn palette, a method its own marker and shade within it (stable across figures); ours is
red, thick and drawn on top with a +- std band; the y-axis fits the rounds after round 0 (the
initial labels every method shares), so the differences near the top stay visible.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from . import declared, stats, uncertainty  # noqa: E402

MAIN_SETTINGS = ("al", "ssal")
SETTING_TITLES = {"al": "AL (labelled data only)", "ssal": "SSAL (with unlabelled data)",
                  "weak": "weak supervision + AL"}
SETTING_SHORT = {"al": "AL", "ssal": "SSAL", "weak": "weak"}
# family -> (line style, seaborn palette); ours gets OURS_COLOURS
FAMILY_STYLE = {"AL": ("-", "Blues_d"), "SSAL": ("--", "Greens_d"), "ST": ("-.", "Purples_d"),
                "ablation": ((0, (4, 1.5)), "colorblind"), "plug-in": ((0, (1, 1)), "Dark2")}
GROUP_ORDER = ("ours", "ablation", "plug-in", "AL", "SSAL", "ST")
OURS_COLOURS = ("#d62728", "#ff7f0e", "#8c564b", "#e377c2")
MARKERS = "osD^vPX<>ph"


class Skip(Exception):
    """Raised with the reason a figure cannot be drawn from the records at hand."""


def palette(labels, ours=None) -> dict[str, dict]:
    """A style per label where one method has many (sweep variants like ``m (beta=0.1)``):
    an ours method's base configuration red and thick, every other label its own tab10 colour
    and marker."""
    is_ours = stats.ours_predicate(ours)
    base = [lab for lab in sorted(set(labels)) if is_ours(lab)]
    rest = [lab for lab in sorted(set(labels)) if lab not in base]
    colours = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 3]  # red is ours'
    style = {lab: dict(color=OURS_COLOURS[i % len(OURS_COLOURS)], lw=2.6, marker="*",
                       ms=8, zorder=5) for i, lab in enumerate(base)}
    style.update({lab: dict(color=colours[i % len(colours)], lw=1.5,
                            marker=MARKERS[i % len(MARKERS)], ms=4.5, zorder=3)
                  for i, lab in enumerate(rest)})
    return style


def _members(groups: dict[str, str], fam: str, ours) -> list[str]:
    """A family's methods, the methods named as ours first."""
    named = stats.ours_names(ours)
    return sorted((m for m, g in groups.items() if g == fam),
                  key=lambda m: (named.index(m) if m in named else len(named), m))


def primary(groups: dict[str, str], ours=None) -> str | None:
    """The ours method drawn red, with a band: the first named as ours, else the first."""
    return next(iter(_members(groups, "ours", ours)), None)


def method_styles(groups: dict[str, str], ours=None) -> dict[str, dict]:
    """Line style per method: family -> line style and palette, method -> marker and shade;
    ours thick, red first, on top. ``groups`` is ``stats.plot_groups`` of the whole study, so
    a method looks the same in every figure."""
    style = {}
    for fam in GROUP_ORDER:
        members = _members(groups, fam, ours)
        if not members:
            continue
        if fam == "ours":
            for i, m in enumerate(members):
                style[m] = dict(color=OURS_COLOURS[i % len(OURS_COLOURS)], ls="-",
                                lw=2.8 if i == 0 else 2.0, marker="*P^v"[i % 4],
                                ms=9 if i == 0 else 6, zorder=6 if i == 0 else 5)
            continue
        ls, pal = FAMILY_STYLE[fam]
        for i, (m, colour) in enumerate(zip(members, _shades(pal, len(members)))):
            style[m] = dict(color=colour, ls=ls, lw=1.4, marker=MARKERS[i % len(MARKERS)],
                            ms=4.5, zorder=3)
    return style


def _shades(pal: str, n: int) -> list:
    """n colours of a family: a sequential palette without its palest shade (hard to see on
    white), or distinct hues without ours' red and orange and the AL blues."""
    if pal == "colorblind":
        cb = sns.color_palette("colorblind")
        return ([cb[i] for i in (5, 6, 7, 9, 4, 8, 2)] * (n // 7 + 1))[:n]
    if pal.endswith("_d"):
        return sns.color_palette(pal, n + 1)[:n] if n > 1 else [sns.color_palette(pal, 3)[1]]
    return sns.color_palette(pal, n)


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=130, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def _band(ax, c: pd.DataFrame, label: str, style: dict, scale=100.0, band=True) -> None:
    c = c.sort_values("n_labels")
    x, m, s = c["n_labels"].to_numpy(), scale * c["mean"].to_numpy(), \
        scale * c["std"].fillna(0).to_numpy()
    ax.plot(x, m, label=label, **style)
    if band:
        ax.fill_between(x, m - s, m + s, color=style["color"], alpha=0.15, lw=0,
                        zorder=style.get("zorder", 2) - 1)


def _fit_ylim(ax, c: pd.DataFrame, scale=100.0) -> None:
    """The y-range of the mean curves after round 0 (every method starts from the same labels
    there); round 0 drops off the bottom, and a note at the bottom right gives its value."""
    later = c[c["round"] >= 1]
    if later.empty:
        return
    lo, hi = scale * later["mean"].min(), scale * later["mean"].max()
    pad = max(0.08 * (hi - lo), 0.4)
    ax.set_ylim(lo - pad, hi + pad)
    first = scale * c.loc[c["round"] == 0, "mean"]
    if len(first) and first.min() < lo - pad:
        ax.text(0.98, 0.03, f"round 0: {first.min():.1f}" + (f"-{first.max():.1f}"
                if first.max() - first.min() >= 0.05 else "") + "% (below)",
                transform=ax.transAxes, fontsize=7, color="0.3", ha="right", va="bottom",
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1), zorder=10)


def _seeds(c: pd.DataFrame) -> str:
    n = sorted(c["n"].dropna().astype(int).unique())
    return f"{n[0]} seeds" if len(n) == 1 else f"{n[0]}-{n[-1]} seeds"


def _row_legend(fig, axes_row, groups: dict[str, str]) -> None:
    """One legend right of a row, its entries under family headings in ``GROUP_ORDER``."""
    seen = {}
    for ax in axes_row:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if not seen:
        return
    handles, labels, heads = [], [], []
    for fam in GROUP_ORDER:
        mine = [lab for lab in seen if groups.get(lab.split(" (")[0]) == fam]
        if not mine:
            continue
        heads.append(len(labels))
        handles.append(Line2D([], [], ls="none"))
        labels.append(stats.GROUPS[fam])
        for lab in mine:
            handles.append(seen[lab])
            labels.append(lab)
    visible = [ax for ax in axes_row if ax.axison]
    leg = visible[-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.03, 1.0),
                             fontsize=7.5, frameon=False, handlelength=2.8, borderaxespad=0)
    for i in heads:
        leg.get_texts()[i].set_fontweight("bold")


def _method_grid(c: pd.DataFrame, row_key: str, rows: list, groups: dict[str, str], ours,
                 title: str, row_title=None, ylabel="test accuracy (%)"):
    """Rows by ``row_key``, one column per dataset; a panel with no curve is not drawn."""
    styles, main = method_styles(groups, ours), primary(groups, ours)
    cols = sorted(c["dataset"].unique())
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(len(rows), len(cols), squeeze=False,
                                 figsize=(3.3 * len(cols) + 2.0, 2.75 * len(rows)))
    for i, r in enumerate(rows):
        for j, ds in enumerate(cols):
            ax = axes[i, j]
            sub = c[(c[row_key] == r) & (c["dataset"] == ds)]
            if sub.empty:
                ax.axis("off")
                continue
            order = sorted(sub["method"].unique(),
                           key=lambda m: (GROUP_ORDER.index(groups.get(m, "AL")), m))
            for m in order:
                g = sub[sub["method"] == m]
                label = g["label"].iloc[0] if "label" in g else m
                st = styles.get(m, dict(color="0.3", lw=1.2, marker="."))
                _band(ax, g, label, st, band=m == main)
            _fit_ylim(ax, sub)
            ax.set_title(f"{ds} · {row_title(r, sub) if row_title else r}", fontsize=9)
            ax.set_xlabel("number of labels", fontsize=8)
            ax.set_ylabel(ylabel if j == 0 or not axes[i, j - 1].axison else "", fontsize=8)
            ax.tick_params(labelsize=7.5)
        _row_legend(fig, axes[i], groups)
    band = f"; band: ± std of {main}" if (c["method"] == main).any() else ""
    fig.suptitle(f"{title}  (mean of {_seeds(c)}{band})", fontsize=10)
    fig.tight_layout()
    return fig


def _grid(curve_df: pd.DataFrame, row_key: str, rows, col_key: str, cols, ours, title: str,
          ylabel="test accuracy (%)", label_col="method"):
    """Panels of many labelled curves (sweep variants); a panel with no curve is not drawn."""
    style = palette(curve_df[label_col].unique(), ours)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.6 * len(cols), 3.0 * len(rows)),
                             squeeze=False)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            sub = curve_df[(curve_df[row_key] == r) & (curve_df[col_key] == c)]
            if sub.empty:
                ax.axis("off")
                continue
            for lab, g in sub.groupby(label_col):
                _band(ax, g, lab, style[lab])
            ax.set_title(f"{c} · {SETTING_TITLES.get(r, r)}" if row_key == "setting"
                         else f"{c} · {r}", fontsize=9)
            ax.set_xlabel("number of labels")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=8, frameon=False)
    fig.suptitle(title + "  (mean $\\pm$ std over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
def fig1(df: pd.DataFrame, ours=None, settings=MAIN_SETTINGS, groups=None):
    """The paper's Fig. 1: a row per setting (AL, SSAL), a column per dataset; ours and the
    baselines (ablations and plug-ins of ours are Fig. 5's)."""
    groups = groups or stats.plot_groups(df, ours)
    d = df[df["setting"].isin(settings)
           & ~df["method"].map(groups).isin(["ablation", "plug-in"])]
    if d.empty:
        raise Skip(f"no runs in the {'/'.join(settings)} settings")
    rows = [s for s in settings if (d["setting"] == s).any()]
    return _method_grid(stats.curves(d), "setting", rows, groups, ours,
                        "Fig. 1: test accuracy against labels",
                        row_title=lambda r, _: SETTING_TITLES.get(r, r))


def fig2(df: pd.DataFrame, ours=None, main_settings=MAIN_SETTINGS, groups=None):
    """The weak-supervision setting: every setting that is not a main one (``weak``)."""
    groups = groups or stats.plot_groups(df, ours)
    d = df[~df["setting"].isin(main_settings)]
    if d.empty:
        raise Skip("no runs outside the al/ssal settings (weak supervision)")
    return _method_grid(stats.curves(d), "setting", sorted(d["setting"].unique()), groups,
                        ours, "Fig. 2: weakly-supervised setting",
                        row_title=lambda r, _: SETTING_TITLES.get(r, r),
                        ylabel="test accuracy (%)")


FIG3_LEGEND = {stats.AL: "best active-learning baseline",
               stats.ST: "best baseline using pseudo-labels\n(self-training or SSAL)"}


def fig3(eff: pd.DataFrame):
    """Labels needed by the best AL / self-training baseline to match ours (bars per dataset);
    the headline names ours, its setting and the savings (averaged only when they agree)."""
    if eff is None or eff.empty:
        raise Skip("needs an ours method in the ssal setting and baselines on the same dataset")
    datasets = sorted(eff["dataset"].unique())
    fams = [stats.AL, stats.ST]
    fig, ax = plt.subplots(figsize=(2.4 + 2.2 * len(datasets), 3.4))
    width = 0.27
    colours = {"ours": "#d62728", stats.AL: sns.color_palette("Blues_d", 3)[1],
               stats.ST: sns.color_palette("Greens_d", 3)[1]}
    mine = eff["ours"].iloc[0]
    setting = eff["ours_setting"].iloc[0] if "ours_setting" in eff else "ssal"
    for i, ds in enumerate(datasets):
        e = eff[eff["dataset"] == ds]
        ax.bar(i - width, e["ours_labels"].iloc[0], width, color=colours["ours"],
               label=f"{mine} ({SETTING_SHORT.get(setting, setting)})" if i == 0 else None,
               yerr=_ci_err(e.iloc[0], "ours_labels"), capsize=3, ecolor="0.25")
        ours_top = np.nanmax([e["ours_labels"].iloc[0], e.iloc[0].get("ours_labels_hi", np.nan)])
        ax.text(i - width, ours_top, f"{e['ours_labels'].iloc[0]:.0f}",
                ha="center", va="bottom", fontsize=7)
        for k, fam in enumerate(fams, start=0):
            r = e[e["family"] == fam]
            if r.empty:
                continue
            r = r.iloc[0]
            x = i + k * width
            where = SETTING_SHORT.get(r["setting"], r["setting"])
            if r["reached"]:
                ax.bar(x, r["baseline_labels"], width, color=colours[fam],
                       label=FIG3_LEGEND[fam] if i == 0 else None,
                       yerr=_ci_err(r, "baseline_labels", r["baseline_max_labels"]), capsize=3,
                       ecolor="0.25")
                txt = f"{r['baseline']} ({where})\n{r['saving_pct']:+.0f}%"
                top = min(r.get("baseline_labels_hi", np.nan), r["baseline_max_labels"])
                ax.text(x, np.nanmax([r["baseline_labels"], top]), txt, ha="center",
                        va="bottom", fontsize=7)
            else:  # hatched bar up to the last measured label count: a lower bound
                ax.bar(x, r["baseline_max_labels"], width, color="white", edgecolor=colours[fam],
                       hatch="//", label=FIG3_LEGEND[fam] if i == 0 else None)
                ax.text(x, r["baseline_max_labels"],
                        f"{r['baseline']} ({where})\n> {r['baseline_max_labels']:.0f}",
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_xlabel("dataset")
    ax.set_ylabel(f"labels to reach {mine}'s\nfinal accuracy")
    summary = textwrap.fill(f"saving vs the best baselines: {stats.saving_summary(eff)}", 75)
    ax.set_title(f"Fig. 3: label efficiency of {mine} ({SETTING_SHORT.get(setting, setting)} "
                 f"setting)\n{summary}", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.margins(y=0.22)
    fig.tight_layout()
    return fig


def fig4_params(final: pd.DataFrame, ours=None):
    """Final accuracy vs each swept parameter (read from the runs' configs)."""
    pts = stats.sweep_points(final)
    if pts.empty:
        raise Skip("no hyper-parameter sweep (runs of one method differing in config params)")
    params = sorted(pts["param"].unique())
    fig, axes = plt.subplots(1, len(params), figsize=(3.8 * len(params), 3.2), squeeze=False)
    style = palette(pts["method"].unique(), ours)  # one line per (dataset, method, setting)
    for ax, p in zip(axes[0], params):
        sub = pts[pts["param"] == p]
        for (m, ds, st), g in sub.groupby(["method", "dataset", "setting"]):
            numeric = g["numeric"].notna().all()
            g = g.sort_values("numeric" if numeric else "value")
            x = g["numeric"] if numeric else np.arange(len(g))
            ax.errorbar(x, 100 * g["mean"], yerr=100 * g["std"].fillna(0), capsize=3,
                        label=f"{ds}: {m} ({st})", color=style[m]["color"], marker="o")
            if not numeric:
                ax.set_xticks(x, g["value"])
        ax.set_xlabel(p)
        ax.set_ylabel("final test accuracy (%)")
        ax.set_title(f"effect of {p}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Fig. 4: hyper-parameter study (mean $\\pm$ std over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def _variants(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``variant``: the method plus how its parameters differ from its sweep's base."""
    df = df.copy()
    df["variant"] = df["method"]
    for (m, ds, st), g in df.groupby(["method", "dataset", "setting"]):
        if g["params_key"].nunique() < 2:
            continue
        base = stats.base_params(g)
        for pk in g["params_key"].unique():
            sel = (df["method"] == m) & (df["dataset"] == ds) & (df["setting"] == st) & \
                  (df["params_key"] == pk)
            df.loc[sel, "variant"] = stats.variant_label(m, stats._params(pk), base)
    return df


def fig4_pseudo(df: pd.DataFrame, ours=None, groups=None):
    """Pseudo-label accuracy per round for ours methods and their variants (with / without the
    memory bank show up as separate methods or parameter values)."""
    is_ours = stats.ours_predicate(ours)
    d = df[df["method"].map(is_ours) & df.get("pseudo_acc", pd.Series(index=df.index)).notna()]
    if d.empty:
        raise Skip("no pseudo-label accuracy recorded for an ours method")
    d = _variants(d)
    c = stats.curves(d, by=("variant", "method", "dataset", "setting"), metric="pseudo_acc")
    title = "Fig. 4(c): pseudo-label accuracy of ours"
    if (c["variant"] == c["method"]).all():  # no sweeps: the methods' own styles
        groups = groups or stats.plot_groups(df, ours)
        return _method_grid(c, "setting", sorted(c["setting"].unique()), groups, ours, title,
                            row_title=lambda r, _: SETTING_TITLES.get(r, r),
                            ylabel="pseudo-label accuracy (%)")
    return _grid(c, "setting", sorted(c["setting"].unique()), "dataset",
                 sorted(c["dataset"].unique()), ours, title,
                 ylabel="pseudo-label accuracy (%)", label_col="variant")


def fig4_curves(df: pd.DataFrame, ours=None):
    """Accuracy curves of every swept configuration (the paper's m_L / m_H panels)."""
    keys = stats.swept(df)
    if not keys:
        raise Skip("no hyper-parameter sweep")
    sel = pd.Series(False, index=df.index)
    for m, ds, st in keys:
        sel |= (df["method"] == m) & (df["dataset"] == ds) & (df["setting"] == st)
    d = _variants(df[sel])
    d["panel"] = d["method"] + " / " + d["setting"]
    c = stats.curves(d, by=("variant", "method", "panel", "dataset", "setting"))
    return _grid(c, "panel", sorted(c["panel"].unique()), "dataset", sorted(c["dataset"].unique()),
                 ours, "Fig. 4(d,e): accuracy of each swept configuration", label_col="variant")


def _prefer_setting(df: pd.DataFrame, order=("ssal", "al")) -> pd.DataFrame:
    """One curve per (method, dataset): the first setting in ``order`` it ran in."""
    keep = []
    for _, g in df.groupby(["method", "dataset"]):
        for st in list(order) + sorted(g["setting"].unique()):
            if (g["setting"] == st).any():
                keep.append(g[g["setting"] == st])
                break
    return pd.concat(keep) if keep else df.iloc[:0]


def fig5(df: pd.DataFrame, ours=None, groups=None):
    """(a) ours on top of other methods (plug-ins, and ours with another uncertainty) against
    those methods alone; (b) ablations of ours against the full method. Ours is read in the
    SSAL setting and a baseline in the setting it ran in (AL first): each panel says which."""
    is_ours = stats.ours_predicate(ours)
    groups = groups or stats.plot_groups(df, ours)
    pairs = stats.plugin_bases(df, ours)
    ours_m = sorted(m for m in df["method"].unique() if is_ours(m))
    ablations = [m for m in ours_m if groups.get(m) == "ablation"]
    # an ablation is drawn against the method it declares itself a variant of
    full = sorted({declared.variant_of(a) for a in ablations} & set(ours_m) - set(ablations))
    panels = {}
    if pairs:
        panels["(a) ours on top of other methods"] = sorted(set(pairs) | set(pairs.values()))
    if ablations and full:
        panels["(b) ablations"] = sorted(set(ablations) | set(full))
    if not panels:
        raise Skip("no ours-on-top-of-X pairs or ablation variants in the records")
    parts = []
    for name, methods in panels.items():
        d = pd.concat([_prefer_setting(df[df["method"] == m],
                                       ("ssal", "al") if is_ours(m) else ("al", "ssal"))
                       for m in methods])
        c = stats.curves(d)
        c["panel"] = name
        parts.append(c)
    c = pd.concat(parts, ignore_index=True)
    # keep datasets where a panel has more than one method
    c = c.groupby(["panel", "dataset"]).filter(lambda g: g["method"].nunique() > 1)
    if c.empty:
        raise Skip("pairs/ablations exist but never on the same dataset as their reference")
    mixed = c.groupby(["panel", "dataset"])["setting"].transform("nunique") > 1
    c["label"] = np.where(mixed, c["method"] + " (" + c["setting"].map(
        lambda st: SETTING_SHORT.get(st, st)) + ")", c["method"])

    def row_title(panel, sub):
        sts = [SETTING_SHORT.get(st, st) for st in dict.fromkeys(
            sub.sort_values("method", key=lambda m: ~m.map(is_ours))["setting"])]
        return f"{panel}: {' vs '.join(sts)}" if len(sts) > 1 else f"{panel}, {sts[0]}"
    return _method_grid(c, "panel", list(dict.fromkeys(c["panel"])), groups, ours,
                        "Fig. 5: ours as a plug-in; ablations", row_title=row_title)


# ---------------------------------------------------------------------------------------------
def tsne_projection(path: Path, cache_dir: Path | None = None, max_points=1000, seed=0):
    """2-D t-SNE of a run's saved round-1 pool features (``features_round1.npz``), on a seeded
    subsample that always keeps the queried points; cached as ``<run>.tsne.npz``."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    path = Path(path)
    cache = (cache_dir or path.parent) / f"{path.parent.name}.tsne.npz"
    if cache.exists():
        z = np.load(cache)
        return z["xy"], z["labels"], z["queried"].astype(bool)
    z = np.load(path)
    feats, labels, queried = z["features"].astype(np.float32), z["labels"], z["queried"]
    n = len(feats)
    is_q = np.zeros(n, bool)
    is_q[queried] = True
    rng = np.random.default_rng(seed)
    keep = np.flatnonzero(is_q)
    rest = np.flatnonzero(~is_q)
    take = rng.choice(rest, size=min(len(rest), max(max_points - len(keep), 0)), replace=False)
    idx = np.sort(np.concatenate([keep, take]))
    x = feats[idx]
    perplexity = float(min(30, max(2, (len(idx) - 1) // 3)))
    # one thread: on a shared CPU, OpenMP threads spinning against each other made t-SNE of 60
    # points take 14 s instead of 0.3 s; PCA to 50 dimensions first, as is usual for t-SNE
    with threadpool_limits(1):
        if x.shape[1] > 50 and len(x) > 50:
            x = PCA(50, random_state=seed).fit_transform(x)
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed,
                  n_jobs=1).fit_transform(x)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, xy=xy, labels=labels[idx], queried=is_q[idx])
    return xy, labels[idx], is_q[idx]


def fig6(runs: pd.DataFrame, ours=None, cache_dir=None, pairs: dict | None = None):
    """t-SNE of pool features with the round-1 queries, baselines next to ours-on-top-of-them."""
    r = runs[runs.get("features", pd.Series(False, index=runs.index)).fillna(False)] \
        if len(runs) else runs
    if r.empty:
        raise Skip("no run saved features (run with --set save_features=true)")
    r = r.sort_values(["dataset", "seed"]).groupby(["dataset", "method"]).head(1)
    pairs = pairs or {}
    order = []
    for ds, g in r.groupby("dataset"):
        methods = list(g["method"])
        ranked = sorted(methods, key=lambda m: (pairs.get(m, m), m != pairs.get(m, m), m))
        order += [(ds, m) for m in ranked]
    ncol = min(4, len(order))
    nrow = int(np.ceil(len(order) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.2 * nrow), squeeze=False)
    for ax in axes.flat[len(order):]:
        ax.axis("off")
    for ax, (ds, m) in zip(axes.flat, order):
        row = r[(r["dataset"] == ds) & (r["method"] == m)].iloc[0]
        xy, y, q = tsne_projection(Path(row["path"]) / "features_round1.npz", cache_dir)
        ax.scatter(xy[~q, 0], xy[~q, 1], c=y[~q], cmap="tab10", s=4, alpha=0.45,
                   vmin=0, vmax=max(9, int(y.max())))
        ax.scatter(xy[q, 0], xy[q, 1], c="black", marker="^", s=22, label="queried in round 1")
        ax.set_title(f"{ds}: {m} (seed {row['seed']})", fontsize=9)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_xticks([])
        ax.set_yticks([])
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle("Fig. 6: pool features (t-SNE), colour = gold class, black = queried", fontsize=10)
    fig.tight_layout()
    return fig


def _ci_err(row, col: str, cap: float = np.inf):
    """Error bar of ``col`` from its ``_lo`` / ``_hi`` bootstrap ends (an open upper end is drawn
    up to ``cap``, the labels run); None when the row has no interval."""
    lo, hi = row.get(f"{col}_lo", np.nan), row.get(f"{col}_hi", np.nan)
    if not (np.isfinite(lo) or np.isfinite(hi)):
        return None
    v = row[col]
    return [[max(v - min(lo, cap), 0)], [max(min(hi, cap) - v, 0)]]


def final_ci(ci: pd.DataFrame, ours, groups=None):
    """Final-round accuracy per method with bootstrap intervals over seeds, one panel per
    setting and dataset (``uncertainty.final_ci``); with ``groups`` (``stats.plot_groups``)
    each method keeps its Fig. 1 colour."""
    if ci is None or ci.empty:
        raise Skip("no complete run")
    panels = sorted(ci.groupby(["setting", "dataset"]).groups)
    ncol = min(3, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    height = max(2.2, 0.22 * ci.groupby(["setting", "dataset"]).size().max() + 0.8)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, height * nrow), squeeze=False)
    style = palette(ci["method"].unique(), ours)
    if groups:
        style.update(method_styles(groups, ours))
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (st, ds) in zip(axes.flat, panels):
        g = ci[(ci["setting"] == st) & (ci["dataset"] == ds)].sort_values("mean")
        for y, r in enumerate(g.itertuples()):
            m, lo, hi = 100 * r.mean, 100 * r.ci_low, 100 * r.ci_high
            err = [[m - lo], [hi - m]] if np.isfinite(lo) else None
            sty = style[r.method]
            ax.errorbar(m, y, xerr=err, fmt=sty["marker"], capsize=3, color=sty["color"],
                        ms=7 if sty["lw"] > 2 else 4.5)
        ax.set_yticks(range(len(g)), g["method"], fontsize=8)
        ax.set_title(f"{ds} - {SETTING_TITLES.get(st, st)}", fontsize=9)
        ax.set_xlabel("final test accuracy (%)")
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"Final accuracy: mean over seeds, {uncertainty.CONFIDENCE:.0%} bootstrap "
                 "interval", fontsize=10)
    fig.tight_layout()
    return fig
