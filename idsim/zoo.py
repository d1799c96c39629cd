"""The mouse paper's model-zoo statistics per region, over tidy score tables (its Sections 2.5, 3.5, 3.9).

Inputs are idsim's tables: ``scores`` (``scores.csv`` of runs, or a sweep summary's, one row per
source layer × target layer, ``ceiling``/``normalized_score`` when the target is a recording) and,
for confidence intervals over stimuli, ``replicates``: each source's best score per target layer on
each bootstrap resample of the stimuli (a ``resample`` column): a run's ``bootstrap.csv``
(``stats.bootstrap``, :func:`idsim.stats.best_per_resample`), collected by a sweep summary.

- :func:`max_over_layers`: per metric, model and region (target layer), the best layer ("a model
  commits one layer to each area"), its score, ceiling-normalised score and relative depth
  (0 = the model's first compared layer, 1 = its last);
- :func:`region_summary`: that, plus the percentile bootstrap CI over stimuli of the max over
  layers (the max is taken within each resample) and each model's group;
- :func:`rank_agreement`: Spearman correlation between the RSA and regression rankings of the
  models, per region and over all;
- :func:`group_summary`: baselines versus trained versus random models (:func:`group`);
- :func:`mouse_summary`: all of it over a sweep summary, written as CSV files (an ``analysis``
  entry for ``conf/experiment/*.yaml``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import IdsimError
from .outputs import write_table

KEYS = ["metric", "source", "target", "target_layer"]
GROUPS = ("baseline", "trained", "random")


def group(scores: pd.DataFrame) -> pd.Series:
    """``baseline`` (hand-made features), ``random`` (random weights) or ``trained`` (ImageNet or a checkpoint)."""
    w = scores["source_weights"].astype(str) if "source_weights" in scores else pd.Series("random", scores.index)
    return pd.Series(np.where(w == "baseline", "baseline", np.where(w == "random", "random", "trained")),
                     index=scores.index)


def relative_depth(scores: pd.DataFrame, by: Sequence[str] = ("metric", "source", "target")) -> pd.Series:
    """Each source layer's depth within its model: 0 = first compared layer, 1 = last (0 for one-layer sources)."""
    g = scores.groupby(list(by), sort=False)["source_layer_index"]
    lo, hi = g.transform("min"), g.transform("max")
    return ((scores["source_layer_index"] - lo) / (hi - lo).where(hi > lo)).fillna(0.0)


def _check(scores: pd.DataFrame, need: Sequence[str]) -> None:
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise IdsimError(f"score table lacks column(s) {', '.join(missing)}; expected idsim's scores.csv")


