"""How far CKA and RSA from projected layers are from the exact values, on real networks.

    python benchmarks/approx_bench.py                 # the paper's five models, 100 shapes images
    python benchmarks/approx_bench.py --n 50 --models alexnet,resnet18

Layers wider than ``exact_max_mb`` get their Gram matrix (CKA) and their RDM (RSA) from a seeded
sparse random projection to ``gram_dim`` dimensions instead of the exact activations. This script
extracts every default layer of each model twice -- exactly (``exact_budget=None``) and fully
projected (``exact_budget=1`` byte, so every layer is projected) -- and compares the scores of
every layer pair (all layers of all models against each other).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="alexnet,vgg11,resnet18,vit_base_patch32_224,mixer_b16_224")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--gram-dim", default="auto")
    ap.add_argument("--batch-size", type=int, default=25)
    args = ap.parse_args(argv)

    from idsim import build_model, load_probe_set
    from idsim.features import Plan, extract
    from idsim.metrics import cka_matrix, rdm_from_gram, rsa_matrix
    from idsim.reduce import jl_dim

    gram_dim = args.gram_dim if args.gram_dim == "auto" else int(args.gram_dim)
    probe = load_probe_set({"name": "shapes", "n_images": args.n, "seed": 0})
    plans = {"cka": Plan(grams=("column",)), "rsa": Plan(grams=("row",))}
    exact = {k: [] for k in plans}
    approx = {k: [] for k in plans}
    widths = []
    t0 = time.perf_counter()
    for name in args.models.split(","):
        model = build_model(name, seed=0)
        for kind, plan in plans.items():
            e = extract(model, probe, plan, batch_size=args.batch_size, progress=False, exact_budget=None)
            a = extract(model, probe, plan, batch_size=args.batch_size, progress=False, exact_budget=1, gram_dim=gram_dim)
            for layer in e.layer_names:
                exact[kind].append(e[layer].gram if kind == "cka" else rdm_from_gram(e[layer].grams["row"], "correlation"))
                approx[kind].append(a[layer].gram if kind == "cka" else rdm_from_gram(a[layer].grams["row"], "correlation"))
                if kind == "cka":
                    widths.append(e[layer].n_units)
        print(f"  {name}: {len(e.layer_names)} layers", flush=True)
    q = jl_dim(args.n) if gram_dim == "auto" else gram_dim
    print(f"# {args.n} images; {len(widths)} layers of {min(widths):,}-{max(widths):,} units projected to {q:,} dims;"
          f" {time.perf_counter() - t0:.0f} s")
    print()
    print("| score | layer pairs | median abs error | 95th percentile | max abs error | score range (exact) |")
    print("|---|---:|---:|---:|---:|---|")
    iu = np.triu_indices(len(widths), 1)
    for label, E, A in (
        ("CKA (biased)", cka_matrix(exact["cka"], exact["cka"]), cka_matrix(approx["cka"], approx["cka"])),
        ("CKA (debiased)", cka_matrix(exact["cka"], exact["cka"], debiased=True),
         cka_matrix(approx["cka"], approx["cka"], debiased=True)),
        ("RSA (correlation RDM, Pearson)", rsa_matrix(exact["rsa"], exact["rsa"]), rsa_matrix(approx["rsa"], approx["rsa"])),
    ):
        err = np.abs(A - E)[iu]
        print(f"| {label} | {err.size} | {np.median(err):.1e} | {np.percentile(err, 95):.1e} | {err.max():.1e} |"
              f" {E[iu].min():.2f} to {E[iu].max():.2f} |")


if __name__ == "__main__":
    main()
