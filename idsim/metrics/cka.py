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


def _resampled(grams: np.ndarray, idx: np.ndarray, debiased: bool) -> np.ndarray:
    """(chunk, layers, n*n) normalised centred Grams of each resample (rows/columns ``idx``) of each layer."""
    K = grams[:, idx[:, :, None], idx[:, None, :]].transpose(1, 0, 2, 3)  # (chunk, layers, n, n)
    n = idx.shape[1]
    if debiased:  # U-centring; pairs of an image with its own copy are left out like the diagonal
        exclude = (idx[:, :, None] == idx[:, None, :])[:, None]
        K = np.where(exclude, 0.0, K)
        r = K.sum(-1)
        s = r.sum(-1)
        K = K - r[..., :, None] / (n - 2) - r[..., None, :] / (n - 2) + (s / ((n - 1) * (n - 2)))[..., None, None]
        K = np.where(exclude, 0.0, K)
    else:  # double centring: the Gram of the resample's column-centred features
        r = K.mean(-1)
        K = K - r[..., :, None] - r[..., None, :] + r.mean(-1)[..., None, None]
    K = K.reshape(K.shape[0], K.shape[1], -1)
    norm = np.sqrt(np.einsum("clk,clk->cl", K, K))
    with np.errstate(invalid="ignore", divide="ignore"):
        return K / norm[..., None]


def cka_bootstrap(source_grams: list[np.ndarray], target_grams: list[np.ndarray], resamples: np.ndarray,
                  debiased: bool = False, chunk_bytes: int = 256 * 2**20) -> np.ndarray:
    """CKA of every layer pair on each resample of the stimuli: (n_resamples, n_source, n_target).

    A resample's Gram is the rows and columns it draws (with repeats) of each layer's Gram,
    centred again (biased CKA: exactly CKA of the resampled features); for debiased CKA the
    pairs of an image with its own copy are left out like the diagonal.
    """
    S, T = np.stack(source_grams), np.stack(target_grams)
    out = np.empty((len(resamples), len(S), len(T)))
    n = S.shape[-1]
    chunk = max(1, chunk_bytes // (8 * (len(S) + len(T)) * n * n))
    for c in range(0, len(resamples), chunk):
        idx = resamples[c:c + chunk]
        out[c:c + chunk] = _resampled(S, idx, debiased) @ _resampled(T, idx, debiased).transpose(0, 2, 1)
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
