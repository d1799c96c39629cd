"""Compiled loops (numba) for the few places where array operations would pass over memory many times,
or would need large temporary arrays.

Compiled on first use and cached next to this file (``cache=True``; numba falls back to its own
cache folder where this one is read-only), so a job pays the few seconds of compilation once per
installation.
"""
from __future__ import annotations

import numba
import numpy as np


def match_torch_threads() -> None:
    """The compiled loops use as many threads as torch (which follows the CPUs a job was given, e.g. SLURM's
    ``cpus_per_task``; numba's default is every core of the machine). Results do not depend on it."""
    import torch

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


@numba.njit(parallel=True, cache=True, boundscheck=False, fastmath={"contract"}, error_model="numpy")
def bootstrap_pearson(P, Y, C, W, starts, cancel, out):  # pragma: no cover - compiled
    """Weighted held-out Pearson r per resample and unit, averaged over folds, for several source layers at once.

    ``P`` (layers, units, images), ``Y`` (units, images): predictions and responses, images in fold
    order, each fold centred; ``C`` (images, resamples): how often each resample draws each image;
    ``W`` (folds, resamples): the fold's drawn total; ``starts``: the folds' first rows (and the
    end). ``out`` (layers, resamples, units) gets the mean over folds of r (NaN where no fold gives
    one). A fold gives no r when fewer than two images are drawn or when either side's weighted sum
    of squares about its weighted mean is below ``cancel`` times its weighted sum of squares
    (constant on the drawn images: what is left is rounding). The responses' two weighted sums of a
    unit and fold are made once for all the layers (two of every layer's five sums per image).
    """
    L, m, B = P.shape[0], P.shape[1], C.shape[1]
    for j in numba.prange(m):
        tot = np.zeros((L, B))
        cnt = np.zeros((L, B))
        sp = np.empty(B)
        spp = np.empty(B)
        spy = np.empty(B)
        sy = np.empty(B)
        syy = np.empty(B)
        for k in range(len(starts) - 1):
            start = starts[k]
            stop = starts[k + 1]
            sy[:] = 0.0
            syy[:] = 0.0
            i = start
            while i + 4 <= stop:  # four images per pass over the resamples: a quarter of the sums' loads and stores
                y0, y1, y2, y3 = Y[j, i], Y[j, i + 1], Y[j, i + 2], Y[j, i + 3]
                yy0, yy1, yy2, yy3 = y0 * y0, y1 * y1, y2 * y2, y3 * y3
                for b in range(B):  # added in image order, as one image at a time: the same roundings
                    c0, c1, c2, c3 = C[i, b], C[i + 1, b], C[i + 2, b], C[i + 3, b]
                    sy[b] = sy[b] + c0 * y0 + c1 * y1 + c2 * y2 + c3 * y3
                    syy[b] = syy[b] + c0 * yy0 + c1 * yy1 + c2 * yy2 + c3 * yy3
                i += 4
            while i < stop:
                y = Y[j, i]
                yy = y * y
                for b in range(B):
                    c = C[i, b]
                    sy[b] += c * y
                    syy[b] += c * yy
                i += 1
            for g in range(L):
                sp[:] = 0.0
                spp[:] = 0.0
                spy[:] = 0.0
                i = start
                while i + 4 <= stop:
                    p0, p1, p2, p3 = P[g, j, i], P[g, j, i + 1], P[g, j, i + 2], P[g, j, i + 3]
                    pp0, pp1, pp2, pp3 = p0 * p0, p1 * p1, p2 * p2, p3 * p3
                    py0, py1 = p0 * Y[j, i], p1 * Y[j, i + 1]
                    py2, py3 = p2 * Y[j, i + 2], p3 * Y[j, i + 3]
                    for b in range(B):
                        c0, c1, c2, c3 = C[i, b], C[i + 1, b], C[i + 2, b], C[i + 3, b]
                        sp[b] = sp[b] + c0 * p0 + c1 * p1 + c2 * p2 + c3 * p3
                        spp[b] = spp[b] + c0 * pp0 + c1 * pp1 + c2 * pp2 + c3 * pp3
                        spy[b] = spy[b] + c0 * py0 + c1 * py1 + c2 * py2 + c3 * py3
                    i += 4
                while i < stop:
                    p = P[g, j, i]
                    pp = p * p
                    py = p * Y[j, i]
                    for b in range(B):
                        c = C[i, b]
                        sp[b] += c * p
                        spp[b] += c * pp
                        spy[b] += c * py
                    i += 1
                for b in range(B):
                    w = W[k, b]
                    if w < 2.0:
                        continue
                    spw = sp[b] / w
                    vp = spp[b] - sp[b] * spw
                    vy = syy[b] - sy[b] * (sy[b] / w)
                    if vp <= cancel * spp[b] or vy <= cancel * syy[b]:
                        continue
                    r = (spy[b] - spw * sy[b]) / np.sqrt(vp * vy)
                    if np.isfinite(r):
                        tot[g, b] += r
                        cnt[g, b] += 1.0
        for g in range(L):
            for b in range(B):
                out[g, b, j] = tot[g, b] / cnt[g, b] if cnt[g, b] > 0 else np.nan


@numba.njit(parallel=True, cache=True, boundscheck=False, error_model="numpy")
def nanmedian_rows(R, out):  # pragma: no cover - compiled
    """``out[i]`` = the median of row ``i`` of ``R`` without its NaN (NaN when nothing is left), as
    ``np.nanmedian(R, axis=1)``: the row's values copied out and selected in place, a row per task."""
    n, m = R.shape
    for i in numba.prange(n):
        buf = np.empty(m)
        k = 0
        for j in range(m):
            v = R[i, j]
            if not np.isnan(v):
                buf[k] = v
                k += 1
        out[i] = np.median(buf[:k]) if k > 0 else np.nan


_GROUP = 16  # batch rows per task: one AVX-512 vector of float32 per projection component


@numba.njit(parallel=True, cache=True, boundscheck=False, error_model="numpy")
def sparse_project(x, indptr, indices, data, out, block=1024):  # pragma: no cover - compiled
    """``out = x @ S`` for a sparse ``S`` (features x components) given by feature (CSR of ``S``).

    ``x`` (rows, features) float32, row-major; ``indptr``/``indices``/``data``: each feature's
    components and values; ``out`` (rows, components) float32. Every component sums over its
    features in ascending order, in float32, as SciPy's compressed-column product does, so the two
    agree bit for bit. Rows go in groups of 16 (one task each); a group's values are transposed a
    block of features at a time into a small buffer, so each non-zero of ``S`` reads 16 contiguous
    values and no temporary as large as ``x`` is made (SciPy's product copies ``x`` transposed, in
    fresh memory on every batch: 100,000 page faults per batch of VGG11's first ReLU).
    """
    n, p = x.shape
    q = out.shape[1]
    for g in numba.prange((n + _GROUP - 1) // _GROUP):
        r0 = g * _GROUP
        nr = min(n, r0 + _GROUP) - r0
        acc = np.zeros((q, _GROUP), dtype=np.float32)
        xt = np.zeros((block, _GROUP), dtype=np.float32)
        for f0 in range(0, p, block):
            nf = min(p, f0 + block) - f0
            for f in range(nf):
                for r in range(nr):
                    xt[f, r] = x[r0 + r, f0 + f]
            for f in range(nf):
                for k in range(indptr[f0 + f], indptr[f0 + f + 1]):
                    j = indices[k]
                    v = data[k]
                    for r in range(_GROUP):
                        acc[j, r] += v * xt[f, r]
        for r in range(nr):
            for j in range(q):
                out[r0 + r, j] = acc[j, r]
