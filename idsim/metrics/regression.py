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

All of it is exact linear algebra on one eigendecomposition per source layer and fold, shared
by every target unit and alpha: ``X Xc^T`` in the dual when units outnumber images, ``Xc^T Xc``
in the primal otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IdsimError

DEFAULT_ALPHAS = (1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5)


@dataclass
class RegressionResult:
    r: np.ndarray          # (m,) Pearson r per target unit (nan for units constant on held-out images)
    alpha: np.ndarray      # (m,) alpha chosen per unit (mean over folds for k-fold)

    @property
    def score(self) -> float:
        """Median over units of the per-unit r (the layer-pair score)."""
        return float(np.nanmedian(self.r)) if np.isfinite(self.r).any() else float("nan")


class _Ridge:
    """Ridge fits of many targets and alphas on one training set, sharing one decomposition."""

    def __init__(self, X: np.ndarray):
        self.n, self.p = X.shape
        self.mean = X.mean(0)
        Xc = X - self.mean
        self.dual = self.p >= self.n
        if self.dual:
            lam, U = np.linalg.eigh(Xc @ Xc.T)
            self.Xc = Xc
        else:
            lam, U = np.linalg.eigh(Xc.T @ Xc)
            self.XV = Xc @ U  # n x p: training features in the eigenbasis
        self.lam = np.clip(lam, 0.0, None)
        self.U = U

    def _coords(self, Yc: np.ndarray) -> np.ndarray:
        return self.U.T @ Yc if self.dual else self.XV.T @ Yc

    def loo_errors(self, Yc: np.ndarray, alphas, criterion: str = "loo") -> np.ndarray:
        """(n_alphas, m) mean squared leave-one-out (or GCV) error per alpha and target."""
        Z = self._coords(Yc)
        out = np.empty((len(alphas), Yc.shape[1]))
        for a, alpha in enumerate(alphas):
            if self.dual:
                shrink = alpha / (self.lam + alpha)
                R = self.U @ (shrink[:, None] * Z)       # residuals (I - H) Yc
                h = (self.U**2) @ (self.lam / (self.lam + alpha)) + 1.0 / self.n
                trace = float(np.sum(self.lam / (self.lam + alpha))) + 1.0
            else:
                inv = 1.0 / (self.lam + alpha)
                R = Yc - self.XV @ (inv[:, None] * Z)
                h = (self.XV**2) @ inv + 1.0 / self.n
                trace = float(np.sum(self.lam * inv)) + 1.0
            if criterion == "gcv":
                out[a] = np.mean(R**2, 0) / (1.0 - trace / self.n) ** 2
            else:
                out[a] = np.mean((R / (1.0 - h)[:, None]) ** 2, 0)
        return out

    def loo_predictions(self, Y: np.ndarray, alpha_per_unit: np.ndarray, alphas) -> np.ndarray:
        """Exact leave-one-out predictions of Y with each unit's own alpha."""
        ybar = Y.mean(0)
        Yc = Y - ybar
        Z = self._coords(Yc)
        pred = np.empty_like(Yc)
        for alpha in alphas:
            cols = np.flatnonzero(alpha_per_unit == alpha)
            if not cols.size:
                continue
            if self.dual:
                R = self.U @ ((alpha / (self.lam + alpha))[:, None] * Z[:, cols])
                h = (self.U**2) @ (self.lam / (self.lam + alpha)) + 1.0 / self.n
            else:
                inv = 1.0 / (self.lam + alpha)
                R = Yc[:, cols] - self.XV @ (inv[:, None] * Z[:, cols])
                h = (self.XV**2) @ inv + 1.0 / self.n
            pred[:, cols] = Y[:, cols] - R / (1.0 - h)[:, None]
        return pred

    def predict(self, X_test: np.ndarray, Y: np.ndarray, alpha_per_unit: np.ndarray, alphas) -> np.ndarray:
        """Predictions on new rows from a fit to (training X, Y), each unit with its own alpha."""
        ybar = Y.mean(0)
        Yc = Y - ybar
        Z = self._coords(Yc)
        Xt = X_test - self.mean
        proj = Xt @ self.Xc.T @ self.U if self.dual else Xt @ self.U  # test rows in the eigenbasis
        out = np.empty((X_test.shape[0], Y.shape[1]))
        for alpha in alphas:
            cols = np.flatnonzero(alpha_per_unit == alpha)
            if cols.size:
                out[:, cols] = proj @ (Z[:, cols] / (self.lam + alpha)[:, None])
        return out + ybar


