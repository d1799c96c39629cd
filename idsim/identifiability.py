"""Identifiability: would the score pick the target's own architecture?

For each target layer: each source's best layer and score (max over its layers), the winning
source, whether it has the target's architecture, and the identifiability index

    (s_same - mean s_other) / (s_same + mean s_other)

where s_same is the best score of the source with the target's architecture and s_other the
best scores of the other sources (Han, Poggio & Cheung, eq. 4). Positive: the right
architecture stands out; 0: no selectivity; negative: other architectures score higher.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def identifiability_index(s_same, s_other) -> float:
    """``(s_same - mean(s_other)) / (s_same + mean(s_other))`` (nan when undefined)."""
    other = np.atleast_1d(np.asarray(s_other, dtype=float))
    other = other[np.isfinite(other)]
    if not np.isfinite(s_same) or other.size == 0:
        return float("nan")
    m = other.mean()
    den = s_same + m
    return float((s_same - m) / den) if den != 0 else float("nan")


def best_per_source(scores: pd.DataFrame) -> pd.DataFrame:
    """For each target layer and source: the best source layer and its score."""
    cols = ["target", "target_layer", "target_layer_index", "source", "metric", "same_architecture"]
    valid = scores.dropna(subset=["score"])
    idx = valid.groupby(cols, sort=False)["score"].idxmax()
    best = valid.loc[idx.values, cols + ["source_layer", "source_layer_index", "score"]]
    best = best.rename(columns={"source_layer": "best_source_layer", "source_layer_index": "best_source_layer_index"})
    return best.sort_values(["metric", "target_layer_index", "score"], ascending=[True, True, False]).reset_index(drop=True)


def identifiability(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, target layer): winner, correctness and identifiability index."""
    best = best_per_source(scores)
    rows = []
    for (metric, t_idx, t_layer), g in best.groupby(["metric", "target_layer_index", "target_layer"], sort=True):
        g = g.sort_values("score", ascending=False)
        win = g.iloc[0]
        same = g[g["same_architecture"]]
        other = g[~g["same_architecture"]]
        s_same = float(same["score"].max()) if len(same) else float("nan")
        runner = g.iloc[1] if len(g) > 1 else None
        rows.append({
            "target": win["target"],
            "metric": metric,
            "target_layer": t_layer,
            "target_layer_index": int(t_idx),
            "best_source": win["source"],
            "best_source_layer": win["best_source_layer"],
            "best_score": float(win["score"]),
            "correct": bool(win["same_architecture"]),
            "same_architecture_score": s_same,
            "mean_other_score": float(other["score"].mean()) if len(other) else float("nan"),
            "margin": float(win["score"] - runner["score"]) if runner is not None else float("nan"),
            "identifiability_index": identifiability_index(s_same, other["score"].to_numpy()),
        })
    return pd.DataFrame(rows)


def verdict(ident: pd.DataFrame, target: str) -> str:
    """One line over all target layers, e.g. 'resnet18 identified at 8/9 target layers (mean index 0.21)'."""
    lines = []
    for metric, g in ident.groupby("metric", sort=False):
        n, k = len(g), int(g["correct"].sum())
        idx = g["identifiability_index"]
        if idx.notna().any():
            mean = f"{idx.mean():+.3f}"
        elif g["same_architecture_score"].isna().all():
            mean = "n/a (target architecture not among the sources)"
        else:
            mean = "n/a (no source of another architecture to compare with)"
        wrong = g.loc[~g["correct"], "best_source"].value_counts()
        extra = f"; elsewhere won by {', '.join(f'{s} ({c})' for s, c in wrong.items())}" if len(wrong) else ""
        word = "identified" if k == n else ("partly identified" if k else "not identified")
        lines.append(f"{metric}: {target} {word} at {k}/{n} target layers, mean identifiability index {mean}{extra}")
    return " | ".join(lines)
