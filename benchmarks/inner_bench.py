"""The inner loops behind the floor benchmark's remaining overhead, each against its reference in the same run.

At the shapes of the default job (150 images; the ResNet-18 target's 9 layers x 3,000 scored units; a
150,528-unit layer projected to the JL dimension; batches of 32):

1. the regression bootstrap of one source layer (200 resamples, 10 folds): idsim's compiled pass
   (``idsim.kernels``) against the same arithmetic as whole-array torch operations (what
   idsim did before);
2. leave-one-out predictions at one alpha: idsim's residual map (one n x n x units product) against
   the two products through the responses' eigen-coordinates;
3. 10-fold predictions at one alpha: one product with the stacked fold maps against per-fold
   eigen-coordinates and predictions;
4. the sparse projection of one batch: idsim's CPU path (SciPy, one batch slice per core) against
   torch's CSR kernel;
5. one float64 Gram chunk: the blocks on and below the diagonal against the full product; a whole
   layer's Gram in chunks of 16 MB (which stay in the caches) against 64 MB;
6. the per-unit minima and maxima of one batch (which units are constant): ``UnitStats``'s two
   reductions against ``torch.aminmax``;
7. the leave-one-out errors that choose each unit's alpha on one training fold (the default grid of 8):
   one product per alpha against the 8 alphas' factors stacked into one product;
8. the bootstrap of 4 source layers at once (they share the responses' sums), per layer, against one
   layer at a time;
9. the bootstrap medians of one source layer (200 resamples x 27,000 units, some units without a
   score): a compiled selection per row against a full sort of the rows with gaps (the code before
   d04e32d);
10. drawing the sparse projection matrix of VGG11's first ReLU (3,211,264 features): a sort per
   column and an adaptive re-sort after redraws, against sorting the whole array every round (the
   previous code; the same matrix).

Every row checks that both sides agree. ``python benchmarks/inner_bench.py [--units 27000]``
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from idsim.metrics import _ridge
from idsim.reduce import SparseProjection, jl_dim


def best_of(f, repeat: int = 3) -> float:
    f()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def bootstrap_arrays(P, Y, folds, counts, cancel=_ridge._CANCEL):
    """The reference: per fold, one GEMM for the weighted sums, then whole (resamples x units) array passes."""
    B, m = counts.shape[0], P.shape[1]
    total, n_ok = torch.zeros((B, m), dtype=torch.float64), torch.zeros((B, m), dtype=torch.float64)
    for k in np.unique(folds[folds >= 0]):
        rows = folds == k
        Pk = torch.from_numpy(P[rows] - P[rows].mean(0))
        Yk = torch.from_numpy(Y[rows] - Y[rows].mean(0))
        C = torch.from_numpy(counts[:, rows].astype(np.float64))
        W = C.sum(1, keepdim=True)
        sp, spp, spy, sy, syy = (C @ torch.cat([Pk, Pk * Pk, Pk * Yk, Yk, Yk * Yk], 1)).split(m, 1)
        spw = sp / W
        vp, vy = spp - sp * spw, syy - sy * sy / W
        ok = (vp > cancel * spp) & (vy > cancel * syy) & (W >= 2)
        r = (spy - spw * sy) / (vp * vy).sqrt()
        ok &= torch.isfinite(r)
        total += r.masked_fill(~ok, 0.0)
        n_ok += ok
    return (total / n_ok).masked_fill(n_ok == 0, float("nan")).numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", type=int, default=27000, help="scored target units (default: 9 layers x 3,000)")
    p.add_argument("--n", type=int, default=150, help="images")
    a = p.parse_args(argv)
    n, m, B = a.n, a.units, 200
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((n, m))
    X = rng.standard_normal((n, 4295))
    P = 0.3 * Y + rng.standard_normal((n, m))
    folds = np.arange(n) % 10
    rng.shuffle(folds)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(B)])
    rows = []

    targets = _ridge.BootstrapTargets(Y, folds, counts)
    ours = _ridge.bootstrap_r(P, targets)
    ref = bootstrap_arrays(P, Y, folds, counts)
    agree = np.nanmax(np.abs(ours - ref)) if np.isfinite(ours).any() else 0.0
    rows.append(("regression bootstrap, one source layer", best_of(lambda: _ridge.bootstrap_r(P, targets)),
                 best_of(lambda: bootstrap_arrays(P, Y, folds, counts), 2), agree))

    layers = [P] + [0.3 * Y + rng.standard_normal((n, m)) for _ in range(3)]
    together = _ridge.bootstrap_r(layers, targets)
    agree = max(np.nanmax(np.abs(together[g] - _ridge.bootstrap_r(x, targets))) for g, x in enumerate(layers))
    rows.append(("regression bootstrap, 4 source layers at once (per layer), against one at a time",
                 best_of(lambda: _ridge.bootstrap_r(layers, targets)) / 4,
                 best_of(lambda: [_ridge.bootstrap_r(x, targets) for x in layers]) / 4, agree))
    del layers, together

    def medians_full_sort(R):  # the previous code: a full sort of every row with a missing value
        med = np.full(len(R), np.nan)
        gaps = np.isnan(R).any(1)
        lo, hi = (R.shape[1] - 1) // 2, R.shape[1] // 2
        part = np.partition(R[~gaps], [lo, hi], axis=1)
        med[~gaps] = 0.5 * (part[:, lo] + part[:, hi])
        S = np.sort(R[gaps], axis=1)
        k = np.isfinite(S).sum(1)
        rows_ = np.arange(len(S))
        med[gaps] = 0.5 * (S[rows_, (k - 1) // 2] + S[rows_, k // 2])
        return med
    boot = _ridge.bootstrap_r(P, targets)
    boot[rng.random(boot.shape) < 0.001] = np.nan  # units without a score on a resample (folds drawn too thin)
    rows.append(("bootstrap medians of one source layer (200 x 27,000, gaps in most rows)",
                 best_of(lambda: _ridge.nanmedian_rows(boot)), best_of(lambda: medians_full_sort(boot)),
                 float(np.nanmax(np.abs(_ridge.nanmedian_rows(boot) - medians_full_sort(boot))))))

    from idsim.reduce import sparse_projection_matrix

    def matrix_sorting_all(n_features, n_components, seed):  # the previous code: the whole array sorted each round
        density = 1 / np.sqrt(n_features)
        g = np.random.default_rng([seed, n_features, n_components])
        counts_ = g.binomial(n_features, density, size=n_components)
        key = np.repeat(np.arange(n_components, dtype=np.int64), counts_) * n_features + \
            g.integers(0, n_features, size=int(counts_.sum()))
        while True:
            key.sort()
            dup = np.flatnonzero(key[1:] == key[:-1]) + 1
            if not dup.size:
                return key % n_features
            key[dup] = (key[dup] // n_features) * n_features + g.integers(0, n_features, size=dup.size)
    wide_p, q_jl = 64 * 224 * 224, jl_dim(n)
    same = np.array_equal(sparse_projection_matrix(wide_p, q_jl, 0).indices, matrix_sorting_all(wide_p, q_jl, 0))
    rows.append((f"sparse projection matrix, {wide_p:,} x {q_jl:,} (the same matrix: {same})",
                 best_of(lambda: sparse_projection_matrix(wide_p, q_jl, 0), 2),
                 best_of(lambda: matrix_sorting_all(wide_p, q_jl, 0), 2), 0.0 if same else float("nan")))

    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    ridge = _ridge._Ridge(Xt)
    loo = lambda: torch.addmm(Yt, ridge.loo_operator(1.0), Yt - Yt.mean(0), alpha=-1.0)  # noqa: E731
    two = lambda: ridge.loo_predictions(Yt, np.ones(m), np.array([1.0]))  # noqa: E731
    rows.append(("leave-one-out predictions, one alpha", best_of(loo), best_of(two), float((loo() - two()).abs().max())))

    def kfold_maps():
        return _ridge.fit_predict_cv(X, Y, cv=10, alphas=[1.0], standardize=True, keep_predictions=True).predictions

    def kfold_coords():  # the fold loop through eigen-coordinates (a grid of two equal alphas takes that path)
        out = np.empty_like(Y)
        for train, test in _ridge._splits(10, n, 0):
            mu, sd = _ridge.zscore(X, train)
            r = _ridge._Ridge(torch.from_numpy((X[train] - mu) / sd))
            Ytr = Yt[train]
            Z = r.coords(Ytr - Ytr.mean(0))
            out[test] = r.predict(torch.from_numpy((X[test] - mu) / sd), Ytr, np.ones(m), np.array([1.0]), Z=Z).numpy()
        return out
    rows.append(("10-fold predictions, one alpha", best_of(kfold_maps), best_of(kfold_coords),
                 float(np.abs(kfold_maps() - kfold_coords()).max())))

    grid = np.array(_ridge.DEFAULT_ALPHAS)
    train = n - n // 10
    fold = _ridge._Ridge(torch.from_numpy(X[:train]))
    Yc = Yt[:train] - Yt[:train].mean(0)
    Zf = fold.coords(Yc)

    def stacked():
        parts = []
        for alpha in grid:
            shrink, h, _ = fold._shrink(float(alpha))
            parts.append(((1.0 / (1.0 - h))[:, None] * fold.B) * shrink[None, :])
        R = torch.cat(parts) @ Zf
        return R.view(len(grid), train, -1).square().sum(1) / fold.n
    per_alpha = lambda: fold.loo_errors(Yc, grid, Z=Zf)  # noqa: E731
    rows.append((f"leave-one-out errors of the {grid.size}-alpha grid, one fold", best_of(per_alpha), best_of(stacked),
                 float(((per_alpha() - stacked()).abs() / stacked()).max())))  # relative: errors span decades

    width, q = 150528, 4295
    proj = SparseProjection(n, width, q, seed=0, layer="l")
    acts = torch.randn(32, width)
    t = proj._t.tocsr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        csr = torch.sparse_csr_tensor(torch.from_numpy(t.indptr.astype(np.int64)), torch.from_numpy(t.indices.astype(np.int64)),
                                      torch.from_numpy(t.data), size=t.shape)
    ours_p = best_of(lambda: proj.update(acts, slice(0, 32)), 5)
    ref_p = best_of(lambda: (csr @ acts.T).T, 5)
    rows.append(("sparse projection of one batch (32 x 150,528 -> 4,295)", ours_p, ref_p,
                 float(np.abs(proj.data[:32] - (csr @ acts.T).T.numpy()).max())))

    # the widest layer of the default job (VGG11's first ReLU, past exact_max_mb): against the previous code,
    # SciPy's compressed-column product on one half of the batch per thread (it copies its half transposed)
    from concurrent.futures import ThreadPoolExecutor

    wide = SparseProjection(n, 64 * 224 * 224, 5920, seed=0, layer="wide", purpose="gram")
    big = torch.relu(torch.randn(32, 64 * 224 * 224))
    csc = wide._t.tocsc()
    with ThreadPoolExecutor(2) as pool:
        def scipy_halves():
            a = big.numpy()
            return np.concatenate(list(pool.map(lambda r: (csc @ a[r].T).T, (slice(0, 16), slice(16, 32)))))
        rows.append(("sparse projection of one batch (32 x 3,211,264 -> 5,920), against SciPy in 2 threads",
                     best_of(lambda: wide.update(big, slice(0, 32)), 3), best_of(scipy_halves, 3),
                     float(np.abs(wide.data[:32] - scipy_halves()).max())))
    del wide, big, csc

    b = torch.randn(n, 16 * 2**20 // (8 * n), dtype=torch.float64)  # one chunk of idsim.gram.pattern_gram
    g = torch.zeros(n, n, dtype=torch.float64)
    edges = [round(i * n / 4) for i in range(5)]

    def lower(out):
        for lo, hi in zip(edges[:-1], edges[1:]):
            out[lo:hi, :hi].addmm_(b[lo:hi], b[:hi].T)
        return out
    full = torch.zeros(n, n, dtype=torch.float64)
    check_l, check_f = torch.tril(lower(torch.zeros(n, n, dtype=torch.float64))), torch.tril(b @ b.T)
    rows.append((f"float64 Gram of one 16 MB chunk ({n} x {b.shape[1]:,})", best_of(lambda: lower(g), 5),
                 best_of(lambda: full.addmm_(b, b.T), 5), float((check_l - check_f).abs().max() / check_f.abs().max())))

    from idsim.gram import pattern_gram

    layer = torch.relu(torch.randn(n, 401408)).numpy()  # VGG11's features.9 at 150 images: 240 MB
    mean = layer.mean(0, dtype=np.float64)
    ours_g = pattern_gram(layer, "column", mean=mean)
    old_g = pattern_gram(layer, "column", mean=mean, chunk_bytes=64 * 2**20)
    rows.append((f"float64 Gram of a whole layer ({n} x 401,408), 16 MB chunks against 64 MB",
                 best_of(lambda: pattern_gram(layer, "column", mean=mean), 3),
                 best_of(lambda: pattern_gram(layer, "column", mean=mean, chunk_bytes=64 * 2**20), 3),
                 float(np.abs(ours_g - old_g).max() / np.abs(old_g).max())))
    del layer

    from idsim.reduce import UnitStats

    relu = torch.relu(torch.randn(32, 64 * 224 * 224))
    stats = UnitStats(np.arange(relu.shape[1]))

    def ranges():
        stats._min = None
        stats.update(relu, slice(0, 32))
        return stats._min, stats._max
    lo, hi = torch.aminmax(relu, dim=0)
    rows.append(("per-unit minima and maxima of one batch (32 x 3,211,264)", best_of(ranges, 5),
                 best_of(lambda: torch.aminmax(relu, dim=0), 5),
                 float(max((ranges()[0] - lo).abs().max(), (ranges()[1] - hi).abs().max()))))
    del relu

    print(f"# inner loops: {n} images, {m} target units, {torch.get_num_threads()} torch threads")
    print("| step | idsim (s) | reference (s) | speed-up | largest difference |\n|---|---:|---:|---:|---:|")
    for name, ours_s, ref_s, diff in rows:
        print(f"| {name} | {ours_s:.4f} | {ref_s:.4f} | {ref_s / ours_s:.1f}x | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
