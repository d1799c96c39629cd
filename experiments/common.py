"""What the analyses share: reading a sweep's summary, writing tables and figures, statistics.

Every analysis is a function ``(summary, out_dir) -> {name: path}`` that idsim's sweep callback
calls when a sweep ends (``analysis:`` in ``conf/experiment/<name>.yaml``); ``summary`` is an
:class:`idsim.sweep.SweepSummary` whose ``scores`` and ``identifiability`` tables hold every
finished job's rows, with one column per swept key.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from idsim.errors import IdsimError

log = logging.getLogger("idsim.experiments")


# --------------------------------------------------------------------------- reading a sweep


def finished(summary) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary's scores and identifiability tables; an error when no job of the sweep finished.

    Jobs that failed are left out (their errors are in ``summary/jobs.csv``) with a warning.
    """
    jobs = summary.jobs
    if summary.scores.empty:
        raise IdsimError(f"no job of the sweep {summary.sweep_dir} finished; errors in"
                         f" {Path(summary.sweep_dir) / 'summary' / 'jobs.csv'}")
    bad = jobs[jobs["state"] != "done"]
    if len(bad):
        log.warning("%d of %d jobs not done (%s); analysing the others", len(bad), len(jobs),
                    ", ".join(bad["job"].astype(str)))
    return summary.scores, summary.identifiability


def as_bool(values: pd.Series) -> pd.Series:
    """``True``/``False`` read back from CSV (bools or their text) as bools."""
    return values.astype(str).str.lower().eq("true")


# --------------------------------------------------------------------------- tables and figures


def write_table(df: pd.DataFrame, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def new_figure(width: float, height: float):
    """A matplotlib Figure (no pyplot state); save it with :func:`idsim.plots.save_figure`."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def source_palette(names: Sequence[str]) -> dict[str, str]:
    """Fixed colours per source name, as idsim's own figures assign them."""
    from idsim.plots import source_colors

    return source_colors(sorted(set(map(str, names))))


# --------------------------------------------------------------------------- statistics


def max_over_layers(scores: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The best source layer per group (``by`` + target layer): its score, name, index and relative depth."""
    keys = [*by, "target", "target_layer", "target_layer_index"]
    df = scores.copy()
    df["source_relative_depth"] = relative_depth(df, [*by, "target"])
    idx = df.groupby(keys, sort=False)["score"].idxmax()
    best = df.loc[idx.dropna().astype(int), [*keys, "source_layer", "source_layer_index", "source_relative_depth",
                                             "score"]]
    return best.rename(columns={"source_layer": "best_source_layer", "source_layer_index": "best_source_layer_index",
                                "source_relative_depth": "best_layer_relative_depth"}).reset_index(drop=True)


def relative_depth(scores: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """Each source layer's depth within its model: 0 = first recorded layer, 1 = last (0 for one-layer models)."""
    group = scores.groupby([*by, "source"], sort=False)["source_layer_index"]
    lo, hi = group.transform("min"), group.transform("max")
    span = (hi - lo).where(hi > lo)
    return ((scores["source_layer_index"] - lo) / span).fillna(0.0)


def welch_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's unequal-variance t-test of two samples: (t, two-sided p); NaN when a class has < 2 values."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan")
    res = stats.ttest_ind(a, b, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (scipy.stats.bootstrap); a point for < 2 values."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) < 2 or np.ptp(x) == 0:
        return float(x.mean()), float(x.mean())
    res = stats.bootstrap((x,), np.mean, confidence_level=level, n_resamples=n_resamples, method="percentile",
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def smoothed_trend(x: Sequence[float], y: Sequence[float], bins: int = 20, span: float = 2 / 3,
                   grid: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """A smooth trend of y against x in [0, 1]: Gaussian kernel regression on the per-bin means.

    The x axis is binned (jagged means per bin, as the mouse paper's Fig. 4), then smoothed with a
    Gaussian kernel whose full width is ``span`` of the axis (the paper's lowess used 2/3).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) == 0:
        raise IdsimError("no finite points to smooth")
    b = np.minimum((x * bins).astype(int), bins - 1)
    centres = (np.arange(bins) + 0.5) / bins
    means = pd.Series(y).groupby(b).mean()
    cx, cy = centres[means.index.to_numpy()], means.to_numpy()
    gx = np.linspace(0, 1, grid)
    sigma = span / 4
    w = np.exp(-0.5 * ((gx[:, None] - cx[None, :]) / sigma) ** 2)
    return gx, (w @ cy) / w.sum(axis=1)