def pearson_columns(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of A and B (nan where either column is constant)."""
    n = A.shape[0]
    tol = lambda M: n * (1e-10 * np.abs(M).max(0, initial=0.0)) ** 2  # noqa: E731 - rounding-level variance
    ssa0, ssb0 = tol(A), tol(B)
    A = A - A.mean(0)
    B = B - B.mean(0)
    ssa = np.einsum("ij,ij->j", A, A)
    ssb = np.einsum("ij,ij->j", B, B)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("ij,ij->j", A, B) / np.sqrt(ssa * ssb)
    r[(ssa <= ssa0) | (ssb <= ssb0)] = np.nan
    return r


def standardize_columns(X: np.ndarray) -> np.ndarray:
    """z-score columns (constant columns become 0)."""
    X = np.asarray(X, dtype=np.float64)
    sd = X.std(0)
    sd[sd == 0] = 1.0
    return (X - X.mean(0)) / sd


def _check_alphas(alphas) -> np.ndarray:
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise IdsimError(f"alphas must be positive finite numbers, got {list(np.atleast_1d(alphas))}")
    return np.unique(a)


def _splits(cv, n: int, seed: int, labels=None):
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        if not 2 <= cv <= n:
            raise IdsimError(f"cv={cv}: the number of folds must be between 2 and the number of images ({n})")
        from sklearn.model_selection import KFold

        return list(KFold(int(cv), shuffle=True, random_state=seed).split(np.zeros(n)))
    if hasattr(cv, "split"):
        return list(cv.split(np.zeros(n), labels) if labels is not None else cv.split(np.zeros(n)))
    raise IdsimError(f"cv={cv!r}: valid are 'loo', 'gcv', an int k >= 2 (k-fold) or a scikit-learn splitter")


def fit_predict_cv(X: np.ndarray, Y: np.ndarray, cv=10, alphas=DEFAULT_ALPHAS, seed: int = 0, labels=None) -> RegressionResult:
    """Cross-validated ridge from X (n x p) to every column of Y (n x m); see the module docs."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    alphas = _check_alphas(alphas)
    n = X.shape[0]
    if Y.shape[0] != n:
        raise IdsimError(f"X and Y must have the same stimuli (rows): {n} vs {Y.shape[0]}")
    if isinstance(cv, str):
        if cv not in ("loo", "gcv"):
            raise IdsimError(f"cv={cv!r}: valid are 'loo', 'gcv', an int k >= 2 (k-fold) or a scikit-learn splitter")
        ridge = _Ridge(X)
        Yc = Y - Y.mean(0)
        best = alphas[np.argmin(ridge.loo_errors(Yc, alphas, criterion=cv), 0)] if alphas.size > 1 \
            else np.full(Y.shape[1], alphas[0])
        pred = ridge.loo_predictions(Y, best, alphas)
        return RegressionResult(r=pearson_columns(pred, Y), alpha=best)
    rs, chosen = [], []
    for train, test in _splits(cv, n, seed, labels):
        ridge = _Ridge(X[train])
        Ytr = Y[train]
        if alphas.size > 1:
            best = alphas[np.argmin(ridge.loo_errors(Ytr - Ytr.mean(0), alphas), 0)]
        else:
            best = np.full(Y.shape[1], alphas[0])
        pred = ridge.predict(X[test], Ytr, best, alphas)
        rs.append(pearson_columns(pred, Y[test]))
        chosen.append(best)
    R = np.vstack(rs)
    with np.errstate(all="ignore"):
        valid = np.isfinite(R)
        r = np.where(valid.any(0), np.nansum(R, 0) / np.maximum(valid.sum(0), 1), np.nan)
    return RegressionResult(r=r, alpha=np.mean(chosen, 0))


def neural_regression(X, Y, cv=10, alphas=DEFAULT_ALPHAS, srp_dim=None, seed: int = 0, standardize: bool = True,
                      labels=None) -> RegressionResult:
    """Per-unit held-out Pearson r of ridge predictions of Y from X (rows: stimuli, columns: units).

    ``srp_dim``: None (no projection), an int, or ``"auto"`` (Johnson-Lindenstrauss bound at eps
    0.1 for the number of stimuli): a seeded sparse random projection of X first; layers no
    wider than that are not projected. ``standardize`` z-scores the columns of X (after any
    projection) before the fit. With ``standardize=False`` and ``srp_dim=None`` the predictions
    are scikit-learn's ``Ridge(alpha)`` on the same splits.
    """
    from ..reduce import jl_dim, sparse_projection_matrix

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
    if standardize:
        X = standardize_columns(X)
    return fit_predict_cv(X, Y, cv=cv, alphas=alphas, seed=seed, labels=labels)
