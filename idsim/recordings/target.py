"""What makes any recording a target: reliability filter, trial averaging, reduction, ceilings.

Both a recording read from a file and a model target degraded into a simulated recording are a
:class:`TrialSource` (regions, and per region its responses as repetition × presentation ×
neuroid). :class:`RecordingTarget` turns one into what the run loop needs, identically for both:

1. per region, each neuroid's split-half reliability (:func:`~.reliability.split_half_reliability`);
2. with ``min_reliability``, only the neuroids at or above it are kept (a region left with none is
   dropped with a warning);
3. the kept neuroids' trial-averaged responses go through the same reducers as a network layer
   (:func:`idsim.arrays.reduce_arrays`), so the metrics see a region exactly as a layer;
4. per region, the metric's noise ceiling (:mod:`.reliability`), for ``scores.csv`` and
   ``ceilings.csv``.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from ..errors import IdsimError
from ..featureset import FeatureSet, Plan
from . import reliability as rel

log = logging.getLogger("idsim")

CONVENTIONS = {
    "regression": "median over scored neuroids of sqrt(split-half reliability, Spearman-Brown corrected)",
    "rsa": "sqrt(split-half reliability of the region's RDM, Spearman-Brown corrected)",
}


class TrialSource(Protocol):
    """Regions and their responses (repetition × presentation × neuroid), e.g. a file or a simulation."""

    def regions(self) -> list[str]: ...

    def trials(self, region: str) -> np.ndarray: ...

    def n_repetitions(self) -> int: ...


class RecordingTarget:
    """Reliability filter, trial averaging, reduction and ceilings of a :class:`TrialSource` (module docs)."""

    def __init__(self, source: TrialSource, min_reliability: float | None, splits: int, seed: int, label: str):
        self.source, self.min_reliability, self.splits, self.seed, self.label = source, min_reliability, splits, seed, label
        self._reliability: dict[str, np.ndarray] = {}

    @property
    def has_trials(self) -> bool:
        return self.source.n_repetitions() >= 2

    def reliability(self, region: str) -> np.ndarray:
        """Split-half reliability of every neuroid of ``region`` (NaN without trials)."""
        if region not in self._reliability:
            x = self.source.trials(region)
            self._reliability[region] = (rel.split_half_reliability(x, self.splits, self.seed) if self.has_trials
                                         else np.full(x.shape[2], np.nan))
        return self._reliability[region]

    def kept(self, region: str) -> np.ndarray:
        """Indices (into the region's neuroids) of those the reliability filter keeps."""
        r = self.reliability(region)
        if self.min_reliability is None:
            return np.arange(r.size)
        with np.errstate(invalid="ignore"):
            return np.flatnonzero(r >= self.min_reliability)

    def averaged(self) -> dict[str, np.ndarray]:
        """Per region with kept neuroids: their trial-averaged responses (presentation × neuroid)."""
        out = {}
        for region in self.source.regions():
            keep = self.kept(region)
            if keep.size == 0:
                log.warning("%s: region %s has no neuroid with split-half reliability >= %g (of %d); dropped",
                            self.label, region, self.min_reliability, self.reliability(region).size)
                continue
            x = self.source.trials(region)
            out[region] = np.asarray(x[:, :, keep], dtype=np.float32).mean(0, dtype=np.float64).astype(np.float32)
        if not out:
            raise IdsimError(f"{self.label}: no region has a neuroid with split-half reliability >="
                             f" {self.min_reliability}; lower min_reliability or set it to null")
        return out

    def features(self, plan: Plan, **reduce_kwargs: Any) -> FeatureSet:
        """The kept neuroids' trial averages, reduced as ``plan`` says (as network layers are)."""
        from ..arrays import reduce_arrays

        return reduce_arrays(self.averaged(), plan, name=self.label, **reduce_kwargs)

    def ceilings(self, metric: Any, plan: Plan, features: FeatureSet):
        """Per region in ``features``: neuroid counts, reliability and the metric's noise ceiling (a DataFrame)."""
        import pandas as pd

        from ..reduce import sample_units

        rows = []
        kind = getattr(metric, "kind", "")
        for region in features.layer_names:
            r_all = self.reliability(region)
            keep = self.kept(region)
            r = r_all[keep]
            row = {"target_layer": region, "n_neuroids": int(r_all.size), "n_kept": int(keep.size),
                   "min_reliability": self.min_reliability, "repetitions": self.source.n_repetitions(),
                   "splits": self.splits if self.has_trials else None,
                   "median_reliability": float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan"),
                   "rdm_split_half": float("nan"), "ceiling": float("nan"),
                   "ceiling_convention": CONVENTIONS.get(kind, f"none for {kind or 'this metric'}")}
            if not self.has_trials:
                row["ceiling_convention"] = "none: the recording has no trials"
            elif kind == "regression":
                idx = features[region].unit_index
                row["ceiling"] = rel.regression_ceiling(r if idx is None else r[idx])
            elif kind == "rsa":
                x = np.asarray(self.source.trials(region)[:, :, keep])
                units = sample_units(keep.size, plan.unit_ratio, plan.seed, region)
                opts = metric.options
                row["ceiling"], row["rdm_split_half"] = rel.rsa_ceiling(x[:, :, units], opts.rdm, opts.compare,
                                                                         self.splits, self.seed)
            if self.min_reliability is not None:
                log.info("%s: region %s keeps %d of %d neuroids (split-half reliability >= %g)", self.label, region,
                         keep.size, r_all.size, self.min_reliability)
            rows.append(row)
        return pd.DataFrame(rows)


__all__ = ["RecordingTarget", "TrialSource", "CONVENTIONS"]
