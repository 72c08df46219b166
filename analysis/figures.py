"""The paper's figures from the records (matplotlib, Agg backend; PNG and PDF).

Each ``figN`` function takes DataFrames from ``analysis.load`` and returns a Figure, or None
when the records hold nothing for it (the report lists it as skipped with the reason).
"ours" methods are drawn thick and warm-coloured, baselines thin; a method keeps its colour
across all figures.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import stats, uncertainty  # noqa: E402

MAIN_SETTINGS = ("al", "ssal")
SETTING_TITLES = {"al": "AL (labelled data only)", "ssal": "SSAL (with unlabelled data)"}


class Skip(Exception):
    """Raised with the reason a figure cannot be drawn from the records at hand."""


def palette(methods, ours="actune") -> dict[str, dict]:
    """Stable line styles: baselines on tab20 in name order, ours methods on warm colours."""
    is_ours = stats.ours_predicate(ours)
    base = sorted(m for m in set(methods) if not is_ours(m))
    mine = sorted(m for m in set(methods) if is_ours(m))
    tab = plt.get_cmap("tab20").colors  # dark shades first, then light; reds left to ours
    cold = [tab[i] for i in list(range(0, 20, 2)) + list(range(1, 20, 2)) if i not in (6, 7)]
    warm = plt.get_cmap("autumn")(np.linspace(0, 0.8, max(len(mine), 1)))
    style = {m: dict(color=cold[i % len(cold)], lw=1.3, marker=".", zorder=2)
             for i, m in enumerate(base)}
    style.update({m: dict(color=warm[i] if i else "#d62728", lw=2.4, marker="o", ms=4, zorder=3)
                  for i, m in enumerate(mine)})
    return style


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=130, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def _band(ax, c: pd.DataFrame, label: str, style: dict, scale=100.0) -> None:
    c = c.sort_values("n_labels")
    x, m, s = c["n_labels"].to_numpy(), scale * c["mean"].to_numpy(), \
        scale * c["std"].fillna(0).to_numpy()
    ax.plot(x, m, label=label, **style)
    ax.fill_between(x, m - s, m + s, color=style["color"], alpha=0.15, lw=0)


def _grid(curve_df: pd.DataFrame, row_key: str, rows, col_key: str, cols, ours, title: str,
          ylabel="test accuracy (%)", label_col="method"):
    style = palette(curve_df["method"].unique(), ours)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.6 * len(cols), 3.0 * len(rows)),
                             squeeze=False)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j]
            sub = curve_df[(curve_df[row_key] == r) & (curve_df[col_key] == c)]
            for lab, g in sub.groupby(label_col):
                _band(ax, g, lab, style.get(g["method"].iloc[0], dict(color="k")))
            ax.set_title(f"{c} - {SETTING_TITLES.get(r, r)}" if row_key == "setting"
                         else f"{c} - {r}", fontsize=9)
            ax.set_xlabel("number of labels")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if sub.empty:
                ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
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
def fig1(df: pd.DataFrame, ours="actune", settings=MAIN_SETTINGS):
    """Test accuracy vs labels per dataset; AL and SSAL rows; one line per method."""
    d = df[df["setting"].isin(settings)]
    if d.empty:
        raise Skip(f"no runs in the {'/'.join(settings)} settings")
    rows = [s for s in settings if (d["setting"] == s).any()]
    return _grid(stats.curves(d), "setting", rows, "dataset", sorted(d["dataset"].unique()),
                 ours, "Fig. 1: active learning and semi-supervised active learning")


def fig2(df: pd.DataFrame, ours="actune", main_settings=MAIN_SETTINGS):
    """The weak-supervision setting: every setting that is not a main one (``weak``)."""
    d = df[~df["setting"].isin(main_settings)]
    if d.empty:
        raise Skip("no runs outside the al/ssal settings (weak supervision)")
    return _grid(stats.curves(d), "setting", sorted(d["setting"].unique()), "dataset",
                 sorted(d["dataset"].unique()), ours, "Fig. 2: weakly-supervised setting")


def fig3(eff: pd.DataFrame):
    """Labels needed by the best AL / self-training baseline to match ours (bars per dataset)."""
    if eff is None or eff.empty:
        raise Skip("needs an ours method in the ssal setting and baselines on the same dataset")
    datasets = sorted(eff["dataset"].unique())
    fams = [stats.AL, stats.ST]
    fig, ax = plt.subplots(figsize=(2.0 + 2.2 * len(datasets), 3.4))
    width = 0.27
    colours = {"ours": "#d62728", stats.AL: "#1f77b4", stats.ST: "#2ca02c"}
    for i, ds in enumerate(datasets):
        e = eff[eff["dataset"] == ds]
        ax.bar(i - width, e["ours_labels"].iloc[0], width, color=colours["ours"],
               label=f"ours ({e['ours'].iloc[0]})" if i == 0 else None,
               yerr=_ci_err(e.iloc[0], "ours_labels"), capsize=3, ecolor="0.25")
        for k, fam in enumerate(fams, start=0):
            r = e[e["family"] == fam]
            if r.empty:
                continue
            r = r.iloc[0]
            x = i + k * width
            if r["reached"]:
                ax.bar(x, r["baseline_labels"], width, color=colours[fam],
                       label=f"best {fam} baseline" if i == 0 else None,
                       yerr=_ci_err(r, "baseline_labels", r["baseline_max_labels"]), capsize=3,
                       ecolor="0.25")
                txt = f"{r['baseline']}\n{r['saving_pct']:.0f}%"
                top = min(r.get("baseline_labels_hi", np.nan), r["baseline_max_labels"])
                ax.text(x, np.nanmax([r["baseline_labels"], top]), txt, ha="center",
                        va="bottom", fontsize=7)
            else:  # hatched bar up to the last measured label count: a lower bound
                ax.bar(x, r["baseline_max_labels"], width, color="white", edgecolor=colours[fam],
                       hatch="//", label=f"best {fam} baseline" if i == 0 else None)
                ax.text(x, r["baseline_max_labels"],
                        f"{r['baseline']}\n> {r['baseline_max_labels']:.0f}",
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_xlabel("dataset")
    ax.set_ylabel("labels to reach ours' final accuracy")
    saved = eff.loc[eff["reached"], "saving_pct"]
    avg = f"average saving {saved.mean():.1f}% over {len(saved)} comparisons" if len(saved) \
        else "no baseline reached ours' accuracy"
    n_not = int((~eff["reached"]).sum())
    ax.set_title(f"Fig. 3: label efficiency - {avg}"
                 + (f"; {n_not} not reached (hatched: > labels run)" if n_not else ""), fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.margins(y=0.2)
    fig.tight_layout()
    return fig


def fig4_params(final: pd.DataFrame, ours="actune"):
    """Final accuracy vs each swept parameter (read from the runs' configs)."""
    pts = stats.sweep_points(final)
    if pts.empty:
        raise Skip("no hyper-parameter sweep (runs of one method differing in config params)")
    params = sorted(pts["param"].unique())
    fig, axes = plt.subplots(1, len(params), figsize=(3.8 * len(params), 3.2), squeeze=False)
    style = palette(pts["method"].unique(), ours)
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


def fig4_pseudo(df: pd.DataFrame, ours="actune"):
    """Pseudo-label accuracy per round for ours methods and their variants (with / without the
    memory bank show up as separate methods or parameter values)."""
    is_ours = stats.ours_predicate(ours)
    d = df[df["method"].map(is_ours) & df.get("pseudo_acc", pd.Series(index=df.index)).notna()]
    if d.empty:
        raise Skip("no pseudo-label accuracy recorded for an ours method")
    d = _variants(d)
    c = stats.curves(d, by=("variant", "method", "dataset", "setting"), metric="pseudo_acc")
    return _grid(c, "setting", sorted(c["setting"].unique()), "dataset",
                 sorted(c["dataset"].unique()), ours,
                 "Fig. 4(c): pseudo-label accuracy", ylabel="pseudo-label accuracy (%)",
                 label_col="variant")


def fig4_curves(df: pd.DataFrame, ours="actune"):
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


def fig5(df: pd.DataFrame, ours="actune"):
    """(a) ours on top of other AL methods vs those methods alone; (b) ablations of ours."""
    is_ours = stats.ours_predicate(ours)
    pairs = stats.plugin_bases(df, ours)
    ours_m = sorted(m for m in df["method"].unique() if is_ours(m))
    ablations = [m for m in ours_m if m not in pairs]
    # the reference of an ablation ``x-no-y`` is the ours method ``x`` it is named after
    full = [m for m in ours_m if any(str(a).startswith(str(m) + "-") for a in ablations)]
    panels = {}
    if pairs:
        panels["(a) ours on top of AL methods"] = sorted(set(pairs) | set(pairs.values()))
    if ablations and full:
        panels["(b) ablations"] = sorted(set(ablations) | set(full))
    if not panels:
        raise Skip("no ours-on-top-of-X pairs or ablation variants in the records")
    parts = []
    for name, methods in panels.items():
        d = _prefer_setting(df[df["method"].isin(methods)])
        c = stats.curves(d)
        c["panel"] = name
        parts.append(c)
    c = pd.concat(parts, ignore_index=True)
    # keep datasets where a panel has more than one method
    c = c.groupby(["panel", "dataset"]).filter(lambda g: g["method"].nunique() > 1)
    if c.empty:
        raise Skip("pairs/ablations exist but never on the same dataset as their reference")
    return _grid(c, "panel", list(dict.fromkeys(c["panel"])), "dataset",
                 sorted(c["dataset"].unique()), ours, "Fig. 5: plug-in and ablations")


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


def fig6(runs: pd.DataFrame, ours="actune", cache_dir=None, pairs: dict | None = None):
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


def final_ci(ci: pd.DataFrame, ours):
    """Final-round accuracy per method with bootstrap intervals over seeds, one panel per
    setting and dataset (``uncertainty.final_ci``)."""
    if ci is None or ci.empty:
        raise Skip("no complete run")
    panels = sorted(ci.groupby(["setting", "dataset"]).groups)
    ncol = min(3, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    height = max(2.2, 0.22 * ci.groupby(["setting", "dataset"]).size().max() + 0.8)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, height * nrow), squeeze=False)
    style = palette(ci["method"].unique(), ours)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (st, ds) in zip(axes.flat, panels):
        g = ci[(ci["setting"] == st) & (ci["dataset"] == ds)].sort_values("mean")
        for y, r in enumerate(g.itertuples()):
            m, lo, hi = 100 * r.mean, 100 * r.ci_low, 100 * r.ci_high
            err = [[m - lo], [hi - m]] if np.isfinite(lo) else None
            ax.errorbar(m, y, xerr=err, fmt="o", capsize=3, color=style[r.method]["color"],
                        ms=5 if style[r.method]["lw"] > 2 else 4)
        ax.set_yticks(range(len(g)), g["method"], fontsize=8)
        ax.set_title(f"{ds} - {SETTING_TITLES.get(st, st)}", fontsize=9)
        ax.set_xlabel("final test accuracy (%)")
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"Final accuracy: mean over seeds, {uncertainty.CONFIDENCE:.0%} bootstrap "
                 "interval", fontsize=10)
    fig.tight_layout()
    return fig
