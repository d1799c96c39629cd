"""Linear centred kernel alignment (CKA).

Biased CKA (Kornblith et al. 2019) is ``<Kc, Lc>_F / (||Kc||_F ||Lc||_F)`` for the centred
linear Gram matrices ``Kc = Xc Xc^T`` of column-centred features. Debiased CKA replaces each
HSIC by the unbiased U-statistic of Song et al. (2012); with few stimuli the biased form is
strongly inflated (about 0.67 on independent Gaussian data at n=50, p=100), the debiased one
stays near 0.

All-pairs scoring never repeats per-layer work: each layer's Gram is (U-)centred and
normalised once, and every source x target layer pair comes out of one matrix product.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IdsimError
from ..featureset import FeatureSet, Plan
from ..gram import centred_gram
from ..schema import MetricOptions
from .base import SOURCE, TARGET, LayerScores, Metric


def _as_2d(X, name: str) -> np.ndarray:
    X = np.asarray(X.detach().cpu().numpy() if hasattr(X, "detach") else X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise IdsimError(f"{name} must be a 2-D array (stimuli x units), got shape {X.shape}")
    return X


def u_centre(K: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """U-centre a Gram matrix (Song et al. 2012): ``<u(K), u(L)> / (n (n-3))`` is unbiased HSIC.

    Off-diagonal entries become ``K_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2))`` with the
    row sums ``r`` and total ``s`` of K with a zeroed diagonal; the diagonal becomes 0.
    ``exclude``: a boolean mask of further pairs treated like the diagonal (a bootstrap resample's
    pairs of an image with its own copy).
    """
    K = np.array(K, dtype=np.float64)
    n = K.shape[0]
    if n < 4:
        raise IdsimError(f"debiased CKA needs at least 4 stimuli, got {n}")
    np.fill_diagonal(K, 0.0)
    if exclude is not None:
        K[exclude] = 0.0
    r = K.sum(1)
    s = r.sum()
    K -= r[:, None] / (n - 2)
    K -= r[None, :] / (n - 2)
    K += s / ((n - 1) * (n - 2))
    np.fill_diagonal(K, 0.0)
    if exclude is not None:
        K[exclude] = 0.0
    return K


def double_centre(K: np.ndarray) -> np.ndarray:
    """``H K H`` without forming H (a no-op on Grams of column-centred features)."""
    K = np.asarray(K, dtype=np.float64)
    r = K.mean(1)
    return K - r[:, None] - r[None, :] + r.mean()


def _normalised(gram: np.ndarray, debiased: bool) -> np.ndarray:
    K = u_centre(gram) if debiased else double_centre(gram)
    norm = np.sqrt(max(float(np.vdot(K, K)), 0.0))
    return (K / norm).ravel() if norm > 0 else np.full(K.size, np.nan)


def cka_from_grams(K: np.ndarray, L: np.ndarray, debiased: bool = False) -> float:
    """CKA of two (not necessarily centred) linear Gram matrices over the same stimuli."""
    K, L = np.asarray(K), np.asarray(L)
    if K.shape != L.shape or K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise IdsimError(f"Gram matrices must be square and of one shape, got {K.shape} and {L.shape}")
    return float(_normalised(K, debiased) @ _normalised(L, debiased))


def linear_cka(X, Y, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same stimuli (rows), biased or debiased."""
    X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise IdsimError(f"X and Y must have the same stimuli (rows): {X.shape[0]} vs {Y.shape[0]}")
    return cka_from_grams(centred_gram(X), centred_gram(Y), debiased=debiased)


def cka_matrix(source_grams: list[np.ndarray], target_grams: list[np.ndarray], debiased: bool = False) -> np.ndarray:
    """CKA for every source x target pair of Gram matrices, as one matrix product."""
    S = np.stack([_normalised(K, debiased) for K in source_grams])
    T = np.stack([_normalised(K, debiased) for K in target_grams])
    return S @ T.T


