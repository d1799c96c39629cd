"""Metric engine vs the straightforward reference pipeline, on realistic layer shapes.

    python benchmarks/metrics_bench.py                   # 1,000 stimuli, 10 x 10 layers of 4k-100k units
    python benchmarks/metrics_bench.py --quick           # a small run (seconds) to check the script

Synthetic activations stand in for a source model and a target model: every layer is a ReLU of
a random linear map of a shared latent (so layer pairs have graded similarities) plus noise,
with a mean offset, as real activations have. The engine is idsim's own code path (the
pipeline's sparse projection reducer, ``score_layers`` on per-layer statistics). The reference is
what a user writes with the standard libraries: per layer pair, a fresh scikit-learn
``SparseRandomProjection`` and ``RidgeCV``/``KFold`` ridge, and per-pair CKA/RSA from the
features (Kornblith et al.'s ``gram_linear``/``center_gram`` form; ``np.corrcoef`` RDMs). Both run
in float64 in this process, one after the other, and their scores are compared.

A regression reference pair costs the same whatever the target layer (every target layer has
``--units`` units), so by default the regression reference is timed on the pairs of one target
layer and multiplied by the number of target layers (``--ref-target-layers all`` times every
pair). CKA and RSA references are always timed on every pair.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch


def layer_widths(k: int, lo: int, hi: int) -> list[int]:
    return [int(round(w)) for w in np.geomspace(lo, hi, k)]


def make_layers(n: int, widths: list[int], seed: int, latent: np.ndarray) -> list[np.ndarray]:
    """float32 activations: ReLU(latent W + noise) + offset, built in column chunks."""
    rng = np.random.default_rng(seed)
    out = []
    for depth, p in enumerate(widths):
        X = np.empty((n, p), dtype=np.float32)
        mix = latent[:, : 8 + 6 * depth]  # deeper layers see more latent dimensions
        for c in range(0, p, 8192):
            w = rng.standard_normal((mix.shape[1], min(8192, p - c))).astype(np.float32)
            block = mix @ w + 0.5 * rng.standard_normal((n, w.shape[1]), dtype=np.float32)
            X[:, c:c + w.shape[1]] = np.maximum(block, 0.0) + 1.0
        out.append(X)
    return out


# ----------------------------------------------------------------------------- reference pipeline
def ref_gram_linear(x):
    return x @ x.T


def ref_center_gram(g):
    g = g.copy()
    means = g.mean(0)
    means -= means.mean() / 2
    g -= means[:, None]
    g -= means[None, :]
    return g


def ref_cka(x, y):
    gx, gy = ref_center_gram(ref_gram_linear(x)), ref_center_gram(ref_gram_linear(y))
    return gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy))


def ref_debiased_cka(x, y):
    def u(g):
        n = g.shape[0]
        g = g.copy()
        np.fill_diagonal(g, 0)
        means = g.sum(0) / (n - 2)
        means -= means.sum() / (2 * (n - 1))
        g -= means[:, None]
        g -= means[None, :]
        np.fill_diagonal(g, 0)
        return g
    gx, gy = u(ref_gram_linear(x)), u(ref_gram_linear(y))
    return gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy))


def ref_rsa(x, y):
    iu = np.triu_indices(x.shape[0], 1)
    a, b = 1 - np.corrcoef(x)[iu], 1 - np.corrcoef(y)[iu]
    return np.corrcoef(a, b)[0, 1]


def ref_regression(x, y, cv, alphas, srp_dim, seed):
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler
    from sklearn.random_projection import SparseRandomProjection

    if srp_dim is not None and x.shape[1] > srp_dim:
        x = SparseRandomProjection(srp_dim, random_state=seed).fit_transform(x)
    x = StandardScaler().fit_transform(x)
    if cv == "loo":
        m = RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True, scoring="r2").fit(x, y)
        pred = m.cv_results_[:, :, list(alphas).index(m.alpha_[0])] if len(alphas) == 1 else \
            np.take_along_axis(m.cv_results_, np.searchsorted(alphas, m.alpha_)[None, :, None], 2)[:, :, 0]
        return np.median(_pearson(pred, y))
    rs = []
    for tr, te in KFold(cv, shuffle=True, random_state=seed).split(x):
        m = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[tr], y[tr])
        rs.append(_pearson(m.predict(x[te]), y[te]))
    return np.median(np.mean(rs, 0))


def _pearson(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


# ----------------------------------------------------------------------------- idsim engine
def engine_features(layers, plan_kind: str, metric, seed: int, names):
    """Per-layer statistics exactly as the pipeline's extraction leaves them."""
    from idsim.featureset import FeatureSet, LayerData
    from idsim.gram import centred_gram, pattern_gram
    from idsim.metrics.rsa import gram_kind
    from idsim.reduce import SparseProjection, jl_dim

    fs = FeatureSet(model="bench", n_images=layers[0].shape[0])
    for name, X in zip(names, layers):
        n, p = X.shape
        d = LayerData(name=name, n_units=p, n_sampled=p)
        if plan_kind == "gram":
            d.grams["column"] = centred_gram(X)
        elif plan_kind == "rdm":
            d.grams[gram_kind(metric.options.rdm)] = pattern_gram(X, gram_kind(metric.options.rdm))
        elif plan_kind == "features":
            q = jl_dim(n) if metric.options.srp_dim == "auto" else int(metric.options.srp_dim)
            if p > q:
                proj = SparseProjection(n, p, q, seed, name)
                for c in range(0, n, 64):  # the pipeline projects batch by batch during extraction
                    proj.update(torch.from_numpy(X[c:c + 64]), slice(c, c + 64))
                d.features, d.projected = proj.data, True
            else:
                d.features = X
        else:
            d.units = X
        fs.layers[name] = d
    return fs


