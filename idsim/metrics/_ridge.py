"""The ridge engine of neural regression (torch; CPU or CUDA): ridge from source features to every
target unit, scored on held-out images.

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
import torch

from ..errors import IdsimError
from .regression import DEFAULT_ALPHAS


@dataclass
class RegressionResult:
    r: np.ndarray          # (m,) Pearson r per target unit (nan for units constant on held-out images)
    alpha: np.ndarray      # (m,) alpha chosen per unit (mean over folds for k-fold)
    predictions: np.ndarray | None = None  # (n, m) every image's held-out prediction (keep_predictions)
    folds: np.ndarray | None = None        # (n,) the fold in which each image was held out (-1: never)

    @property
    def score(self) -> float:
        """Median over units of the per-unit r (the layer-pair score)."""
        return float(np.nanmedian(self.r)) if np.isfinite(self.r).any() else float("nan")


DTYPES = {"float64": torch.float64, "float32": torch.float32}


def engine(device=None, precision: str = "float64") -> tuple[torch.device, torch.dtype]:
    """Where and in which precision the linear algebra runs (``device=None``: CPU)."""
    if precision not in DTYPES:
        raise IdsimError(f"precision={precision!r}; valid: {', '.join(DTYPES)}")
    return torch.device(device if device is not None else "cpu"), DTYPES[precision]


class _Ridge:
    """Ridge fits of many targets and alphas on one training set, sharing one decomposition.

    With the eigendecomposition ``Xc Xc^T = U diag(lam) U^T`` (dual, when units outnumber
    images) or ``Xc^T Xc = V diag(lam) V^T`` (primal), fits, hat-matrix diagonals, leave-one-out
    residuals and GCV errors for any alpha are products with diagonal rescalings: no further
    solve per alpha or per target. The intercept is not penalised (features and targets are
    centred on the training images; the hat matrix gains ``1/n``).
    """

    def __init__(self, X: torch.Tensor):
        # The decomposition is always done in float64 (it is where precision is lost: small
        # eigenvalues next to alpha); in float32 mode only the per-target products are float32.
        dtype = X.dtype
        X = X.to(torch.float64)
        self.n, self.p = X.shape
        self.mean = X.mean(0)
        Xc = X - self.mean
        self.dual = self.p >= self.n
        if self.dual:
            lam, U = torch.linalg.eigh(Xc @ Xc.T)
            self.Xc = Xc.to(dtype)
            B = U                      # n x n basis of the fitted space, in image space
        else:
            lam, U = torch.linalg.eigh(Xc.T @ Xc)
            B = Xc @ U                 # n x p: training features in the eigenbasis (columns scaled by sqrt(lam))
        self.lam = lam.clamp_min(0.0).to(dtype)
        self.U, self.B, self.mean = U.to(dtype), B.to(dtype), self.mean.to(dtype)
        self.B2 = self.B**2

    def coords(self, Yc: torch.Tensor) -> torch.Tensor:
        return self.B.T @ Yc

    def _shrink(self, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Per-eigenvector factor of the residual, hat diagonal and trace of the hat matrix at ``alpha``."""
        if self.dual:
            shrink = alpha / (self.lam + alpha)       # residual = U (shrink * U^T Yc)
            h = self.B2 @ (self.lam / (self.lam + alpha))
            trace = float((self.lam / (self.lam + alpha)).sum())
        else:
            shrink = 1.0 / (self.lam + alpha)         # residual = Yc - XV (shrink * XV^T Yc)
            h = self.B2 @ shrink
            trace = float((self.lam * shrink).sum())
        return shrink, h + 1.0 / self.n, trace + 1.0

    def _residuals(self, Yc: torch.Tensor, Z: torch.Tensor, shrink: torch.Tensor) -> torch.Tensor:
        fit = self.B @ (shrink[:, None] * Z)
        return fit if self.dual else Yc - fit

    def loo_errors(self, Yc: torch.Tensor, alphas, criterion: str = "loo", Z: torch.Tensor | None = None) -> torch.Tensor:
        """(n_alphas, m) mean squared leave-one-out (or GCV) error per alpha and target.

        Leave-one-out residuals are ``r_i / (1 - h_i)``; the row weights ``1 / (1 - h_i)`` and the
        per-eigenvector factors are folded into the n x n basis first, so each alpha costs one
        matrix product and one pass over its result.
        """
        Z = self.coords(Yc) if Z is None else Z
        out = torch.empty((len(alphas), Yc.shape[1]), dtype=Yc.dtype, device=Yc.device)
        for a, alpha in enumerate(alphas):
            shrink, h, trace = self._shrink(float(alpha))
            if criterion == "gcv":  # ||R||^2 from the eigencoordinates: no n x n x m product in the dual
                if self.dual:
                    ss = (shrink[:, None] ** 2 * Z**2).sum(0)
                else:
                    ss = (self._residuals(Yc, Z, shrink) ** 2).sum(0)
                out[a] = ss / self.n / (1.0 - trace / self.n) ** 2
                continue
            w = 1.0 / (1.0 - h)
            Bw = (w[:, None] * self.B) * shrink[None, :]
            if self.dual:
                Rw = Bw @ Z
            else:
                Rw = torch.addmm(w[:, None] * Yc, Bw, Z, alpha=-1.0)
            out[a] = torch.linalg.vector_norm(Rw, dim=0).square_().div_(self.n)
        return out

    def loo_predictions(self, Y: torch.Tensor, alpha_per_unit: np.ndarray, alphas, Z: torch.Tensor | None = None) -> torch.Tensor:
        """Exact leave-one-out predictions of Y with each unit's own alpha (``Z``: ``coords`` of centred Y, if known)."""
        Yc = Y - Y.mean(0)
        Z = self.coords(Yc) if Z is None else Z
        pred = torch.empty_like(Yc)
        for alpha in alphas:
            cols = torch.as_tensor(np.flatnonzero(alpha_per_unit == alpha), device=Y.device)
            if not cols.numel():
                continue
            shrink, h, _ = self._shrink(float(alpha))
            R = self._residuals(Yc[:, cols], Z[:, cols], shrink)
            pred[:, cols] = Y[:, cols] - R / (1.0 - h)[:, None]
        return pred

    def predict(self, X_test: torch.Tensor, Y: torch.Tensor, alpha_per_unit: np.ndarray, alphas,
                Z: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions on new rows from a fit to (training X, Y), each unit with its own alpha."""
        ybar = Y.mean(0)
        Z = self.coords(Y - ybar) if Z is None else Z
        Xt = X_test - self.mean
        proj = (Xt @ self.Xc.T) @ self.U if self.dual else Xt @ self.U  # test rows in the eigenbasis
        out = torch.empty((X_test.shape[0], Y.shape[1]), dtype=Y.dtype, device=Y.device)
        for alpha in alphas:
            cols = torch.as_tensor(np.flatnonzero(alpha_per_unit == alpha), device=Y.device)
            if cols.numel():
                out[:, cols] = proj @ (Z[:, cols] / (self.lam + alpha)[:, None])
        return out + ybar

    def operator(self, X_test: torch.Tensor, alpha: float) -> torch.Tensor:
        """(test rows, training rows): the linear map from training responses to test predictions at ``alpha``,
        intercept included (each row sums to 1). One product with it predicts every target unit: no
        eigen-coordinates of the responses are needed when alpha is fixed."""
        Xt = X_test - self.mean
        proj = (Xt @ self.Xc.T) @ self.U if self.dual else Xt @ self.U
        M = (proj / (self.lam + alpha)) @ self.B.T
        return M.add_((1.0 - M.sum(1, keepdim=True)) / self.n)

    def loo_operator(self, alpha: float) -> torch.Tensor:
        """(n, n): the map from centred responses to leave-one-out residuals at ``alpha`` (``r_i / (1 - h_i)``)."""
        shrink, h, _ = self._shrink(float(alpha))
        Q = (self.B * shrink) @ self.B.T
        if not self.dual:
            Q = torch.eye(self.n, dtype=Q.dtype, device=Q.device) - Q
        return Q.div_((1.0 - h)[:, None])


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


#: a weighted variance below this fraction of its weighted sum of squares is rounding, not spread: the unit
#: is constant on the drawn images (e.g. one image drawn twice), and its r is undefined there
_CANCEL = 1e-12

class BootstrapTargets:
    """What the bootstrap of held-out r needs of the responses Y, computed once for every source layer.

    The held-out images in fold order, each fold's responses centred on the fold (unit-major:
    one contiguous row per unit), the resample counts in the same order, and each fold's drawn
    total per resample; the same for every source layer (folds and resamples are shared).
    """

    def __init__(self, Y: np.ndarray, folds: np.ndarray, counts: np.ndarray):
        folds = np.asarray(folds)
        held = np.flatnonzero(folds >= 0)
        self.order = held[np.argsort(folds[held], kind="stable")]
        _, starts = np.unique(folds[self.order], return_index=True)
        self.starts = np.append(starts, len(self.order)).astype(np.int64)
        self.counts = counts
        self.C = np.ascontiguousarray(counts[:, self.order].T, dtype=np.float64)       # (held-out images, resamples)
        self.W = np.stack([self.C[a:b].sum(0) for a, b in zip(self.starts[:-1], self.starts[1:])])
        self.Yt = self.slab(Y)

    def slab(self, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(columns, held-out images): A's rows in fold order, centred on their fold's mean (no cancellation)."""
        A = np.asarray(A, dtype=np.float64)[self.order]
        for a, b in zip(self.starts[:-1], self.starts[1:]):
            A[a:b] -= A[a:b].mean(0)
        if out is None:
            return np.ascontiguousarray(A.T)
        out[...] = A.T
        return out

    def layers_at_once(self, budget: int = 320 * 2**20) -> int:
        """How many source layers :meth:`r` takes at once within ``budget`` bytes (their slabs and results):
        each layer given with others saves two of its five weighted sums per image."""
        m, n = self.Yt.shape
        return int(max(1, min(8, budget // (8 * m * (n + self.C.shape[1])))))

    def r(self, P: np.ndarray) -> np.ndarray:
        """(layers, resamples, units) bootstrap r of source layers' slabs ``P`` (layers, units, held-out images)."""
        from ..kernels import bootstrap_pearson, match_torch_threads

        match_torch_threads()
        out = np.empty((P.shape[0], self.C.shape[1], P.shape[1]))
        bootstrap_pearson(np.ascontiguousarray(P), self.Yt, self.C, self.W, self.starts, _CANCEL, out)
        return out


def bootstrap_r(predictions, Y: np.ndarray | BootstrapTargets, folds: np.ndarray | None = None,
                counts: np.ndarray | None = None) -> np.ndarray:
    """Per-unit held-out Pearson r on resampled images: (n_resamples, m), or (layers, n_resamples, m) for a
    list of several source layers' predictions.

    ``counts`` (n_resamples, n) says how often each image is drawn. Within each fold, r is the
    Pearson correlation of the held-out predictions with the responses over the fold's images,
    each weighted by its count (= r over the resampled images); fold values are averaged as the
    point estimate averages them. Folds with fewer than two drawn images, and units constant on
    them, give no value. ``Y`` may be a :class:`BootstrapTargets` made once for many source layers.
    One compiled pass per unit (:mod:`idsim.kernels`): the five weighted sums of every
    fold and resample stay in the core's cache, where array operations would make a dozen passes
    over (resamples x units) arrays in memory; layers given together share the responses' two sums.
    """
    t = Y if isinstance(Y, BootstrapTargets) else BootstrapTargets(Y, folds, counts)
    single = isinstance(predictions, np.ndarray) and predictions.ndim == 2
    layers = [predictions] if single else list(predictions)
    P = np.empty((len(layers), *t.Yt.shape))
    for g, pred in enumerate(layers):
        t.slab(pred, out=P[g])
    out = t.r(P)
    return out[0] if single else out


def nanmedian_rows(R: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (NaN for an all-NaN row): ``np.nanmedian(R, axis=1)``, which loops over
    rows in Python. A compiled selection per row (:func:`idsim.kernels.nanmedian_rows`, rows spread over torch's
    threads): 2x NumPy's partial sorts in groups of rows with the same number of values, and 6x a full sort of
    the rows with gaps (most resamples leave some unit without a score)."""
    from ..kernels import match_torch_threads, nanmedian_rows as kernel

    R = np.asarray(R, dtype=np.float64)
    med = np.full(len(R), np.nan)
    if R.shape[1] == 0 or len(R) == 0:
        return med
    match_torch_threads()
    kernel(R, med)
    return med


def _check_alphas(alphas) -> np.ndarray:
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise IdsimError(f"alphas must be positive finite numbers, got {list(np.atleast_1d(alphas))}")
    return np.unique(a)


def kfold(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (training, held-out) images of k shuffled folds: scikit-learn's ``KFold(k, shuffle=True,
    random_state=seed).split`` index for index (``tests/test_metrics.py`` compares them), without importing
    scikit-learn's model selection, which took ~1 s of every cold regression job. The images are shuffled by
    NumPy's legacy generator seeded with ``seed`` (hence seeds below 2**32); the first ``n % k`` folds hold one
    image more; both index arrays are sorted."""
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(k, n // k)
    sizes[:n % k] += 1
    out = []
    for held in np.split(order, np.cumsum(sizes)[:-1]):
        mask = np.zeros(n, dtype=bool)
        mask[held] = True
        out.append((np.flatnonzero(~mask), np.flatnonzero(mask)))
    return out


def _splits(cv, n: int, seed: int, labels=None):
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        if not 2 <= cv <= n:
            raise IdsimError(f"cv={cv}: the number of folds must be between 2 and the number of images ({n})")
        return kfold(n, int(cv), seed)
    if hasattr(cv, "split"):
        return list(cv.split(np.zeros(n), labels) if labels is not None else cv.split(np.zeros(n)))
    raise IdsimError(f"cv={cv!r}: valid are 'loo', 'gcv', an int k >= 2 (k-fold) or a scikit-learn splitter")


def _tensor(A, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(A, torch.Tensor):
        return A.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(A), device=device).to(dtype)


def zscore(X: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of ``X[rows]`` (float64; constant columns get sd 1: they stay constant)."""
    ref = X if rows is None else X[rows]
    sd = ref.std(0)
    sd[sd == 0] = 1.0
    return ref.mean(0), sd


def fit_predict_cv(X, Y, cv=10, alphas=DEFAULT_ALPHAS, seed: int = 0, labels=None, device=None,
                   precision: str = "float64", standardize: bool = False,
                   keep_predictions: bool = False) -> RegressionResult:
    """Cross-validated ridge from X (n x p) to every column of Y (n x m); see the module docs.

    ``standardize`` z-scores the columns of X with the statistics of the training images only:
    for k-fold and splitters, each fold's training images (held-out images never shape the
    scaling; columns constant on the training images stay constant and get no weight); for
    ``"loo"``/``"gcv"``, whose closed forms need one design matrix, all images (as scikit-learn's
    ``RidgeCV`` on standardised features, and the mouse paper). ``device`` (default CPU) and
    ``precision`` (``"float64"`` default, or ``"float32"``) say where and how the linear algebra
    runs; inputs may be NumPy arrays or torch tensors. ``keep_predictions`` also returns every
    image's held-out predictions and its fold (for the bootstrap over images).
    """
    dev, dtype = engine(device, precision)
    if standardize:  # scaling statistics in float64 NumPy, then the features go to the engine per fold
        X_np = np.asarray(X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X, dtype=np.float64)
    X, Y = _tensor(X, dev, dtype), _tensor(Y, dev, dtype)
    alphas = _check_alphas(alphas)
    n = X.shape[0]
    if Y.shape[0] != n:
        raise IdsimError(f"X and Y must have the same stimuli (rows): {n} vs {Y.shape[0]}")
    if isinstance(cv, str):
        if cv not in ("loo", "gcv"):
            raise IdsimError(f"cv={cv!r}: valid are 'loo', 'gcv', an int k >= 2 (k-fold) or a scikit-learn splitter")
        if n < 3:
            raise IdsimError(f"leave-one-out needs at least 3 images, got {n}")
        if standardize:
            mu, sd = zscore(X_np)
            X = _tensor((X_np - mu) / sd, dev, dtype)
        ridge = _Ridge(X)
        if alphas.size == 1:  # one n x n x units product: the residual map applied to the centred responses
            best = np.full(Y.shape[1], alphas[0])
            pred = _np(torch.addmm(Y, ridge.loo_operator(alphas[0]), Y - Y.mean(0), alpha=-1.0))
        else:
            Z = ridge.coords(Y - Y.mean(0))
            best = _choose(ridge, Y, alphas, criterion=cv, Z=Z)
            pred = _np(ridge.loo_predictions(Y, best, alphas, Z=Z))
        res = RegressionResult(r=pearson_columns(pred, _np(Y)), alpha=best)
        if keep_predictions:
            res.predictions, res.folds = pred, np.zeros(n, dtype=np.int64)
        return res
    rs, chosen = [], []
    pooled = np.empty((n, Y.shape[1])) if keep_predictions else None
    folds = np.full(n, -1, dtype=np.int64)
    splits = _splits(cv, n, seed, labels)
    maps = []  # one alpha: each fold's map from the responses to its predictions, then one product for all folds
    Y_np = _np(Y)
    for k, (train, test) in enumerate(splits):
        tr, te = torch.as_tensor(train, device=dev), torch.as_tensor(test, device=dev)
        Xtr, Xte = X[tr], X[te]
        if standardize:  # training-fold statistics only
            mu, sd = zscore(X_np, train)
            Xtr, Xte = _tensor((X_np[train] - mu) / sd, dev, dtype), _tensor((X_np[test] - mu) / sd, dev, dtype)
        ridge = _Ridge(Xtr)
        if alphas.size == 1:
            M = torch.zeros((len(test), n), dtype=dtype, device=dev)
            M[:, tr] = ridge.operator(Xte, float(alphas[0]))
            maps.append(M)
            chosen.append(np.full(Y.shape[1], alphas[0]))
            continue
        Ytr = Y[tr]
        Z = ridge.coords(Ytr - Ytr.mean(0))
        best = _choose(ridge, Ytr, alphas, criterion="loo", Z=Z)
        pred = _np(ridge.predict(Xte, Ytr, best, alphas, Z=Z))
        rs.append(pearson_columns(pred, Y_np[test]))
        chosen.append(best)
        if pooled is not None:
            pooled[test], folds[test] = pred, k
    if maps:  # responses shifted by their overall mean first: the rows' intercept terms then carry no large offset
        mu_y = Y.mean(0)
        preds = _np(torch.cat(maps) @ (Y - mu_y) + mu_y)
        at = 0
        for k, (train, test) in enumerate(splits):
            pred, at = preds[at:at + len(test)], at + len(test)
            rs.append(pearson_columns(pred, Y_np[test]))
            if pooled is not None:
                pooled[test], folds[test] = pred, k
    R = np.vstack(rs)
    with np.errstate(all="ignore"):
        valid = np.isfinite(R)
        r = np.where(valid.any(0), np.nansum(R, 0) / np.maximum(valid.sum(0), 1), np.nan)
    res = RegressionResult(r=r, alpha=np.mean(chosen, 0))
    if keep_predictions:
        res.predictions, res.folds = pooled, folds
    return res


def _choose(ridge: _Ridge, Y: torch.Tensor, alphas: np.ndarray, criterion: str, Z: torch.Tensor | None = None) -> np.ndarray:
    """Alpha per target unit: the grid value with the least leave-one-out (or GCV) error; ties go to the smaller."""
    if alphas.size == 1:
        return np.full(Y.shape[1], alphas[0])
    errors = ridge.loo_errors(Y - Y.mean(0), alphas, criterion=criterion, Z=Z)
    return alphas[_np(torch.argmin(errors, 0))]


def _np(T: torch.Tensor) -> np.ndarray:
    return T.detach().cpu().to(torch.float64).numpy() if T.is_floating_point() else T.detach().cpu().numpy()