def resample_counts(resamples: np.ndarray, n: int) -> np.ndarray:
    """(B, n) float64: how often each resample draws each of the n stimuli."""
    return np.stack([np.bincount(r, minlength=n) for r in np.asarray(resamples)]).astype(np.float64)


def _dot(C: np.ndarray, X: np.ndarray, Y: np.ndarray, pairs: bool) -> np.ndarray:
    """sum_n C[b,n] X[b,i,n] Y[b,j,n]: (b, i, j) for every pair, or (b, i) for i = j."""
    if pairs:
        return (X * C[:, None, :]) @ Y.transpose(0, 2, 1)
    return np.einsum("bn,bin,bin->bi", C, X, Y)


def _gc(C: np.ndarray, G: np.ndarray) -> np.ndarray:
    """(b, L, n): every layer's G c for every resample, as one GEMM (Grams are symmetric)."""
    L, n, _ = G.shape
    return (C @ G.transpose(1, 0, 2).reshape(n, L * n)).reshape(len(C), L, n)


def _t1(C: np.ndarray, A: np.ndarray, B: np.ndarray | None) -> np.ndarray:
    """c^T (A_i o B_j) c for every resample: (b, i, j); with ``B`` None, (b, i) for A_i o A_i."""
    if B is None:
        return np.einsum("blm,bm->bl", _gc(C, A * A), C)
    out = np.empty((C.shape[0], len(A), len(B)))
    for i in range(len(A)):
        out[:, i, :] = np.einsum("bjm,bm->bj", _gc(C, A[i][None] * B), C)
    return out


def _hsic(C: np.ndarray, A: np.ndarray, B: np.ndarray | None, sa: dict, sb: dict, debiased: bool) -> np.ndarray:
    """HSIC of every layer pair (A_i, B_j) on every resample, up to a factor common to all pairs.

    ``sa``/``sb`` hold each layer's per-resample vectors: ``k = G c`` (biased) or the U-centring's
    row terms (debiased). Without a second set (``B`` None) only the pairs (i, i) of ``A``.
    """
    pairs = B is not None
    N = float(C.shape[1])
    t1 = _t1(C, A, B)
    if pairs:
        col = lambda x: x[:, :, None]  # noqa: E731 - a per-layer value of A, against every layer of B
        row = lambda x: x[:, None, :]  # noqa: E731
    else:
        col = row = lambda x: x  # noqa: E731
    if not debiased:
        # weighted double centring: sum_ab c_a c_b A_ab B~_ab = t1 - 2/N sum_a c_a k_a l_a + (c.k)(c.l)/N^2
        return t1 - 2.0 / N * _dot(C, sa["k"], sb["k"], pairs) + col(sa["ck"]) * row(sb["ck"]) / N**2
    # U-centring of the resampled Gram with the pairs of an image with its own copy left out (see u_centre):
    # with rho = G° c (G° the Gram without its diagonal), alpha = rho / (N - 2), beta = c.rho / ((N-1)(N-2)),
    # sum_{a != b} c_a c_b (A°_ab - alpha_a - alpha_b + beta)(B°_ab - gamma_a - gamma_b + delta), expanded
    A_b, B_b = col(sa["beta"]), row(sb["beta"])
    full = (t1 - 2 * _dot(C, sa["rho"], sb["alpha"], pairs) - 2 * _dot(C, sa["alpha"], sb["rho"], pairs)
            + B_b * col(sa["S"]) + A_b * row(sb["S"]) + 2 * N * _dot(C, sa["alpha"], sb["alpha"], pairs)
            + 2 * col(sa["ca"]) * row(sb["ca"]) - 2 * N * B_b * col(sa["ca"]) - 2 * N * A_b * row(sb["ca"])
            + N**2 * A_b * B_b)
    diag = _dot(C * C, sa["beta"][..., None] - 2 * sa["alpha"], sb["beta"][..., None] - 2 * sb["alpha"], pairs)
    return full - diag