def run_metric(name: str, sources, targets, args) -> dict:
    from idsim import load_metric
    from idsim.scoring import score_layers

    metric = load_metric(name, **({"precision": args.precision} if name.startswith("regression") else {}))
    s_names = [f"s{i}" for i in range(len(sources))]
    t_names = [f"t{j}" for j in range(len(targets))]
    kind = {"cka": "gram", "rsa": "rdm", "regression": "features"}[metric.kind]
    t0 = time.perf_counter()
    src = engine_features(sources, kind, metric, args.seed, s_names)
    tgt = engine_features(targets, kind if metric.kind != "regression" else "units", metric, args.seed, t_names)
    table = score_layers(src, tgt, metric, seed=args.seed, device=args.device)
    engine_s = time.perf_counter() - t0
    S = table.pivot(index="source_layer_index", columns="target_layer_index", values="score").to_numpy()

    # CKA/RSA pair costs depend on both widths: always timed on every pair
    ref_targets = range(len(targets)) if args.ref_target_layers == "all" or metric.kind != "regression" else range(1)
    ref = np.full_like(S, np.nan)
    t0 = time.perf_counter()
    for j in ref_targets:
        y64 = targets[j].astype(np.float64)
        for i, x in enumerate(sources):
            x64 = x.astype(np.float64)
            if metric.kind == "cka":
                ref[i, j] = (ref_debiased_cka if metric.options.debiased else ref_cka)(x64, y64)
            elif metric.kind == "rsa":
                ref[i, j] = ref_rsa(x64, y64)
            else:
                from sklearn.random_projection import johnson_lindenstrauss_min_dim

                q = int(johnson_lindenstrauss_min_dim(x.shape[0], eps=0.1)) if metric.options.srp_dim == "auto" else metric.options.srp_dim
                ref[i, j] = ref_regression(x64, y64, metric.options.cv, list(metric.options.alphas), q, args.seed)
    ref_s = time.perf_counter() - t0
    scale = len(targets) / len(ref_targets)
    done = np.isfinite(ref)
    diff = float(np.abs(S[done] - ref[done]).max())
    return {"metric": name, "engine_s": engine_s, "reference_s": ref_s * scale, "extrapolated": scale > 1,
            "ratio": ref_s * scale / engine_s, "max_abs_diff": diff, "pairs_compared": int(done.sum())}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="stimuli")
    ap.add_argument("--layers", type=int, default=10, help="layers per model (source and target)")
    ap.add_argument("--min-width", type=int, default=4000)
    ap.add_argument("--max-width", type=int, default=100_000)
    ap.add_argument("--units", type=int, default=1000, help="target units per target layer for regression")
    ap.add_argument("--metrics", default="cka,cka_debiased,rsa,regression_loo,regression")
    ap.add_argument("--ref-target-layers", choices=["one", "all"], default="one",
                    help="regression reference timed on one target layer's pairs (x layers) or all pairs")
    ap.add_argument("--precision", default="float64", choices=["float64", "float32"])
    ap.add_argument("--device", default=None, help="engine device for regression (default CPU; e.g. cuda)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="n=120, 3 x 3 layers of 500-3000 units, 100 target units")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.layers, args.min_width, args.max_width, args.units = 120, 3, 500, 3000, 100

    widths = layer_widths(args.layers, args.min_width, args.max_width)
    latent = np.random.default_rng(args.seed).standard_normal((args.n, 8 + 6 * args.layers)).astype(np.float32)
    t0 = time.perf_counter()
    sources = make_layers(args.n, widths, args.seed + 1, latent)
    targets = make_layers(args.n, widths, args.seed + 2, latent)
    print(f"# {args.n} stimuli; {args.layers} source x {args.layers} target layers of {widths[0]:,}-{widths[-1]:,} units"
          f" ({sum(widths):,} per model); generated in {time.perf_counter() - t0:.1f} s;"
          f" torch threads {torch.get_num_threads()}; engine precision {args.precision}")
    results = []
    for name in args.metrics.split(","):
        metric_targets = targets
        if name.startswith("regression"):  # the target side of regression: a seeded sample of units per layer
            rng = np.random.default_rng(args.seed)
            metric_targets = [t[:, np.sort(rng.choice(t.shape[1], min(args.units, t.shape[1]), replace=False))]
                              for t in targets]
        results.append(run_metric(name, sources, metric_targets, args))
        r = results[-1]
        print(f"  {r['metric']}: engine {r['engine_s']:.1f} s, reference {r['reference_s']:.1f} s, ratio {r['ratio']:.1f}x",
              flush=True)
    print()
    print(f"| metric | engine (s) | reference (s) | speed-up | max abs score diff | pairs compared |")
    print(f"|---|---:|---:|---:|---:|---:|")
    for r in results:
        ref = f"{r['reference_s']:.1f}" + (" (extrapolated)" if r["extrapolated"] else "")
        print(f"| {r['metric']} | {r['engine_s']:.2f} | {ref} | {r['ratio']:.1f}x | {r['max_abs_diff']:.1e} | {r['pairs_compared']} |")


if __name__ == "__main__":
    main()
