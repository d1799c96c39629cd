"""Launching an analysis's sweeps and reading them back; statistics shared by the analyses.

Sweeps run as ``python run.py -m ...`` subprocesses, one ``hydra.sweep.dir`` per sweep under
``<out>/sweeps/<name>``: a launcher override (``hydra/launcher=slurm``) passes straight through,
and launching again skips the jobs that are already done (idsim.sweep).
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from idsim.errors import IdsimError

log = logging.getLogger("idsim.experiments")

ROOT = Path(__file__).resolve().parent.parent
# settings of every quick variant: few images, no logging, no per-job figures
QUICK = ["dataset.n_images=16", "batch_size=16", "logger=none", "plots=false", "progress=false"]
# settings of every full variant (per-job figures are kept; W&B runs stay offline in the job folders)
FULL = ["progress=false"]


@dataclass
class Sweep:
    """One ``python run.py -m`` launch: a name (its folder under ``<out>/sweeps/``) and its overrides."""

    name: str
    overrides: list[str]
    meta: dict = field(default_factory=dict)   # columns added to its tables (e.g. the probe set's label)

    def command(self, sweep_dir: Path, extra: Sequence[str] = ()) -> list[str]:
        return [sys.executable, str(ROOT / "run.py"), "-m", f"hydra.sweep.dir={sweep_dir}", *self.overrides, *extra]


@dataclass
class SweepResults:
    """Every sweep's summary tables, concatenated, with a ``sweep`` column (and each sweep's ``meta``)."""

    scores: pd.DataFrame
    identifiability: pd.DataFrame
    jobs: pd.DataFrame


def parse_dataset(text: str) -> tuple[str, list[str]]:
    """``"imagenet dataset.root=/data/val"`` -> (``imagenet``, [``dataset=imagenet``, ``dataset.root=/data/val``])."""
    parts = shlex.split(text)
    if not parts or "=" in parts[0]:
        raise IdsimError(f"probe set {text!r}: give a dataset name first, then its overrides, e.g."
                         f" \"imagenet dataset.root=/data/imagenet/val\"")
    bad = [p for p in parts[1:] if "=" not in p or p.startswith("-")]
    if bad:
        raise IdsimError(f"probe set {text!r}: {bad[0]!r} is not a key=value override")
    return parts[0], [f"dataset={parts[0]}", *parts[1:]]


def launch(sweeps: Sequence[Sweep], out: Path, extra: Sequence[str] = (), dry_run: bool = False) -> SweepResults:
    """Run every sweep (or print its command with ``dry_run``) and read back its summary tables.

    A sweep with failed jobs keeps what its finished jobs produced (their errors are in
    ``summary/jobs.csv``); a sweep with no finished job stops the analysis.
    """
    scores, idents, jobs = [], [], []
    for sw in sweeps:
        sweep_dir = (out / "sweeps" / sw.name).resolve()
        cmd = sw.command(sweep_dir, extra)
        print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
        if dry_run:
            continue
        env = {**os.environ, "WANDB_SILENT": "true"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env)
        summary = sweep_dir / "summary"
        if proc.returncode not in (0, 1):  # 1: some jobs failed, the summary of the others is written
            raise IdsimError(f"sweep {sw.name!r} stopped with exit status {proc.returncode}; see its error above")
        if not (summary / "jobs.csv").exists():
            raise IdsimError(f"sweep {sw.name!r} wrote no summary (exit status {proc.returncode});"
                             f" see its output above")
        j = pd.read_csv(summary / "jobs.csv")
        j.insert(0, "sweep", sw.name)
        jobs.append(j)
        failed = j[j["state"] != "done"]
        if len(failed) == len(j):
            raise IdsimError(f"sweep {sw.name!r}: no job finished; errors in {summary / 'jobs.csv'}")
        if len(failed):
            log.warning("sweep %s: %d of %d jobs not done (%s); analysing the others", sw.name, len(failed), len(j),
                        ", ".join(failed["job"].astype(str)))
        for name, bucket in (("scores.csv", scores), ("identifiability.csv", idents)):
            df = pd.read_csv(summary / name)
            df.insert(0, "sweep", sw.name)
            for k, v in sw.meta.items():
                df[k] = v
            bucket.append(df)
    if dry_run:
        return SweepResults(pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    return SweepResults(pd.concat(scores, ignore_index=True), pd.concat(idents, ignore_index=True),
                        pd.concat(jobs, ignore_index=True))


# --------------------------------------------------------------------------- tables and figures


def write_table(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def new_figure(width: float, height: float):
    """A matplotlib Figure drawn by the Agg canvas (no pyplot state, safe in tests and threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def source_palette(names: Sequence[str]) -> dict[str, str]:
    """Fixed colours per source name (sorted), as idsim's own figures assign them."""
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
