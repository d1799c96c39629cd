"""The mouse-visual-cortex paper's model-zoo analyses (Conwell et al.), on a network "brain".

:func:`analyze` is the analysis ``(summary, out_dir) -> {name: path}`` of
``conf/experiment/mouse[_quick].yaml``. No neural recordings are used: the target network stands in
for the brain and its layers for cortical areas. For each model of the zoo, in two variants
(ImageNet-trained vs random-init, swept as ``weights``; the quick variant sweeps two random seeds
instead, since nothing can be downloaded here), with RSA and the mouse paper's regression
(``regression_loo``), both swept as ``metric``:

* the max over source layers per target layer ("area") and its mean per model, with bootstrapped
  95% confidence intervals across target layers (the paper's Fig. 1);
* the relative depth (0 = first, 1 = last layer) of the best layer, and score against relative
  depth with a smoothed trend (Figs. 3-4);
* the Spearman correlation between the RSA and regression rankings of the models (max over
  layers), and layer by layer per (model, target layer) with a bootstrap CI of its mean (Sec. 3.9).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from idsim.errors import IdsimError

from .common import (bootstrap_ci, finished, log, max_over_layers, new_figure, relative_depth, smoothed_trend,
                     write_table)

METRICS = ("rsa", "regression_loo")
VARIANT_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")


def variants(scores: pd.DataFrame) -> pd.Series:
    """The variant of each source: ``imagenet``/a checkpoint name, or ``random seed N`` for random weights."""
    w = scores["source_weights"].astype(str)
    seed = scores["source_seed"].astype("Int64").astype(str)
    return w.where(w != "random", "random seed " + seed)


def tidy(scores: pd.DataFrame) -> pd.DataFrame:
    need = ["source", "source_layer", "source_layer_index", "target", "target_layer", "target_layer_index", "metric",
            "score", "source_weights", "source_seed"]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise IdsimError(f"scores table lacks column(s) {', '.join(missing)}; expected idsim's scores.csv")
    df = scores[need].copy()
    df["variant"] = variants(df)
    df["relative_depth"] = relative_depth(df, ["metric", "variant", "target"])
    return df


def layer_max(df: pd.DataFrame) -> pd.DataFrame:
    """Max over source layers per (metric, variant, model, target layer), with the best layer's relative depth."""
    return max_over_layers(df.assign(source=df["source"]), ["metric", "variant", "source"]).drop_duplicates()