def _keys(df: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """``by`` + metric, model and region; a model is a source with its weights (trained and random apart)."""
    return [*by, *KEYS, *(["source_weights"] if "source_weights" in df.columns else [])]


def max_over_layers(scores: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per ``by`` + metric, model and region: the best source layer, its score and relative depth."""
    _check(scores, [*KEYS, "source_layer", "source_layer_index", "score"])
    keys = _keys(scores, by)
    df = scores.copy()
    df["relative_depth"] = relative_depth(df, [c for c in keys if c != "target_layer"])
    df["group"] = group(df)
    valid = df.dropna(subset=["score"])
    best = valid.loc[valid.groupby(keys, sort=False)["score"].idxmax().to_numpy()]
    cols = [*keys, "group", "source_layer", "source_layer_index", "relative_depth", "score"]
    cols += [c for c in ("target_layer_index", "ceiling", "normalized_score") if c in best.columns]
    best = best[cols].rename(columns={"source_layer": "best_layer", "source_layer_index": "best_layer_index",
                                      "relative_depth": "best_layer_relative_depth"})
    return best.reset_index(drop=True)


def region_summary(scores: pd.DataFrame, replicates: pd.DataFrame | None = None, level: float = 0.95,
                   by: Sequence[str] = ()) -> pd.DataFrame:
    """:func:`max_over_layers` with the bootstrap CI over stimuli of the max (from ``replicates``; else NaN)."""
    best = max_over_layers(scores, by)
    best["ci_low"] = np.nan
    best["ci_high"] = np.nan
    if replicates is not None and len(replicates):
        _check(replicates, [*KEYS, "resample", "score"])
        keys = [k for k in _keys(best, by) if k in replicates.columns]
        per = replicates.groupby([*keys, "resample"], sort=False)["score"].max().reset_index()
        a = (1 - level) / 2
        ci = per.groupby(keys, sort=False)["score"].quantile([a, 1 - a]).unstack()
        ci.columns = ["ci_low", "ci_high"]
        best = best.drop(columns=["ci_low", "ci_high"]).merge(ci.reset_index(), on=keys, how="left")
    return best


def rank_agreement(best: pd.DataFrame, metrics: tuple[str, str] | None = None, by: Sequence[str] = ()) -> pd.DataFrame:
    """Spearman r between two metrics' rankings of the models (max over layers), per region and over regions.

    ``metrics``: the pair to compare (default: the RSA-kind and the regression-kind metric found, by name).
    """
    from scipy import stats

    names = list(dict.fromkeys(best["metric"]))
    if metrics is None:
        rsa = [m for m in names if "rsa" in m]
        reg = [m for m in names if "regression" in m]
        if not rsa or not reg:
            raise IdsimError(f"rank agreement needs an RSA and a regression metric; found {', '.join(names)}")
        metrics = (rsa[0], reg[0])
    model = [c for c in _keys(best, by) if c not in ("metric", "target", "target_layer")]
    wide = best.pivot_table(index=["target", "target_layer", *model], columns="metric", values="score")
    if not set(metrics) <= set(wide.columns):
        raise IdsimError(f"rank agreement: metrics {metrics} not both in the table ({', '.join(names)})")
    wide = wide[list(metrics)].dropna().reset_index()
    rows = []
    order = best[["target", "target_layer"]].drop_duplicates().itertuples(index=False, name=None)
    groups = dict(iter(wide.groupby(["target", "target_layer"], sort=False)))
    for target, region in order:
        d = groups.get((target, region), wide.iloc[:0])
        rho, p = stats.spearmanr(d[metrics[0]], d[metrics[1]]) if len(d) > 2 else (np.nan, np.nan)
        rows.append({"target": target, "target_layer": region, "metrics": " vs ".join(metrics), "spearman_r": rho,
                     "p_value": p, "n_models": len(d)})
    mean = wide.groupby(model)[list(metrics)].mean()
    rho, p = stats.spearmanr(mean[metrics[0]], mean[metrics[1]]) if len(mean) > 2 else (np.nan, np.nan)
    rows.append({"target": "all", "target_layer": "mean over regions", "metrics": " vs ".join(metrics),
                 "spearman_r": rho, "p_value": p, "n_models": len(mean)})
    return pd.DataFrame(rows)


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; a point for fewer than 2 values."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size < 2 or np.ptp(x) == 0:
        return float(x.mean()), float(x.mean())
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def group_summary(best: pd.DataFrame, value: str = "score", seed: int = 0, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per metric, region and group (baseline / trained / random): mean over models of the max, its bootstrap CI."""
    rows = []
    for key, d in best.groupby([*by, "metric", "target", "target_layer", "group"], sort=False):
        *extra, metric, target, region, grp = key
        lo, hi = bootstrap_ci(d[value], seed=seed)
        rows.append({**dict(zip(by, extra)), "metric": metric, "target": target, "target_layer": region, "group": grp,
                     "n_models": d["source"].nunique(), value: d[value].mean(), "ci_low": lo, "ci_high": hi,
                     "best_model": d.loc[d[value].idxmax(), "source"] if d[value].notna().any() else None,
                     "best_layer_relative_depth": d["best_layer_relative_depth"].mean()})
    out = pd.DataFrame(rows)
    if len(out):
        out["group"] = pd.Categorical(out["group"], [g for g in GROUPS if g in set(out["group"])], ordered=True)
        out = out.sort_values([*by, "metric", "target", "target_layer", "group"], kind="stable").reset_index(drop=True)
        out["group"] = out["group"].astype(str)
    return out


def mouse_summary(summary: Any, out_dir: Path | str, replicates: pd.DataFrame | None = None) -> dict[str, Path]:
    """The per-region zoo tables of a sweep (``summary.scores``, or a scores DataFrame) as CSV files in ``out_dir``.

    Confidence intervals over stimuli come from ``replicates`` or the sweep's ``bootstrap`` table
    (its jobs' ``bootstrap.csv``, written with ``stats.bootstrap``); sweep columns that vary (e.g.
    ``weights``) are kept apart.
    """
    scores = summary.scores if hasattr(summary, "scores") else summary
    if replicates is None:
        replicates = getattr(summary, "bootstrap", None)  # the jobs' bootstrap.csv (stats.bootstrap)
    if scores is None or not len(scores):
        raise IdsimError("no scores to analyse")
    # swept settings other than the metric and the models' weights (e.g. the probe set) are kept apart
    swept = getattr(summary, "swept", None) or ["dataset"]
    by = [c for c in swept if c in scores.columns and c not in ("metric", "weights", "sources")
          and scores[c].nunique() > 1]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    best = region_summary(scores, replicates, by=by)
    files = {"max_over_layers": out / "zoo_max_over_layers.csv", "groups": out / "zoo_groups.csv"}
    write_table(files["max_over_layers"], best)
    write_table(files["groups"], group_summary(best, by=by))
    if best["metric"].nunique() > 1:
        try:
            agree = rank_agreement(best, by=by)
        except IdsimError:
            agree = None
        if agree is not None:
            files["rank_agreement"] = out / "zoo_rank_agreement.csv"
            write_table(files["rank_agreement"], agree)
    return files


__all__ = ["group", "relative_depth", "max_over_layers", "region_summary", "rank_agreement", "group_summary",
           "bootstrap_ci", "mouse_summary"]