def _layer_terms(C: np.ndarray, G: np.ndarray, debiased: bool) -> dict:
    """Per-resample vectors of every layer's Gram ``G`` (L, n, n) for :func:`_hsic`."""
    k = _gc(C, G)                                                # G c
    if not debiased:
        return {"k": k, "ck": np.einsum("bn,bln->bl", C, k)}
    N = float(C.shape[1])
    S = np.einsum("bn,bln->bl", C, k)
    alpha, beta = k / (N - 2), S / ((N - 1) * (N - 2))
    return {"rho": k, "S": S, "alpha": alpha, "beta": beta, "ca": np.einsum("bn,bln->bl", C, alpha)}


def cka_bootstrap(source_grams: list[np.ndarray], target_grams: list[np.ndarray], resamples: np.ndarray,
                  debiased: bool = False, chunk_bytes: int = 256 * 2**20) -> np.ndarray:
    """CKA of every layer pair on each resample of the stimuli: (n_resamples, n_source, n_target).

    Biased CKA is exactly CKA of the resampled features (their Gram is the rows and columns drawn,
    centred again). For debiased CKA the pairs of an image with its own copy are left out like
    the diagonal (:func:`u_centre` with ``exclude``); counting them would drift the resampled
    scores towards the biased form. Nothing n x n is built per resample: a resample is a vector of
    counts c, and every term is a product with c (c^T (K o L) c, K c...), so B resamples cost
    about B n^2 per layer pair, as GEMMs.
    """
    S, T = np.stack(source_grams).astype(np.float64), np.stack(target_grams).astype(np.float64)
    n = S.shape[-1]
    if debiased:  # the U-statistic never uses a stimulus with itself: diagonals out (copies: in _hsic)
        S, T = S.copy(), T.copy()
        S[:, np.arange(n), np.arange(n)] = 0.0
        T[:, np.arange(n), np.arange(n)] = 0.0
    out = np.empty((len(resamples), len(S), len(T)))
    chunk = max(1, chunk_bytes // (8 * 8 * (len(S) + len(T)) * n))
    for c0 in range(0, len(resamples), chunk):
        C = resample_counts(resamples[c0:c0 + chunk], n)
        sa, sb = _layer_terms(C, S, debiased), _layer_terms(C, T, debiased)
        num = _hsic(C, S, T, sa, sb, debiased)
        ss, tt = _hsic(C, S, None, sa, sa, debiased), _hsic(C, T, None, sb, sb, debiased)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c0:c0 + chunk] = num / np.sqrt(np.clip(ss, 0, None)[:, :, None] * np.clip(tt, 0, None)[:, None, :])
    return out


# --------------------------------------------------------------------------- the metric family


@dataclass
class Options(MetricOptions):
    """``metric=cka`` / ``metric=cka_debiased``."""

    name: str = "cka"
    kind: str = "cka"
    debiased: bool = False     # Song et al.'s unbiased HSIC (needs >= 4 images); false: the biased form


class CKA(Metric):
    """Linear CKA of every source x target layer pair, from each layer's column-centred Gram."""

    kind = "cka"
    Options = Options

    def plan(self, role: str, unit_ratio: float = 1.0, seed: int = 0) -> Plan:
        if role == TARGET:
            return Plan(grams=("column",), unit_ratio=unit_ratio, drop_constant=True, seed=seed)
        return Plan(grams=("column",), seed=seed)

    def check(self, n_images: int) -> None:
        super().check(n_images)
        if self.options.debiased and n_images < 4:
            raise IdsimError(f"{self.name}: debiased CKA needs at least 4 probe images, got {n_images}")

    def score(self, source: FeatureSet, target: FeatureSet, seed: int = 0, device=None,
              resamples: np.ndarray | None = None) -> LayerScores:
        S, T = self._grams(source, "column", self.name, SOURCE), self._grams(target, "column", self.name, TARGET)
        boot = None if resamples is None else cka_bootstrap(S, T, resamples, debiased=self.options.debiased)
        return LayerScores(cka_matrix(S, T, debiased=self.options.debiased), boot=boot)
