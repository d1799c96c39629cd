"""Split-half reliability of neuroids and RDMs, and the noise ceilings built on it (the mouse paper's conventions).

**Neuroid reliability.** The trials (repetitions) of every stimulus are split into two halves of
equal size (a random split per seed; one repetition left out when their number is odd); each
neuroid's responses averaged within each half are correlated over stimuli (Pearson r), and r is
Spearman-Brown corrected to the full number of trials, ``2 r / (1 + r)``; the corrected values
are averaged over ``splits`` seeded random splits. The mouse paper splits its 50 trials 25/25 and
keeps neuroids with reliability >= 0.8.

**Ceilings** (what a perfect model -- the noise-free responses -- would score):

- regression: per neuroid, a noise-free model's Pearson r with the trial-averaged responses is
  ``sqrt(reliability)``; the region's ceiling is the median of ``sqrt(max(reliability, 0))``
  over the region's scored neuroids (the metric takes the median r over neuroids). Brain-Score
  divides by the corrected reliability itself (no square root), which gives larger normalised
  scores: a noise-free model would score ``1 / sqrt(reliability)`` there.
- RSA: the split-half reliability of the region's RDM -- the two halves' RDMs (the metric's own
  RDM and comparison) correlated, Spearman-Brown corrected and averaged over the splits -- and
  the ceiling is its square root, by the same argument. The mouse paper reports the uncorrected
  split-half RDM reliability ``r_half`` (explained variance ``r_half**2``); ``ceilings.csv``
  gives it as ``rdm_split_half``.
- CKA: no ceiling (NaN): there is no established convention.

``normalized_score = score / ceiling``.
"""
from __future__ import annotations

import numpy as np

from ..errors import IdsimError


def spearman_brown(r, factor: float = 2.0):
    """Reliability of a measure ``factor`` times as long: ``factor r / (1 + (factor - 1) r)``."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return factor * r / (1.0 + (factor - 1.0) * r)


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (rows: stimuli); NaN where a column is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(0)
    b = b - b.mean(0)
    ssa, ssb = np.einsum("ij,ij->j", a, a), np.einsum("ij,ij->j", b, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.einsum("ij,ij->j", a, b) / np.sqrt(ssa * ssb)
    r[(ssa <= 0) | (ssb <= 0)] = np.nan
    return r


def split_halves(n_repetitions: int, splits: int = 10, seed: int = 0, shuffle: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` pairs of disjoint, equal-size halves of the repetitions.

    ``shuffle=False``: the one split into the first and the second half (``splits`` must be 1).
    """
    if n_repetitions < 2:
        raise IdsimError(f"split-half reliability needs at least 2 repetitions (trials), got {n_repetitions}")
    if not isinstance(splits, (int, np.integer)) or splits < 1:
        raise IdsimError(f"splits must be an integer >= 1, got {splits!r}")
    h = n_repetitions // 2
    if not shuffle:
        if splits != 1:
            raise IdsimError("shuffle=False gives one split (first vs second half of the repetitions); use splits=1")
        return [(np.arange(h), np.arange(h, 2 * h))]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(splits):
        perm = rng.permutation(n_repetitions)
        out.append((np.sort(perm[:h]), np.sort(perm[h:2 * h])))
    return out


def split_half_reliability(responses, splits: int = 10, seed: int = 0, shuffle: bool = True,
                           chunk: int = 4096) -> np.ndarray:
    """Per-neuroid split-half reliability of ``responses`` (repetition × presentation × neuroid).

    Pearson r over stimuli between the two halves' trial averages, Spearman-Brown corrected
    (``2r / (1 + r)``), averaged over ``splits`` seeded random splits (module docs). NaN for a
    neuroid that is constant in a half. ``shuffle=False`` (with ``splits=1``): the first half of the
    repetitions against the second.
    """
    x = responses
    if getattr(x, "ndim", None) != 3:
        x = np.asarray(x)
        if x.ndim != 3:
            raise IdsimError(f"responses must be repetition × presentation × neuroid (3-D), got shape {x.shape}")
    halves = split_halves(x.shape[0], splits, seed, shuffle)
    n = x.shape[2]
    out = np.empty(n)
    for c in range(0, n, chunk):
        block = np.asarray(x[:, :, c:c + chunk], dtype=np.float64)
        acc = np.zeros(block.shape[2])
        for a, b in halves:
            acc += spearman_brown(pearson_columns(block[a].mean(0), block[b].mean(0)))
        out[c:c + chunk] = acc / len(halves)
    return out


def regression_ceiling(reliability) -> float:
    """Median over neuroids of ``sqrt(max(reliability, 0))``: a noise-free model's median r (module docs)."""
    rel = np.asarray(reliability, dtype=np.float64)
    rel = rel[np.isfinite(rel)]
    if rel.size == 0:
        return float("nan")
    return float(np.median(np.sqrt(np.clip(rel, 0.0, None))))


def rdm_split_half(responses, rdm: str = "correlation", compare: str = "pearson", splits: int = 10, seed: int = 0,
                   shuffle: bool = True) -> tuple[float, float]:
    """(mean uncorrected r, mean Spearman-Brown-corrected r) between the two halves' RDMs, over the splits."""
    from ..metrics.rsa import compare_rdms, rdm as make_rdm

    x = np.asarray(responses, dtype=np.float64)
    raw, corrected = [], []
    for a, b in split_halves(x.shape[0], splits, seed, shuffle):
        r = compare_rdms(make_rdm(x[a].mean(0), rdm), make_rdm(x[b].mean(0), rdm), compare)
        raw.append(r)
        corrected.append(float(spearman_brown(r)))
    return float(np.mean(raw)), float(np.mean(corrected))


def rsa_ceiling(responses, rdm: str = "correlation", compare: str = "pearson", splits: int = 10,
                seed: int = 0) -> tuple[float, float]:
    """(ceiling, uncorrected split-half r) of a region's RDM: ``sqrt`` of the corrected split-half reliability."""
    raw, corrected = rdm_split_half(responses, rdm, compare, splits, seed)
    ceiling = float(np.sqrt(corrected)) if np.isfinite(corrected) and corrected > 0 else float("nan")
    return ceiling, raw


__all__ = ["spearman_brown", "split_halves", "split_half_reliability", "regression_ceiling", "rdm_split_half",
           "rsa_ceiling", "pearson_columns"]
