"""Representational similarity analysis (RSA).

A representational dissimilarity matrix (RDM) holds, for every pair of stimuli, how different
their response patterns are. Two representations are compared by correlating the upper
triangles of their RDMs (Kriegeskorte et al. 2008).

RDMs (``rdm=``):

- ``"correlation"``: 1 - Pearson r between the two stimuli's patterns across units (the
  default; the mouse paper and Brain-Score use it);
- ``"euclidean"``: the Euclidean distance between patterns (not squared, not normalised --
  rsatoolbox's "euclidean" is squared and divided by the number of channels, which changes
  nothing for Spearman comparisons but does for Pearson);
- ``"cosine"``: 1 - cosine similarity of the patterns.

Every RDM comes from a Gram matrix of the patterns, so a layer's RDM can be formed from the
same streaming statistics as CKA, and all layer pairs come out of one matrix product of
standardised (for Spearman: ranked, then standardised) RDM vectors.

Comparisons (``compare=``): ``"pearson"`` or ``"spearman"`` on the upper triangles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IdsimError
from ..featureset import FeatureSet, Plan
from ..gram import pattern_gram
from ..schema import MetricOptions, one_of, opt
from .base import SOURCE, TARGET, LayerScores, Metric
from .cka import _as_2d

RDMS = ("correlation", "euclidean", "cosine")
COMPARES = ("pearson", "spearman")


def check(rdm: str, compare: str) -> None:
    if rdm not in RDMS:
        raise IdsimError(f"rdm={rdm!r}; valid: {', '.join(RDMS)}")
    if compare not in COMPARES:
        raise IdsimError(f"compare={compare!r}; valid: {', '.join(COMPARES)}")


def gram_kind(rdm: str) -> str:
    """Which Gram matrix of the patterns an RDM needs: row-centred, column-centred, or raw."""
    return {"correlation": "row", "euclidean": "column", "cosine": "raw"}[rdm]


def rdm_from_gram(G: np.ndarray, rdm: str) -> np.ndarray:
    """Condensed RDM (upper triangle, row-major, as ``scipy.spatial.distance.pdist``) from a Gram matrix.

    ``G`` must be the Gram of row-centred patterns for ``"correlation"``, of any column-shifted
    patterns for ``"euclidean"`` (distances ignore a common shift), and of raw patterns for
    ``"cosine"``. Patterns with zero norm give nan (correlation and cosine are undefined there).
    """
    G = np.asarray(G, dtype=np.float64)
    i, j = np.triu_indices(G.shape[0], k=1)
    d = np.diag(G)
    if rdm == "euclidean":
        return np.sqrt(np.clip(d[i] + d[j] - 2.0 * G[i, j], 0.0, None))
    if rdm not in ("correlation", "cosine"):
        raise IdsimError(f"rdm={rdm!r}; valid: {', '.join(RDMS)}")
    norm = np.sqrt(np.clip(d, 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = G[i, j] / (norm[i] * norm[j])
    sim[(norm[i] == 0) | (norm[j] == 0)] = np.nan
    return 1.0 - np.clip(sim, -1.0, 1.0)


def rdm(X, rdm: str = "correlation") -> np.ndarray:
    """Condensed RDM of the stimuli (rows) of X."""
    check(rdm, "pearson")
    return rdm_from_gram(pattern_gram(_as_2d(X, "X"), gram_kind(rdm)), rdm)


def _standardised(v: np.ndarray, compare: str) -> np.ndarray:
    """Centred, unit-norm RDM vector (ranked first for Spearman); nan if the RDM is constant or undefined."""
    v = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        return np.full(v.size, np.nan)
    if compare == "spearman":
        from scipy.stats import rankdata

        v = rankdata(v)
    v = v - v.mean()
    norm = np.sqrt(v @ v)
    return v / norm if norm > 1e-12 * max(1.0, float(np.abs(v).max(initial=0.0))) * np.sqrt(v.size) else np.full(v.size, np.nan)


def compare_rdms(a: np.ndarray, b: np.ndarray, compare: str = "pearson") -> float:
    """Pearson or Spearman correlation of two condensed RDMs."""
    check("correlation", compare)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise IdsimError(f"condensed RDMs must be 1-D and of one length, got {a.shape} and {b.shape}")
    return float(_standardised(a, compare) @ _standardised(b, compare))


def rsa(X, Y, rdm: str = "correlation", compare: str = "pearson") -> float:
    """RSA score of two representations of the same stimuli (rows): the correlation of their RDMs."""
    check(rdm, compare)
    X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise IdsimError(f"X and Y must have the same stimuli (rows): {X.shape[0]} vs {Y.shape[0]}")
    if X.shape[0] < 3:
        raise IdsimError(f"RSA needs at least 3 stimuli (2 stimulus pairs), got {X.shape[0]}")
    kind = gram_kind(rdm)
    return compare_rdms(rdm_from_gram(pattern_gram(X, kind), rdm), rdm_from_gram(pattern_gram(Y, kind), rdm), compare)


def rsa_matrix(source_rdms: list[np.ndarray], target_rdms: list[np.ndarray], compare: str = "pearson") -> np.ndarray:
    """RSA for every source x target pair of condensed RDMs, as one matrix product."""
    check("correlation", compare)
    S = np.stack([_standardised(v, compare) for v in source_rdms])
    T = np.stack([_standardised(v, compare) for v in target_rdms])
    return S @ T.T


def _weighted_ranks(V: np.ndarray, groups: list[np.ndarray], W: np.ndarray) -> np.ndarray:
    """(b, L, p): the average rank of every pair's value in the multiset where it appears W[b, pair] times.

    ``groups[l]``: each pair's index among layer l's sorted distinct values (ties share one).
    """
    import scipy.sparse as sp

    out = np.empty((W.shape[0], len(V), V.shape[1]))
    for layer, g in enumerate(groups):
        onehot = sp.csr_matrix((np.ones(g.size), (np.arange(g.size), g)), shape=(g.size, int(g.max()) + 1))
        wg = np.asarray((onehot.T @ W.T).T)          # (b, distinct values): each value's total weight
        out[:, layer] = (np.cumsum(wg, 1) - wg + (wg + 1) / 2)[:, g]
    return out


def rsa_bootstrap(source_rdms: list[np.ndarray], target_rdms: list[np.ndarray], resamples: np.ndarray,
                  compare: str = "pearson", chunk_bytes: int = 256 * 2**20) -> np.ndarray:
    """RSA of every layer pair on each resample of the stimuli: (n_resamples, n_source, n_target).

    A resample compares the RDM entries of the image pairs it draws: the pair of images a, b
    appears c_a c_b times (c: how often each image is drawn); pairs of a resampled image with its
    own copy are left out. So each resample is a weighted Pearson (or, on weighted average ranks,
    Spearman) correlation of the RDM vectors, computed for all layers at once from the weights.
    """
    from .cka import resample_counts

    S, T = np.stack(source_rdms).astype(np.float64), np.stack(target_rdms).astype(np.float64)
    n = int(round((1 + np.sqrt(1 + 8 * S.shape[1])) / 2))
    I, J = np.triu_indices(n, k=1)
    spearman = compare == "spearman"
    if spearman:
        sg = [np.unique(v, return_inverse=True)[1] for v in S]
        tg = [np.unique(v, return_inverse=True)[1] for v in T]
    out = np.empty((len(resamples), len(S), len(T)))
    per = S.shape[1] * 8 * (3 + (len(S) + len(T) if spearman else 0))
    chunk = max(1, chunk_bytes // per)
    for c0 in range(0, len(resamples), chunk):
        C = resample_counts(resamples[c0:c0 + chunk], n)
        W = C[:, I] * C[:, J]                          # (b, pairs)
        tot = W.sum(1)
        if spearman:
            RS, RT = _weighted_ranks(S, sg, W), _weighted_ranks(T, tg, W)
            cS = RS - (np.einsum("bp,blp->bl", W, RS) / tot[:, None])[:, :, None]
            cT = RT - (np.einsum("bp,blp->bl", W, RT) / tot[:, None])[:, :, None]
            wS = cS * W[:, None, :]
            num = wS @ cT.transpose(0, 2, 1)
            vs, vt = np.einsum("bip,bip->bi", wS, cS), np.einsum("bp,bjp,bjp->bj", W, cT, cT)
        else:
            ms, mt = (W @ S.T) / tot[:, None], (W @ T.T) / tot[:, None]
            num = np.einsum("bp,ip,jp->bij", W, S, T, optimize=True) - tot[:, None, None] * ms[:, :, None] * mt[:, None, :]
            vs = np.einsum("bp,ip,ip->bi", W, S, S) - tot[:, None] * ms**2
            vt = np.einsum("bp,jp,jp->bj", W, T, T) - tot[:, None] * mt**2
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c0:c0 + chunk] = num / np.sqrt(vs[:, :, None] * vt[:, None, :])
    return out


# --------------------------------------------------------------------------- the metric family


@dataclass
class Options(MetricOptions):
    """``metric=rsa``."""

    name: str = "rsa"
    kind: str = "rsa"
    rdm: str = opt("correlation", ", ".join(RDMS) + " (1 - Pearson r between patterns, Euclidean distance,"
                                                 " 1 - cosine)", one_of(*RDMS))
    compare: str = opt("pearson", "pearson (the mouse paper) or spearman (Brain-Score)", one_of(*COMPARES))


class RSA(Metric):
    """RSA of every source x target layer pair: each layer's RDM is formed here from its pattern Gram."""

    kind = "rsa"
    Options = Options

    def plan(self, role: str, unit_ratio: float = 1.0, seed: int = 0) -> Plan:
        # an RDM is defined on the whole response pattern: every sampled unit counts, constant or not
        # (as np.corrcoef on the raw responses); only the target's units are sampled
        return Plan(grams=(gram_kind(self.options.rdm),), unit_ratio=unit_ratio if role == TARGET else 1.0, seed=seed)

    def rdms(self, features: FeatureSet, role: str) -> list[np.ndarray]:
        kind = gram_kind(self.options.rdm)
        return [rdm_from_gram(G, self.options.rdm) for G in self._grams(features, kind, self.name, role)]

    def score(self, source: FeatureSet, target: FeatureSet, seed: int = 0, device=None,
              resamples: np.ndarray | None = None) -> LayerScores:
        S, T = self.rdms(source, SOURCE), self.rdms(target, TARGET)
        boot = None if resamples is None else rsa_bootstrap(S, T, resamples, compare=self.options.compare)
        return LayerScores(rsa_matrix(S, T, compare=self.options.compare), boot=boot)
