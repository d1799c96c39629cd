"""How sure is each verdict: the bootstrap over probe images, and aggregation over seeds.

**Bootstrap.** ``stats.bootstrap=B`` draws B resamples of the probe images with replacement
(:func:`resamples`; the same resamples for every source, so comparisons between sources are
paired). Each metric scores every layer pair on every resample from what it already holds (CKA:
the stored Grams; RSA: the RDMs, leaving out pairs of a resampled image with itself;
regression: the held-out predictions, re-weighted by how often each image is drawn — no refit).
Per target layer and resample, each source's best layer and score are recomputed (max over its
layers), which gives:

- ``p_correct``: the fraction of resamples in which the target's architecture has the best score;
- ``index_ci_low``/``index_ci_high``: the percentile interval of the identifiability index, over
  the resamples where it is defined (``index_boot_defined``: their fraction);
- ``p_value``: a paired bootstrap p-value for "the target architecture beats the best other
  source": ``(1 + #{resamples where it does not}) / (1 + B)``;
- in ``best_scores.csv``, ``ci_low``/``ci_high`` of each source's best score.

**Seeds.** :func:`over_seeds` aggregates a sweep over ``seed`` (the target's and the sources'):
mean and SD of the index across seeds and the fraction of seeds identified, per target layer.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .identifiability import identifiability_index


def resamples(n_images: int, n_resamples: int, seed: int) -> np.ndarray | None:
    """(n_resamples, n_images) image indices drawn with replacement (None for 0 resamples)."""
    if n_resamples <= 0:
        return None
    rng = np.random.default_rng([int(seed), 0xB007])
    return rng.integers(0, n_images, size=(n_resamples, n_images))


def best_per_resample(boot: np.ndarray, target_layers: Sequence[str]) -> pd.DataFrame:
    """One source's best score over its layers for each target layer and resample: ``bootstrap.csv``'s rows
    (``resample``, ``target_layer``, ``target_layer_index``, ``score``), e.g. for CIs of max-over-layers scores."""
    best = _best(boot)                                              # (B, n_target)
    B, T = best.shape
    return pd.DataFrame({"resample": np.repeat(np.arange(B), T), "target_layer": np.tile(np.asarray(target_layers), B),
                         "target_layer_index": np.tile(np.arange(T), B), "score": best.ravel()})


def _best(boot: np.ndarray) -> np.ndarray:
    """(B, n_target) best score over a source's layers on each resample (NaN where no layer has one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(boot, axis=1)


def _interval(x: np.ndarray, ci: float) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(x, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


def add_intervals(ident: pd.DataFrame, best: pd.DataFrame, boots: Mapping[str, np.ndarray],
                  same: Mapping[str, bool], target_layers: Sequence[str], ci: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ident`` and ``best`` with the bootstrap columns (see the module docs).

    ``boots``: source label -> (B, n_source_layers, n_target_layers) resampled scores;
    ``same``: source label -> whether it has the target's architecture.
    """
    per_source = {s: _best(b) for s, b in boots.items()}           # (B, n_target) each
    labels = list(per_source)
    stack = np.stack([per_source[s] for s in labels])              # (S, B, n_target)
    same_mask = np.array([bool(same[s]) for s in labels])
    n_boot = stack.shape[1]
    rows = []
    for j, layer in enumerate(target_layers):
        col = stack[:, :, j]                                        # (S, B)
        row = {"target_layer": layer, "n_bootstrap": n_boot}
        if same_mask.any() and (~same_mask).any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                s_same = np.nanmax(col[same_mask], axis=0)
                others = col[~same_mask]
                best_other = np.nanmax(others, axis=0)
            wins = s_same > best_other
            row["p_correct"] = float(np.mean(np.where(np.isfinite(s_same) & np.isfinite(best_other), wins, False)))
            row["p_value"] = float((1 + np.sum(~(wins & np.isfinite(s_same)))) / (1 + n_boot))
            index = np.array([identifiability_index(s_same[b], others[:, b]) for b in range(n_boot)])
            row["index_ci_low"], row["index_ci_high"] = _interval(index, ci)
            row["index_boot_defined"] = float(np.isfinite(index).mean())
        else:
            row.update(p_correct=np.nan, p_value=np.nan, index_ci_low=np.nan, index_ci_high=np.nan,
                       index_boot_defined=np.nan)
        rows.append(row)
    extra = pd.DataFrame(rows)
    ident = ident.drop(columns=[c for c in extra.columns if c != "target_layer" and c in ident]).merge(
        extra, on="target_layer", how="left")
    intervals = []
    for s in labels:
        for j, layer in enumerate(target_layers):
            lo, hi = _interval(per_source[s][:, j], ci)
            intervals.append({"source": s, "target_layer": layer, "ci_low": lo, "ci_high": hi})
    best = best.drop(columns=[c for c in ("ci_low", "ci_high") if c in best]).merge(
        pd.DataFrame(intervals), on=["source", "target_layer"], how="left")
    return ident, best


def over_seeds(ident: pd.DataFrame, swept: Sequence[str]) -> pd.DataFrame | None:
    """Per target layer (and every other swept value): the index's mean and SD across seeds, and the
    fraction of seeds in which the target's architecture was identified. None without a ``seed`` sweep."""
    if ident.empty or "seed" not in swept or "seed" not in ident:
        return None
    keys = [k for k in swept if k != "seed" and k in ident] + [
        c for c in ("target", "metric", "target_layer_index", "target_layer") if c in ident]
    keys = list(dict.fromkeys(keys))  # a swept `metric` or `target` is one key, not two
    df = ident.assign(correct=ident["correct"].astype(str).str.lower().eq("true"))
    agg = {"n_seeds": ("seed", "nunique"), "mean_index": ("identifiability_index", "mean"),
           "sd_index": ("identifiability_index", "std"), "fraction_identified": ("correct", "mean")}
    if "p_correct" in df:
        agg["mean_p_correct"] = ("p_correct", "mean")
    if "rank" in df:
        agg["mean_rank"] = ("rank", "mean")
    return df.groupby(keys, sort=False, dropna=False).agg(**agg).reset_index()
