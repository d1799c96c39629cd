"""The mouse-visual-cortex paper's model-zoo analyses (Conwell et al.), on a recording or a network "brain".

:func:`analyze` is the analysis ``(summary, out_dir) -> {name: path}`` of
``conf/experiment/mouse[_quick].yaml`` (a network target: its layers stand in for cortical areas) and
``conf/experiment/mouse_recording[_quick].yaml`` (a recording: Allen two-photon data or any recording
file, or, quick, a network seen through a simulated recording; its regions are the target layers,
with noise ceilings). The models of the zoo come in variants: ImageNet-trained vs random-init (swept
as ``weights``; the quick variants sweep two random seeds instead, since nothing can be downloaded
here) and the hand-made baselines (``gabor``, ``gist``, ``rff``, ``pixels``: one variant, the same
in every job); RSA and the mouse paper's regression (``regression_loo``) are swept as ``metric``.

Per region (target layer), with :mod:`idsim.zoo`:

* each model's max over its layers, the best layer and its relative depth (0 = first, 1 = last
  compared layer), with the percentile bootstrap CI over stimuli from the jobs' ``bootstrap.csv``
  (the max taken within each resample), and, for recordings, the ceiling and the ceiling-normalised
  score and CI (``mouse_max_over_layers.csv``);
* baselines vs trained vs random models: the mean over models of that max with a bootstrap CI over
  models (``mouse_groups.csv``);
* the Spearman agreement of the RSA and regression rankings of the models, per region and of the
  mean over regions, over all models and within each variant (``mouse_rank_agreement.csv``).

Over regions, as the paper's figures: the mean per model with a bootstrapped CI across regions
(Fig. 1), score against relative depth with a smoothed trend and the best layer's depth per region
(Figs. 3-4), the RSA vs regression Spearman of the model rankings and layer by layer (Sec. 3.9).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from idsim import zoo
from idsim.errors import IdsimError

from .common import bootstrap_ci, finished, log, new_figure, relative_depth, smoothed_trend, write_table

METRICS = ("rsa", "regression_loo")
VARIANT_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")
BASELINE_COLOR = "#7f7f7f"
# swept keys that make the variants (or the metric) of one analysis; other swept keys are kept apart
VARIANT_KEYS = ("metric", "weights", "seed", "sources", "target", "target_layer", "source")
MODEL = ["metric", "variant", "source", "target"]   # one model's rows within one analysis


# --------------------------------------------------------------------------- reading the sweep


def variants(scores: pd.DataFrame, by: Sequence[str] = ()) -> pd.Series:
    """The variant of each source: ``imagenet``/a checkpoint, ``random seed N`` for random weights, ``baseline``.

    ``by``: other swept columns, appended (``random seed 2, target.recording.trials=4``) to keep them apart.
    """
    w = scores["source_weights"].astype(str)
    seed = pd.to_numeric(scores["source_seed"], errors="coerce").astype("Int64").astype(str)
    v = w.where(w != "random", "random seed " + seed)
    for k in by:
        v = v + f", {k}=" + scores[k].astype(str)
    return v


def variant_order(df: pd.DataFrame) -> list[str]:
    """The variants in a fixed order: trained, then random, then the baselines (each by name)."""
    d = df[["variant", "source_weights"]].drop_duplicates("variant")
    rank = zoo.group(d).map({g: i for i, g in enumerate(("trained", "random", "baseline"))})
    return d.assign(rank=rank.to_numpy()).sort_values(["rank", "variant"])["variant"].tolist()


def variant_colors(order: Sequence[str]) -> dict[str, str]:
    colors, k = {}, 0
    for v in order:
        if v.split(",")[0] == "baseline":
            colors[v] = BASELINE_COLOR
        else:
            colors[v] = VARIANT_COLORS[k % len(VARIANT_COLORS)]
            k += 1
    return colors


def split_keys(summary, scores: pd.DataFrame) -> list[str]:
    """Swept keys other than the metric and the variants' weights and seeds, whose values differ."""
    swept = getattr(summary, "swept", None) or []
    return [c for c in swept if c not in VARIANT_KEYS and c in scores.columns and scores[c].nunique(dropna=False) > 1]


