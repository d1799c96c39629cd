"""Scores as tidy tables: one row per source layer x target layer.

:func:`score_layers` runs a metric on two feature sets and returns the layer-pair table;
:func:`scores_table` adds what a run's ``scores.csv`` says about each row (which source,
target, metric, probe set, weights...).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import IdsimError
from .featureset import FeatureSet

#: the leading columns of scores.csv, in order
SCORE_COLUMNS = ["source", "source_layer", "target", "target_layer", "metric", "score", "source_layer_index",
                 "target_layer_index"]


def score_layers(source: FeatureSet, target: FeatureSet, metric: Any, seed: int = 0, device=None) -> pd.DataFrame:
    """Score every source layer against every target layer: a tidy DataFrame, one row per pair."""
    check_pair(source, target)
    return layer_table(metric.score(source, target, seed=seed, device=device), source, target)


def check_pair(source: FeatureSet, target: FeatureSet) -> None:
    if source.n_images != target.n_images:
        raise IdsimError(f"source and target were extracted on different images ({source.n_images} vs {target.n_images})")


def layer_table(res: Any, source: FeatureSet, target: FeatureSet) -> pd.DataFrame:
    """A metric's :class:`~idsim.metrics.base.LayerScores` as a tidy table, one row per layer pair."""
    s_names, t_names = source.layer_names, target.layer_names
    i, j = np.meshgrid(np.arange(len(s_names)), np.arange(len(t_names)), indexing="ij")
    i, j = i.ravel(), j.ravel()
    table = {"source_layer": np.asarray(s_names, dtype=object)[i], "source_layer_index": i,
             "target_layer": np.asarray(t_names, dtype=object)[j], "target_layer_index": j,
             "score": np.asarray(res.score, dtype=float).ravel()}
    for k, v in res.extra.items():
        table[k] = np.asarray(v, dtype=float).ravel()
    return pd.DataFrame(table)


def scores_table(df: pd.DataFrame, source: Any, target: Any, metric: Any, probe: Any, unit_ratio: float,
                 ceilings: pd.DataFrame | None = None) -> pd.DataFrame:
    """``score_layers``' table with the run's context columns, in ``scores.csv`` order.

    ``ceilings`` (a recording target's, per target layer): adds ``ceiling`` and
    ``normalized_score = score / ceiling``.
    """
    df = df.copy()
    if ceilings is not None:
        ceiling = ceilings.set_index("target_layer")["ceiling"]
        df["ceiling"] = df["target_layer"].map(ceiling).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            df["normalized_score"] = df["score"] / df["ceiling"]
    df["source"] = source.label
    df["target"] = target.name
    df["metric"] = metric.name
    df["same_architecture"] = source.architecture == target.architecture
    for k, v in source.columns().items():
        df[k] = v
    df["dataset"] = probe.name
    df["n_images"] = len(probe)
    df["unit_ratio"] = unit_ratio
    return df[SCORE_COLUMNS + [c for c in df.columns if c not in SCORE_COLUMNS]]
