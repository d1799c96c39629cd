"""Identifiability: would the score pick the target's own architecture?

For each target layer: each source's best layer and score (max over its layers), the winning
source, whether it has the target's architecture, the rank of the target architecture's best
score among the sources (1 = best), the margin of the winner over the runner-up, and the
identifiability index (Han, Poggio & Cheung, eq. 4)

    (s_same - mean s_other) / (s_same + mean s_other)

where s_same is the best score of the source with the target's architecture and s_other the
best scores of the other sources.

**Where the index is defined.** The index is a selectivity ratio of two similarities; it means
"how much the right architecture stands out" only when both are positive. With s_same <= 0 or
mean s_other <= 0 (possible for regression r, RSA and debiased CKA) the ratio can be huge or flip
its sign (s_same = 0.10 against others at -0.115 gives -14.3 although the right architecture
scored highest), so it is undefined there: NaN, with the reason in ``index_note``. Its values
are in (-1, 1) wherever it is defined. ``rank`` and ``margin`` stay defined for any scores.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

NOTE_NO_SAME = "no source has the target's architecture"
NOTE_NO_OTHER = "no source of another architecture"
NOTE_SAME_NONPOSITIVE = "target architecture's score <= 0"
NOTE_OTHER_NONPOSITIVE = "mean score of the other sources <= 0"


def index_note(s_same, s_other) -> str | None:
    """Why the identifiability index is undefined for these scores (None when it is defined)."""
    other = np.atleast_1d(np.asarray(s_other, dtype=float))
    other = other[np.isfinite(other)]
    if s_same is None or not np.isfinite(s_same):
        return NOTE_NO_SAME
    if other.size == 0:
        return NOTE_NO_OTHER
    if s_same <= 0:
        return NOTE_SAME_NONPOSITIVE
    if other.mean() <= 0:
        return NOTE_OTHER_NONPOSITIVE
    return None


def identifiability_index(s_same, s_other) -> float:
    """``(s_same - mean(s_other)) / (s_same + mean(s_other))``; NaN unless both are positive (see the module docs).

    >>> round(identifiability_index(0.5, [0.2, 0.3]), 4)
    0.3333
    >>> identifiability_index(0.1, [-0.1, -0.13])
    nan
    """
    if index_note(s_same, s_other) is not None:
        return float("nan")
    m = float(np.mean([x for x in np.atleast_1d(np.asarray(s_other, dtype=float)) if np.isfinite(x)]))
    return float((s_same - m) / (s_same + m))


def best_per_source(scores: pd.DataFrame) -> pd.DataFrame:
    """For each target layer and source: the best source layer and its score."""
    cols = ["target", "target_layer", "target_layer_index", "source", "metric", "same_architecture"]
    valid = scores.dropna(subset=["score"])
    idx = valid.groupby(cols, sort=False)["score"].idxmax()
    best = valid.loc[idx.values, cols + ["source_layer", "source_layer_index", "score"]]
    best = best.rename(columns={"source_layer": "best_source_layer", "source_layer_index": "best_source_layer_index"})
    return best.sort_values(["metric", "target_layer_index", "score"], ascending=[True, True, False]).reset_index(drop=True)


def identifiability(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, target layer): winner, correctness, rank, margin and identifiability index."""
    best = best_per_source(scores)
    rows = []
    for (metric, t_idx, t_layer), g in best.groupby(["metric", "target_layer_index", "target_layer"], sort=True):
        g = g.sort_values("score", ascending=False)
        win = g.iloc[0]
        same = g[g["same_architecture"].astype(bool)]
        other = g[~g["same_architecture"].astype(bool)]
        s_same = float(same["score"].max()) if len(same) else float("nan")
        runner = g.iloc[1] if len(g) > 1 else None
        rank = int((g["score"] > s_same).sum()) + 1 if len(same) else pd.NA
        rows.append({
            "target": win["target"],
            "metric": metric,
            "target_layer": t_layer,
            "target_layer_index": int(t_idx),
            "best_source": win["source"],
            "best_source_layer": win["best_source_layer"],
            "best_score": float(win["score"]),
            "correct": bool(win["same_architecture"]) and rank == 1,
            "same_architecture_score": s_same,
            "mean_other_score": float(other["score"].mean()) if len(other) else float("nan"),
            "rank": rank,
            "n_sources": len(g),
            "margin": float(win["score"] - runner["score"]) if runner is not None else float("nan"),
            "identifiability_index": identifiability_index(s_same, other["score"].to_numpy()),
            "index_note": index_note(s_same, other["score"].to_numpy()),
        })
    out = pd.DataFrame(rows)
    if len(out):
        out["rank"] = out["rank"].astype("Int64")
    return out


def verdict(ident: pd.DataFrame, target: str) -> str:
    """One line over all target layers, e.g.
    ``cka: resnet18 identified at 8/9 target layers, mean identifiability index +0.21 (9 defined), mean rank 1.1``."""
    lines = []
    for metric, g in ident.groupby("metric", sort=False):
        n, k = len(g), int(g["correct"].sum())
        idx = g["identifiability_index"]
        defined = int(idx.notna().sum())
        if defined:
            mean = f"{idx.mean():+.3f}"
            if defined < n:
                notes = g.loc[idx.isna(), "index_note"].value_counts()
                why = "; ".join(f"{c}: {note}" for note, c in notes.items())
                mean += f" over the {defined} target layers where it is defined ({n - defined} undefined: {why})"
        else:
            notes = g["index_note"].dropna().unique()
            mean = f"undefined at every target layer ({'; '.join(notes)})"
        ranks = pd.to_numeric(g["rank"], errors="coerce") if "rank" in g else pd.Series(dtype=float)
        rank = f", mean rank {ranks.mean():.1f} of {int(g['n_sources'].max())}" if ranks.notna().any() else ""
        wrong = g.loc[~g["correct"], "best_source"].value_counts()
        extra = f"; elsewhere won by {', '.join(f'{s} ({c})' for s, c in wrong.items())}" if len(wrong) else ""
        word = "identified" if k == n else ("partly identified" if k else "not identified")
        lines.append(f"{metric}: {target} {word} at {k}/{n} target layers, mean identifiability index {mean}{rank}{extra}")
    return " | ".join(lines)