def one_job_per_model(df: pd.DataFrame) -> pd.DataFrame:
    """Each model's rows from one job only (the first, in the table's order).

    A model that a sweep of ``weights`` or ``seed`` does not change (the baselines) is scored in
    every job; its copies would be counted twice (and, with ``seed`` swept, the regression's random
    projection and the bootstrap resamples differ between the copies).
    """
    if "job" not in df.columns:
        return df
    chosen = df.groupby(MODEL, sort=False)["job"].first().reset_index().assign(_keep=True)
    keep = df[MODEL + ["job"]].merge(chosen, on=MODEL + ["job"], how="left")["_keep"].notna().to_numpy()
    out = df[keep]
    if len(out) < len(df):
        dup = df.loc[~keep, "source"].unique()
        log.info("mouse: %s scored in several jobs (the swept weights or seed do not change them): one job's rows each",
                 ", ".join(map(str, dup)))
    return out


def tidy(scores: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """The score rows the analysis uses, with ``variant`` and each source layer's ``relative_depth``."""
    need = ["source", "source_layer", "source_layer_index", "target", "target_layer", "target_layer_index", "metric",
            "score", "source_weights", "source_seed"]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise IdsimError(f"scores table lacks column(s) {', '.join(missing)}; expected idsim's scores.csv")
    extra = [c for c in ("ceiling", "normalized_score", "job", *by) if c in scores.columns and c not in need]
    df = scores[need + extra].copy()
    df["variant"] = variants(df, by)
    df = one_job_per_model(df).reset_index(drop=True)
    df["relative_depth"] = relative_depth(df, ["metric", "variant", "target"])
    return df


def replicates(boot: pd.DataFrame | None, df: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame | None:
    """The jobs' bootstrap rows (best score per source, region and resample) of the models and jobs in ``df``."""
    need = ["metric", "source", "target", "target_layer", "resample", "score", "source_weights", "source_seed"]
    if boot is None or boot.empty:
        return None
    missing = [c for c in [*need, *by] if c not in boot.columns]
    if missing:
        log.warning("mouse: the bootstrap table lacks %s; no CIs over stimuli", ", ".join(missing))
        return None
    b = boot.assign(variant=variants(boot, by))
    if "job" in df.columns and "job" in b.columns:
        b = b.merge(df[MODEL + ["job"]].drop_duplicates(), on=MODEL + ["job"], how="inner")
    return b


def ceilings_table(summary, by: Sequence[str] = ()) -> pd.DataFrame | None:
    """The jobs' ``ceilings.csv`` (a recording target's neuroids kept and ceilings per region), with each job's
    swept values; None for network targets."""
    jobs = getattr(summary, "jobs", None)
    if jobs is None or "status_file" not in jobs.columns:
        return None
    parts = []
    for _, r in jobs[jobs["state"] == "done"].iterrows():
        path = Path(str(r["status_file"])).parent / "ceilings.csv"
        if path.is_file():
            c = pd.read_csv(path)
            keys = [k for k in ("metric", *by) if k in jobs.columns]
            parts.append(c.assign(job=r["job"], **{k: r[k] for k in keys})[["job", *keys, *c.columns]])
    return pd.concat(parts, ignore_index=True) if parts else None


# --------------------------------------------------------------------------- per region (idsim.zoo)


def layer_max(df: pd.DataFrame, boot: pd.DataFrame | None = None, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per metric, variant, model and region: the best layer, its score and relative depth
    (:func:`idsim.zoo.region_summary`), the CI over stimuli from ``boot`` and, for recordings, the
    ceiling and the normalised score and CI. The depth is NaN for one-layer sources (the baselines).
    ``by``: other swept columns (already part of ``variant``), kept as columns."""
    cols = [c for c in [*by, "variant", "metric", "source", "target", "target_layer", "target_layer_index",
                        "source_layer", "source_layer_index", "score", "source_weights", "ceiling", "normalized_score"]
            if c in df.columns]
    best = zoo.region_summary(df[cols], boot, by=[*by, "variant"])
    n_layers = df.groupby(MODEL, sort=False)["source_layer"].nunique().rename("_n").reset_index()
    best = best.merge(n_layers, on=MODEL, how="left")
    best.loc[best["_n"] < 2, "best_layer_relative_depth"] = np.nan
    best = best.drop(columns="_n")
    if "ceiling" in best.columns:
        with np.errstate(divide="ignore", invalid="ignore"):
            best["normalized_ci_low"] = best["ci_low"] / best["ceiling"]
            best["normalized_ci_high"] = best["ci_high"] / best["ceiling"]
    return best


def group_table(best: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Baselines vs trained vs random (per variant), per metric and region: :func:`idsim.zoo.group_summary` of
    the max over layers (and of the normalised score, with the region's ceiling, for recordings)."""
    keys = [*by, "variant", "metric", "target", "target_layer", "group"]
    g = zoo.group_summary(best, by=[*by, "variant"])
    region = best.groupby([*by, "metric", "target", "target_layer"], sort=False)
    extra = region["target_layer_index"].first().to_frame()
    if "ceiling" in best.columns:
        extra["ceiling"] = region["ceiling"].first()
        if best["normalized_score"].notna().any():
            n = zoo.group_summary(best, value="normalized_score", by=[*by, "variant"])
            n = n[[*keys, "normalized_score", "ci_low", "ci_high"]].rename(
                columns={"ci_low": "normalized_ci_low", "ci_high": "normalized_ci_high"})
            g = g.merge(n, on=keys, how="left")
    g = g.merge(extra.reset_index(), on=[*by, "metric", "target", "target_layer"], how="left")
    rank = {v: i for i, v in enumerate(variant_order(best))}
    g = g.assign(_r=g["variant"].map(rank))
    g = g.sort_values([*by, "metric", "target", "target_layer_index", "_r"], kind="stable")
    return g.drop(columns="_r").reset_index(drop=True)


def rank_table(best: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """:func:`idsim.zoo.rank_agreement` (RSA vs regression rankings, per region and of the mean over regions)
    over every model (variants and baselines together), then within each variant."""
    parts = []
    for label, sel in (("all models", best), *((v, best[best["variant"] == v]) for v in variant_order(best))):
        try:
            parts.append(zoo.rank_agreement(sel, by=[*by, "variant"]).assign(models=label))
        except IdsimError:
            continue
    if not parts:
        raise IdsimError(f"rank agreement needs both {' and '.join(METRICS)} scores; found"
                         f" {sorted(set(best['metric']))}")
    out = pd.concat(parts, ignore_index=True)
    return out[["models", *[c for c in out.columns if c != "models"]]]


# --------------------------------------------------------------------------- over regions


def model_summary(best: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per metric, variant and model: mean over target layers of the max score, its bootstrap 95% CI, mean depth
    (and the mean normalised score, for recordings)."""
    rows = []
    for (metric, variant, source), d in best.groupby(["metric", "variant", "source"], sort=False):
        lo, hi = bootstrap_ci(d["score"], seed=seed)
        row = {"metric": metric, "variant": variant, "source": source, "score": d["score"].mean(),
               "ci_low": lo, "ci_high": hi, "n_target_layers": len(d),
               "best_layer_relative_depth": d["best_layer_relative_depth"].mean()}
        if "normalized_score" in d.columns:
            row["normalized_score"] = d["normalized_score"].mean()
        rows.append(row)
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


# --------------------------------------------------------------------------- figures


def plot_rankings(summ: pd.DataFrame, path: Path, order: Sequence[str] | None = None) -> Path:
    """Fig. 1: models ranked by the first variant's score; each variant's mean and 95% CI, one panel per metric."""
    from idsim.plots import save_figure

    metrics = list(dict.fromkeys(summ["metric"]))
    vs = list(order) if order is not None else list(dict.fromkeys(summ["variant"]))
    colors = variant_colors(vs)
    n = summ["source"].nunique()
    fig = new_figure(5 * len(metrics), 0.35 * n + 1.5)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        d = summ[summ["metric"] == metric]
        order_ = d[d["variant"] == vs[0]].sort_values("score")["source"].tolist()
        order_ += [s for s in d["source"].unique() if s not in order_]
        for k, v in enumerate(vs):
            dv = d[d["variant"] == v].set_index("source").reindex(order_)
            y = np.arange(len(order_)) + (k - (len(vs) - 1) / 2) * 0.3
            ax.errorbar(dv["score"], y, xerr=[dv["score"] - dv["ci_low"], dv["ci_high"] - dv["score"]], fmt="o",
                        color=colors[v], capsize=2, label=v)
        ax.set_yticks(range(len(order_)), order_, fontsize=7)
        ax.set_xlabel(f"{metric}: max over layers, mean over target layers (95% CI)")
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_depth(df: pd.DataFrame, best: pd.DataFrame, path: Path, order: Sequence[str] | None = None) -> Path:
    """Left: score against relative layer depth (per-bin means, jagged) with a smoothed trend, per metric
    and variant (Fig. 4). Right: mean relative depth of the best layer per target layer (Fig. 3, left).
    One-layer sources (the baselines) have no depth and are left out."""
    from idsim.plots import save_figure

    deep = df.groupby(MODEL, sort=False)["source_layer"].transform("nunique") > 1
    df, best = df[deep], best[best["best_layer_relative_depth"].notna()]
    metrics = list(dict.fromkeys(df["metric"]))
    vs = [v for v in (order if order is not None else dict.fromkeys(df["variant"])) if v in set(df["variant"])]
    colors = variant_colors(vs)
    fig = new_figure(5 * (len(metrics) + 1), 3.8)
    axes = fig.subplots(1, len(metrics) + 1, squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for v in vs:
            d = df[(df["metric"] == metric) & (df["variant"] == v)]
            if d.empty:
                continue
            # per model and source layer: mean over target layers; then binned means and the smoothed trend
            per_layer = d.groupby(["source", "source_layer"])[["relative_depth", "score"]].mean()
            bins = np.minimum((per_layer["relative_depth"] * 20).astype(int), 19)
            jag = per_layer.groupby(bins).mean()
            ax.plot(jag["relative_depth"], jag["score"], color=colors[v], alpha=0.35, lw=1)
            gx, gy = smoothed_trend(per_layer["relative_depth"], per_layer["score"])
            ax.plot(gx, gy, color=colors[v], lw=2.5, label=v)
        ax.set_xlabel("relative layer depth (0 = first, 1 = last)")
        ax.set_ylabel(f"{metric} score (mean over target layers)")
        ax.legend(fontsize=7)
    ax = axes[-1]
    mean_depth = best.groupby(["metric", "variant", "target_layer", "target_layer_index"])[
        "best_layer_relative_depth"].mean().reset_index()
    for (metric, v), d in mean_depth.groupby(["metric", "variant"], sort=False):
        d = d.sort_values("target_layer_index")
        ax.plot(d["target_layer_index"], d["best_layer_relative_depth"], marker="o", label=f"{metric}, {v}",
                ls="-" if metric == metrics[0] else "--", color=colors.get(v, BASELINE_COLOR))
    names = mean_depth.drop_duplicates("target_layer_index").sort_values("target_layer_index")
    ax.set_xticks(names["target_layer_index"], names["target_layer"], rotation=60, ha="right", fontsize=6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("relative depth of the best source layer")
    ax.set_title("per target layer (region)", fontsize=8)
    ax.legend(fontsize=6)
    return save_figure(fig, path)


def plot_regions(groups: pd.DataFrame, path: Path, order: Sequence[str]) -> Path:
    """Per metric and region: each variant's mean over models of the max over layers with its 95% CI over
    models (baselines vs trained vs random), and the region's noise ceiling (recordings)."""
    from idsim.plots import save_figure

    metrics = list(dict.fromkeys(groups["metric"]))
    colors = variant_colors(order)
    regions = groups[["target", "target_layer", "target_layer_index"]].drop_duplicates(["target", "target_layer"])
    regions = regions.sort_values(["target", "target_layer_index"]).reset_index(drop=True)
    several = regions["target"].nunique() > 1
    labels = [f"{t}: {r}" if several else str(r) for t, r in zip(regions["target"], regions["target_layer"])]
    x = pd.Series(np.arange(len(regions)), index=pd.MultiIndex.from_frame(regions[["target", "target_layer"]]))
    fig = new_figure(max(4.5, 0.7 * len(regions) + 2) * len(metrics), 4)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    width = 0.7 / max(len(order), 1)
    for ax, metric in zip(axes, metrics):
        d = groups[groups["metric"] == metric]
        for k, v in enumerate(order):
            dv = d[d["variant"] == v]
            if dv.empty:
                continue
            xs = x.loc[list(zip(dv["target"], dv["target_layer"]))].to_numpy() + (k - (len(order) - 1) / 2) * width
            grp = dv["group"].iloc[0]
            ax.errorbar(xs, dv["score"], yerr=[dv["score"] - dv["ci_low"], dv["ci_high"] - dv["score"]], fmt="o",
                        color=colors[v], capsize=2, label=v if v == grp else f"{v} ({grp})")
        if "ceiling" in d.columns and d["ceiling"].notna().any():
            c = d.drop_duplicates(["target", "target_layer"])
            xs = x.loc[list(zip(c["target"], c["target_layer"]))].to_numpy()
            ax.hlines(c["ceiling"], xs - 0.4, xs + 0.4, color="black", lw=1.5, label="noise ceiling")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(f"{metric}: max over layers, mean over models (95% CI over models)", fontsize=8)
        ax.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(order) + 1, 4),
                  frameon=False)
    return save_figure(fig, path)


# --------------------------------------------------------------------------- the analysis


def tables(scores: pd.DataFrame, out: Path, boot: pd.DataFrame | None = None, by: Sequence[str] = (),
           ceilings: pd.DataFrame | None = None) -> dict[str, Path]:
    """Every table and figure of the mouse analysis from a sweep's scores (``variant`` from the source's weights)
    and its bootstrap rows (CIs over stimuli)."""
    df = tidy(scores, by)
    order = variant_order(df)
    best = layer_max(df, replicates(boot, df, by), by)
    if ceilings is not None and "n_kept" in ceilings.columns:  # the neuroids kept per region (reliability filter)
        keys = [k for k in ("metric", *by, "target_layer") if k in ceilings.columns]
        n = ceilings.drop_duplicates(keys)[[*keys, "n_kept"]].rename(columns={"n_kept": "n_neuroids"})
        best = best.merge(n, on=keys, how="left")
    groups = group_table(best, by)
    ranks = rank_table(best, by)
    rank = {v: i for i, v in enumerate(order)}
    summ = model_summary(best)
    summ = summ.assign(_r=summ["variant"].map(rank)).sort_values(["metric", "_r"], kind="stable").drop(columns="_r")
    agree = metric_agreement(best, df)
    cols = ["variant", "metric", "target_layer", "group", "n_models", "score", "ci_low", "ci_high"]
    cols += [c for c in ("ceiling", "normalized_score") if c in groups.columns]
    log.info("mouse: per region, mean over models of the max over layers\n%s",
             groups[cols].round(3).to_string(index=False))
    log.info("mouse: RSA vs regression rankings, all models\n%s",
             ranks[ranks["models"] == "all models"].round(3).to_string(index=False))
    files = {"layer_scores": write_table(df, out / "mouse_layer_scores.csv"),
             "max_over_layers": write_table(best, out / "mouse_max_over_layers.csv"),
             "groups": write_table(groups, out / "mouse_groups.csv"),
             "rank_agreement": write_table(ranks, out / "mouse_rank_agreement.csv"),
             "model_summary": write_table(summ, out / "mouse_model_summary.csv"),
             "metric_agreement": write_table(agree, out / "mouse_rsa_vs_regression.csv")}
    if ceilings is not None:
        files["ceilings"] = write_table(ceilings, out / "mouse_ceilings.csv")
    files.update({"rankings": plot_rankings(summ, out / "mouse_rankings.png", order),
                  "depth": plot_depth(df, best, out / "mouse_depth.png", order),
                  "regions": plot_regions(groups, out / "mouse_regions.png", order)})
    return files


def analyze(summary, out_dir: Path) -> dict[str, Path]:
    """The mouse analysis of a finished sweep (``conf/experiment/mouse[_recording][_quick].yaml``)."""
    scores, _ = finished(summary)
    by = split_keys(summary, scores)
    return tables(scores, Path(out_dir), getattr(summary, "bootstrap", None), by, ceilings_table(summary, by))
