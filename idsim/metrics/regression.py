"""Neural regression: ridge from source features to every target unit, scored on held-out images.

For each source layer, ridge regression (with an unpenalised intercept) predicts each target
unit from the source features; the score of a unit is the Pearson r between held-out
predictions and its true responses, and a layer pair's score is the median over units.

Cross-validation (``cv``):
- an int k: k-fold (shuffled with ``seed``); r per unit on each fold's held-out images, averaged
  over folds (as Brain-Score and the system-identification paper: 10 x 90/10);
- ``"loo"``: exact closed-form leave-one-out predictions (what scikit-learn's ``RidgeCV`` calls
  GCV and what the mouse paper used), r per unit over all images;
- ``"gcv"``: Golub-Heath-Wahba generalised cross-validation to choose alpha, predictions as loo;
- any scikit-learn splitter (``KFold``, ``ShuffleSplit``...): per-fold r, averaged.

``alphas``: one value, or a grid from which alpha is chosen per target unit by the closed-form
leave-one-out error on the training images of each fold (``"gcv"``: by the GCV criterion).

The linear algebra (one eigendecomposition per source layer and fold, shared by every target
unit and alpha) is in :mod:`idsim.metrics._ridge`, on torch, loaded when a regression runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np

from ..errors import IdsimError
from ..featureset import FeatureSet, Plan
from ..schema import MetricOptions, is_int, is_number, one_of, opt
from .base import SOURCE, TARGET, LayerScores, Metric

DEFAULT_ALPHAS = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)


def _cv_ok(v: Any) -> bool:
    return v in ("loo", "gcv") or is_int(v, 2)


@dataclass
class Options(MetricOptions):
    """``metric=regression`` / ``metric=regression_loo``."""

    name: str = "regression"
    kind: str = "regression"
    cv: Any = opt(10, "loo, gcv or an integer k >= 2 (k shuffled folds)", _cv_ok)
    alphas: List[float] = opt(valid="a non-empty list of positive numbers (alpha chosen per unit by leave-one-out"
                                    " error on the training images)",
                              check=lambda v: len(v) > 0 and all(is_number(a) and a > 0 for a in v),
                              factory=lambda: list(DEFAULT_ALPHAS))
    srp_dim: Any = opt("auto", "auto (Johnson-Lindenstrauss bound at eps 0.1), an integer >= 1 (sparse random"
                               " projection of source layers wider than that) or null (no projection: every unit)",
                       lambda v: v is None or v == "auto" or is_int(v, 1))
    standardize: bool = True   # z-score source features (after projection) with training-fold statistics
    max_units: Optional[int] = opt(3000, "an integer >= 1 or null (all kept units)", lambda v: v is None or is_int(v, 1))
    precision: str = opt("float64", "float64 or float32 (faster, on CUDA especially)", one_of("float64", "float32"))


class Regression(Metric):
    """Median held-out r of ridge predictions for every layer pair; all target layers share each source fit."""

    kind = "regression"
    Options = Options
    bootstrap_default = 200  # each resample re-weights every unit's held-out predictions: costlier than CKA/RSA

    def plan(self, role: str, unit_ratio: float = 1.0, seed: int = 0) -> Plan:
        o = self.options
        if role == TARGET:
            return Plan(grams=(), units=True, max_units=o.max_units, unit_ratio=unit_ratio, drop_constant=True, seed=seed)
        return Plan(grams=(), features=True, project=o.srp_dim, seed=seed)

    def check(self, n_images: int) -> None:
        super().check(n_images)
        cv = self.options.cv
        if is_int(cv) and cv > n_images:
            raise IdsimError(f"metric.cv={cv}: more folds than probe images ({n_images}); use metric.cv={min(10, n_images)}"
                             f" or fewer, or metric.cv=loo")
        if is_int(cv) and n_images // cv < 3:
            raise IdsimError(f"metric.cv={cv} on {n_images} images leaves held-out folds of fewer than 3 images, where"
                             f" Pearson r is undefined or +-1; use metric.cv={max(2, n_images // 3)} or fewer, or"
                             f" metric.cv=loo")

    def score(self, source: FeatureSet, target: FeatureSet, seed: int = 0, device=None,
              resamples: np.ndarray | None = None) -> LayerScores:
        """Median held-out r per layer pair; with ``resamples``, the same on each resample of the images:
        every unit's held-out predictions re-weighted by how often the resample draws each image (no refit)."""
        from ._ridge import BootstrapTargets, fit_predict_cv, nanmedian_rows

        o = self.options
        Ys = self._layers(target, self.name, "units", TARGET)
        Y = np.concatenate(Ys, axis=1)
        bounds = np.cumsum([0] + [y.shape[1] for y in Ys])
        S = np.full((len(source.layer_names), len(Ys)), np.nan)
        A = np.full_like(S, np.nan)
        boot = None if resamples is None else np.full((len(resamples), *S.shape), np.nan)
        counts = None if resamples is None else np.stack([np.bincount(r, minlength=Y.shape[0]) for r in resamples])
        targets = None  # the responses' side of the bootstrap, shared by every source layer (same folds)
        slabs, pending = None, []  # source layers waiting for their bootstrap, which takes a few at once

        def bootstrap_pending():
            R = targets.r(slabs[:len(pending)])
            for g, i in enumerate(pending):
                for j in range(len(Ys)):
                    boot[:, i, j] = nanmedian_rows(R[g, :, bounds[j]:bounds[j + 1]])
            pending.clear()

        for i, X in enumerate(self._layers(source, self.name, "features", SOURCE)):
            res = fit_predict_cv(X, Y, cv=o.cv, alphas=o.alphas, seed=seed, device=device, precision=o.precision,
                                 standardize=o.standardize, keep_predictions=boot is not None)
            for j in range(len(Ys)):
                r = res.r[bounds[j]:bounds[j + 1]]
                S[i, j] = np.nanmedian(r) if np.isfinite(r).any() else np.nan
                A[i, j] = np.median(res.alpha[bounds[j]:bounds[j + 1]])
            if boot is None:
                continue
            if targets is None:
                targets = BootstrapTargets(Y, res.folds, counts)
                slabs = np.empty((min(targets.layers_at_once(), len(source.layer_names)), *targets.Yt.shape))
            targets.slab(res.predictions, out=slabs[len(pending)])
            pending.append(i)
            del res
            if len(pending) == len(slabs):
                bootstrap_pending()
        if pending:
            bootstrap_pending()
        return LayerScores(S, {"median_alpha": A}, boot=boot)