def model_summary(best: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per metric, variant and model: mean over target layers of the max score, its bootstrap 95% CI, mean depth."""
    rows = []
    for (metric, variant, source), d in best.groupby(["metric", "variant", "source"], sort=False):
        lo, hi = bootstrap_ci(d["score"], seed=seed)
        rows.append({"metric": metric, "variant": variant, "source": source, "score": d["score"].mean(),
                     "ci_low": lo, "ci_high": hi, "n_target_layers": len(d),
                     "best_layer_relative_depth": d["best_layer_relative_depth"].mean()})
    return pd.DataFrame(rows)


def metric_agreement(best: pd.DataFrame, df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Spearman between RSA and regression: of the model rankings (max over layers, mean over target layers),
    and layer by layer per (variant, model, target layer), averaged with a bootstrap 95% CI."""
    if set(METRICS) - set(df["metric"]):
        raise IdsimError(f"metric agreement needs both {' and '.join(METRICS)} scores;"
                         f" found {sorted(set(df['metric']))}")
    rows = []
    summ = model_summary(best, seed)
    for label, sel in (("all variants", summ), *((v, summ[summ["variant"] == v]) for v in summ["variant"].unique())):
        wide = sel.pivot_table(index=["variant", "source"], columns="metric", values="score").dropna()
        rho, p = stats.spearmanr(wide[METRICS[0]], wide[METRICS[1]]) if len(wide) > 2 else (np.nan, np.nan)
        rows.append({"level": "model ranking (max over layers)", "variants": label, "spearman_r": rho, "p_value": p,
                     "n": len(wide), "ci_low": np.nan, "ci_high": np.nan})
    wide = df.pivot_table(index=["variant", "source", "target_layer", "source_layer"], columns="metric",
                          values="score").dropna().reset_index()
    per = [stats.spearmanr(d[METRICS[0]], d[METRICS[1]])[0] for _, d in
           wide.groupby(["variant", "source", "target_layer"], sort=False) if len(d) > 2]
    per = np.asarray([r for r in per if np.isfinite(r)])
    lo, hi = bootstrap_ci(per, seed=seed)
    rows.append({"level": "layer by layer (mean over model x target layer)", "variants": "all variants",
                 "spearman_r": per.mean() if len(per) else np.nan, "p_value": np.nan, "n": len(per),
                 "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def plot_rankings(summ: pd.DataFrame, path: Path) -> Path:
    """Fig. 1: models ranked by the first variant's score; each variant's mean and 95% CI, one panel per metric."""
    from idsim.plots import save_figure

    metrics = list(dict.fromkeys(summ["metric"]))
    vs = list(dict.fromkeys(summ["variant"]))
    n = summ["source"].nunique()
    fig = new_figure(5 * len(metrics), 0.35 * n + 1.5)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        d = summ[summ["metric"] == metric]
        order = d[d["variant"] == vs[0]].sort_values("score")["source"].tolist()
        order += [s for s in d["source"].unique() if s not in order]
        for k, v in enumerate(vs):
            dv = d[d["variant"] == v].set_index("source").reindex(order)
            y = np.arange(len(order)) + (k - (len(vs) - 1) / 2) * 0.3
            ax.errorbar(dv["score"], y, xerr=[dv["score"] - dv["ci_low"], dv["ci_high"] - dv["score"]], fmt="o",
                        color=VARIANT_COLORS[k % len(VARIANT_COLORS)], capsize=2, label=v)
        ax.set_yticks(range(len(order)), order, fontsize=7)
        ax.set_xlabel(f"{metric}: max over layers, mean over target layers (95% CI)")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_depth(df: pd.DataFrame, best: pd.DataFrame, path: Path) -> Path:
    """Left: score against relative layer depth (per-bin means, jagged) with a smoothed trend, per metric
    and variant (Fig. 4). Right: mean relative depth of the best layer per target layer (Fig. 3, left)."""
    from idsim.plots import save_figure

    metrics = list(dict.fromkeys(df["metric"]))
    vs = list(dict.fromkeys(df["variant"]))
    fig = new_figure(5 * (len(metrics) + 1), 3.8)
    axes = fig.subplots(1, len(metrics) + 1, squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for k, v in enumerate(vs):
            d = df[(df["metric"] == metric) & (df["variant"] == v)]
            color = VARIANT_COLORS[k % len(VARIANT_COLORS)]
            # per model and source layer: mean over target layers; then binned means and the smoothed trend
            per_layer = d.groupby(["source", "source_layer"])[["relative_depth", "score"]].mean()
            bins = np.minimum((per_layer["relative_depth"] * 20).astype(int), 19)
            jag = per_layer.groupby(bins).mean()
            ax.plot(jag["relative_depth"], jag["score"], color=color, alpha=0.35, lw=1)
            gx, gy = smoothed_trend(per_layer["relative_depth"], per_layer["score"])
            ax.plot(gx, gy, color=color, lw=2.5, label=v)
        ax.set_xlabel("relative layer depth (0 = first, 1 = last)")
        ax.set_ylabel(f"{metric} score (mean over target layers)")
        ax.legend(fontsize=7)
    ax = axes[-1]
    mean_depth = best.groupby(["metric", "variant", "target_layer", "target_layer_index"])[
        "best_layer_relative_depth"].mean().reset_index()
    for k, ((metric, v), d) in enumerate(mean_depth.groupby(["metric", "variant"], sort=False)):
        d = d.sort_values("target_layer_index")
        ax.plot(d["target_layer_index"], d["best_layer_relative_depth"], marker="o", label=f"{metric}, {v}",
                ls="-" if metric == metrics[0] else "--", color=VARIANT_COLORS[vs.index(v) % len(VARIANT_COLORS)])
    names = mean_depth.drop_duplicates("target_layer_index").sort_values("target_layer_index")
    ax.set_xticks(names["target_layer_index"], names["target_layer"], rotation=60, ha="right", fontsize=6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("relative depth of the best source layer")
    ax.set_title("target layers stand in for cortical areas", fontsize=8)
    ax.legend(fontsize=6)
    return save_figure(fig, path)


def tables(scores: pd.DataFrame, out: Path) -> dict[str, Path]:
    """Every table and figure of the mouse analysis from a sweep's scores (``variant`` from the source's weights)."""
    df = tidy(scores)
    best = layer_max(df)
    summ = model_summary(best)
    agree = metric_agreement(best, df)
    log.info("mouse: models (max over layers, mean over target layers)\n%s", summ.round(3).to_string(index=False))
    log.info("mouse: RSA vs regression\n%s", agree.round(3).to_string(index=False))
    return {"layer_scores": write_table(df, out / "mouse_layer_scores.csv"),
            "max_over_layers": write_table(best, out / "mouse_max_over_layers.csv"),
            "model_summary": write_table(summ, out / "mouse_model_summary.csv"),
            "metric_agreement": write_table(agree, out / "mouse_rsa_vs_regression.csv"),
            "rankings": plot_rankings(summ, out / "mouse_rankings.png"),
            "depth": plot_depth(df, best, out / "mouse_depth.png")}


def analyze(summary, out_dir: Path) -> dict[str, Path]:
    """The mouse analysis of a finished sweep (``conf/experiment/mouse[_quick].yaml``)."""
    scores, _ = finished(summary)
    return tables(scores, Path(out_dir))
