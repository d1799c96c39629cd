"""One command per analysis of the two papers: ``python -m experiments.run <analysis> [--quick]``.

Examples::

    python -m experiments.run fig3 --quick                  # minutes on 2 CPU cores, random weights
    python -m experiments.run fig3                          # the paper's setting (ImageNet weights)
    python -m experiments.run fig6 --dataset "imagenet dataset.root=/data/imagenet/val" -- hydra/launcher=slurm

Everything after ``--`` is passed to every ``python run.py -m`` launch (launcher, device, cache...).
Outputs go to ``--out`` (default ``outputs/experiments/<analysis>[-quick]``): the sweeps under
``sweeps/``, the tables (CSV) and figures (PNG) at the top.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from idsim.errors import IdsimError

from . import mouse, sysid
from .common import launch, parse_dataset, write_table

ANALYSES = {
    "fig2": "regression: layer x layer scores per target (a) and top score per source (b)",
    "fig3": "CKA: layer x layer scores per target (a) and top score per source (b)",
    "fig4": "CKA with 1% of target units, and identifiability against the unit ratio",
    "fig5": "identifiability index (CKA) by probe set for each target",
    "fig6": "convolution vs attention: 12 CNNs vs 8 transformers, Welch's t-test per target layer",
    "mouse": "trained vs random zoo: max over layers, best-layer depth, RSA vs regression, bootstrap CIs",
}
# probe sets when none is given: embedded stand-ins for the papers' sets (HvM, FreemanZiemba, ImageNet)
DEFAULT_DATASET = {
    "fig2": ("synthetic_objects dataset.n_images=3200", "synthetic_objects"),
    "fig3": ("synthetic_objects dataset.n_images=3200", "synthetic_objects"),
    "fig4": ("synthetic_objects dataset.n_images=3200", "synthetic_objects"),
    "fig6": ("natural dataset.n_images=1000", "natural"),
    "mouse": ("natural dataset.n_images=118", "natural"),
}
FULL_PROBE_SETS = ["synthetic_objects dataset.n_images=3200", "texture_noise", "natural dataset.n_images=1000"]
QUICK_TEXTURES = ("texture_noise dataset.n_images=6 dataset.families=[brick,grass,gravel] dataset.n_samples=1"
                  " dataset.size=64 dataset.n_scales=3 dataset.iterations=30")
FULL_UNIT_RATIOS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
QUICK_UNIT_RATIOS = (0.01, 0.1, 1.0)
# leave-one-out regression on few images; 300 target units per layer
QUICK_REGRESSION = ["metric.cv=loo", "metric.max_units=300"]


def quick_probe_sets() -> list[str]:
    """shapes, natural, synthetic objects; texture/noise too where its config exists (tiny settings)."""
    sets = ["shapes", "natural", "synthetic_objects"]
    if (Path(__file__).resolve().parent.parent / "conf" / "dataset" / "texture_noise.yaml").exists():
        sets.append(QUICK_TEXTURES)
    return sets


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.run", description="Run one analysis of the papers.",
                                epilog="analyses: " + "; ".join(f"{k}: {v}" for k, v in ANALYSES.items()))
    p.add_argument("analysis", help=f"one of {', '.join(ANALYSES)}")
    p.add_argument("--quick", action="store_true", help="few images, small random-weight models (minutes on CPU)")
    p.add_argument("--out", type=Path, help="output folder (default outputs/experiments/<analysis>[-quick])")
    p.add_argument("--dataset", help="probe set and its overrides, e.g. \"imagenet dataset.root=/data/val\"")
    p.add_argument("--datasets", nargs="+", help="fig5: probe sets, each a name and its overrides")
    p.add_argument("--weights", choices=("imagenet", "random"), help="weights of every model (full default imagenet;"
                   " --quick always random)")
    p.add_argument("--target", help="mouse: the network standing in for the brain")
    p.add_argument("--dry-run", action="store_true", help="print the sweep commands only")
    return p


def run(argv: Sequence[str]) -> dict[str, Path]:
    argv = list(argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.analysis not in ANALYSES:
        raise IdsimError(f"unknown analysis {args.analysis!r}; valid: {', '.join(ANALYSES)}")
    if args.quick and args.weights == "imagenet":
        raise IdsimError("--quick runs random weights only (nothing is downloaded); drop --weights or --quick")
    if args.datasets and args.analysis != "fig5":
        raise IdsimError(f"--datasets is for fig5 (several probe sets); {args.analysis} takes one --dataset")
    if args.dataset and args.analysis == "fig5":
        raise IdsimError("fig5 compares probe sets: give them with --datasets, not --dataset")
    if args.target and args.analysis != "mouse":
        raise IdsimError("--target is for the mouse analysis (the brain stand-in); the sysid figures fix their targets")
    weights = "random" if args.quick else (args.weights or "imagenet")
    out = args.out or Path("outputs/experiments") / (args.analysis + ("-quick" if args.quick else ""))
    a = args.analysis
    if a == "fig5":
        sets = args.datasets or (quick_probe_sets() if args.quick else FULL_PROBE_SETS)
        sweeps = sysid.plan_fig5(args.quick, [parse_dataset(s) for s in sets], weights)
    else:
        full, quick = DEFAULT_DATASET[a]
        _, dataset = parse_dataset(args.dataset or (quick if args.quick else full))
        if a in ("fig2", "fig3", "fig4"):
            metric = "regression" if a == "fig2" else "cka"
            if a == "fig2" and args.quick:  # 16 images: leave-one-out, not 10 folds of 1-2 images
                dataset = [*dataset, *QUICK_REGRESSION]
            ratios = (QUICK_UNIT_RATIOS if args.quick else FULL_UNIT_RATIOS) if a == "fig4" else (1.0,)
            sweeps = sysid.plan_layer_scores(metric, args.quick, dataset, weights, ratios)
        elif a == "fig6":
            sweeps = sysid.plan_fig6(args.quick, dataset, weights)
        else:
            sweeps = mouse.plan(args.quick, dataset, args.target)
    res = launch(sweeps, out, extra, dry_run=args.dry_run)
    if args.dry_run:
        return {}
    return analyze(a, res, out, args.quick)


def analyze(a: str, res, out: Path, quick: bool) -> dict[str, Path]:
    """Tables and figures of analysis ``a`` from its sweeps' results; prints a short summary."""
    if a in ("fig2", "fig3"):
        metric = "neural regression" if a == "fig2" else "CKA"
        files = sysid.analyze_layer_scores(res.scores, out, a, f"{a}: {metric}")
        top = sysid.top_scores(sysid.layer_scores(res.scores))
        _print_verdicts(top.drop_duplicates(["target", "target_layer"]))
    elif a == "fig4":
        one = res.scores[res.scores["unit_ratio"].astype(float) == 0.01]
        files = sysid.analyze_layer_scores(one, out, a, "fig4: CKA with 1% of target units")
        curve = sysid.identifiability_curve(res.identifiability)
        files["curve_table"] = write_table(curve, out / "fig4_identifiability_vs_unit_ratio.csv")
        files["curve"] = sysid.plot_unit_ratio_curve(curve, out / "fig4_identifiability_vs_unit_ratio.png")
        print(curve.to_string(index=False))
    elif a == "fig5":
        table = sysid.by_probe_set(res.identifiability)
        files = {"table": write_table(table, out / "fig5_identifiability_by_probe_set.csv"),
                 "figure": sysid.plot_by_probe_set(table, out / "fig5.png")}
        print(table.groupby(["target", "probe_set"])["identifiability_index"].mean().unstack().round(3).to_string())
    elif a == "fig6":
        best, st = sysid.conv_vs_attention(res.scores, quick)
        files = {"max_cka": write_table(best, out / "fig6_max_cka.csv"),
                 "stats": write_table(st, out / "fig6_class_stats.csv"),
                 "figure": sysid.plot_conv_vs_attention(best, st, out / "fig6.png")}
        for t, d in st.groupby("target", sort=False):
            ns = d.loc[~d["significant"], "target_layer"].tolist()
            print(f"{t}: {int(d['significant'].sum())}/{len(d)} target layers differ at p < {sysid.P_THRESHOLD};"
                  f" own class higher at {int(d['own_class_higher'].sum())}; not significant: {ns or 'none'}")
    else:
        files = mouse.analyze(res.scores, out)
        print(pd.read_csv(files["model_summary"]).round(3).to_string(index=False))
        print(pd.read_csv(files["metric_agreement"]).round(3).to_string(index=False))
    files["jobs"] = write_table(res.jobs, out / "jobs.csv")
    for k, p in files.items():
        print(f"{k}: {p}")
    return files


def _print_verdicts(winners: pd.DataFrame) -> None:
    for t, d in winners.groupby("target", sort=False):
        print(f"{t}: identified at {int(d['correct'].sum())}/{len(d)} target layers")


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(sys.argv[1:] if argv is None else argv)
    except IdsimError as e:
        print(f"idsim: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