def neural_regression(X, Y, cv=10, alphas=DEFAULT_ALPHAS, srp_dim=None, seed: int = 0, standardize: bool = True,
                      labels=None, device=None, precision: str = "float64"):
    """Per-unit held-out Pearson r of ridge predictions of Y from X (rows: stimuli, columns: units).

    ``srp_dim``: None (no projection), an int, or ``"auto"`` (Johnson-Lindenstrauss bound at eps
    0.1 for the number of stimuli): a seeded sparse random projection of X first; layers no
    wider than that are not projected. ``standardize`` z-scores the columns of X (after any
    projection) with training-fold statistics (see :func:`~idsim.metrics._ridge.fit_predict_cv`). With ``standardize=False`` and ``srp_dim=None`` the predictions
    are scikit-learn's ``Ridge(alpha)`` on the same splits. ``labels``: passed to a scikit-learn
    splitter's ``split`` (e.g. ``StratifiedKFold`` by category). ``device``/``precision``: see
    :func:`~idsim.metrics._ridge.fit_predict_cv`. Returns a ``RegressionResult`` (``r``, ``alpha``, ``score``).
    """
    from ..reduce import jl_dim, sparse_projection_matrix
    from ._ridge import fit_predict_cv

    X = np.asarray(X.detach().cpu().numpy() if hasattr(X, "detach") else X, dtype=np.float64)
    Y = np.asarray(Y.detach().cpu().numpy() if hasattr(Y, "detach") else Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim not in (1, 2):
        raise IdsimError(f"X must be 2-D and Y 1-D or 2-D (stimuli first), got {X.shape} and {Y.shape}")
    if Y.ndim == 1:
        Y = Y[:, None]
    if srp_dim is not None:
        q = jl_dim(X.shape[0]) if srp_dim == "auto" else int(srp_dim)
        if X.shape[1] > q:
            X = np.asarray(X @ sparse_projection_matrix(X.shape[1], q, seed=seed))
    return fit_predict_cv(X, Y, cv=cv, alphas=alphas, seed=seed, labels=labels, device=device, precision=precision,
                          standardize=standardize)


__all__ = ["Options", "Regression", "neural_regression", "DEFAULT_ALPHAS"]
